//! `wxnotify completion SHELL`: the shell completion script of every command and flag.

use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

/// Arguments of `wxnotify completion`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify completion bash > /etc/bash_completion.d/wxnotify\n  source <(wxnotify completion bash)            # this bash session only\n  wxnotify completion zsh > \"${fpath[1]}/_wxnotify\"\n  wxnotify completion fish > ~/.config/fish/completions/wxnotify.fish"
)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_parser = ["bash", "zsh", "fish"])]
    pub shell: String,
}

/// The completion script for `shell` (`bash`, `zsh` or `fish`).
pub fn script(shell: Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut super::Cli::command(), "wxnotify", &mut out);
    String::from_utf8(out).expect("completion scripts are UTF-8")
}

/// Runs `wxnotify completion`.
pub fn run(args: CompletionArgs) -> anyhow::Result<ExitCode> {
    let shell = match args.shell.as_str() {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        _ => Shell::Fish,
    };
    print!("{}", script(shell));
    Ok(ExitCode::SUCCESS)
}
