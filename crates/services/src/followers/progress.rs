//! The progress bar of `sync-followers`: counts, rate and ETA on stderr when it is a terminal,
//! nothing otherwise (logs and `--json` stay clean when piped).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget};

/// Where the sync reports progress. Cheap to clone (the bar is shared).
#[derive(Debug, Clone, Default)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// No output (tests, the demo, benchmarks).
    pub fn hidden() -> Self {
        Self { bar: None }
    }

    /// A bar on stderr if stderr is a terminal, else no output.
    pub fn on_terminal(label: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self::hidden();
        }
        let style = wxnotify_core::progress::style(
            "{prefix} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} followers  {rate}  ETA {eta}",
        );
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(label.to_owned());
        Self { bar: Some(bar) }
    }

    /// The pass begins (or resumes with `done` followers already stored).
    pub(crate) fn start(&self, total: Option<u64>, done: u64) {
        if let Some(bar) = &self.bar {
            if let Some(total) = total {
                bar.set_length(total);
            }
            bar.set_position(done);
            bar.reset_eta();
        }
    }

    /// A page of `n` followers was stored; WeChat now reports `total` followers.
    pub(crate) fn advance(&self, n: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total.max(bar.position() + n));
            bar.inc(n);
        }
    }

    /// The run ended; the bar is removed so the summary line stands alone.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
