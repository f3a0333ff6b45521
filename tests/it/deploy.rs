//! The deployment files (`Dockerfile`, `docker-compose.yml`) against the binary: nothing here can
//! run Docker, so every command, flag, variable and port they use is checked to exist.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use clap::{CommandFactory, Parser};
use wxnotify::commands::Cli;
use wxnotify_core::config::Settings;
use wxnotify_sandbox::cli::Cli as SandboxCli;

fn read(file: &str) -> String {
    std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| format!("cannot read {file}: {e}"))
}

/// The compose file's services: name -> its lines (the file uses two-space indentation).
fn services(compose: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut current = None;
    let mut in_services = false;
    for line in compose.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            in_services = line.starts_with("services:");
            current = None;
            continue;
        }
        if in_services
            && line.starts_with("  ")
            && !line.starts_with("   ")
            && !line.trim_start().starts_with('#')
            && let Some(name) = line
                .trim()
                .strip_suffix(':')
                .or_else(|| line.trim().split_once(": ").map(|(n, _)| n))
        {
            current = Some(
                name.trim_end_matches(':')
                    .split(':')
                    .next()
                    .unwrap()
                    .to_owned(),
            );
        }
        if let Some(name) = &current {
            out.entry(name.clone()).or_default().push(line.to_owned());
        }
    }
    out
}

/// Every variable name a wxnotify command can read: clap's `env` of every argument of every
/// subcommand, the settings (recorded while they are read) and the log settings.
fn known_variables(values: &HashMap<String, String>) -> BTreeSet<String> {
    let mut known = BTreeSet::new();
    fn walk(cmd: &clap::Command, known: &mut BTreeSet<String>) {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                known.insert(env.to_string_lossy().into_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, known);
        }
    }
    walk(&Cli::command(), &mut known);
    walk(&SandboxCli::command(), &mut known);
    let read = Mutex::new(BTreeSet::new());
    let settings = Settings::from_lookup(|k| {
        read.lock().unwrap().insert(k.to_owned());
        values.get(k).cloned()
    });
    assert!(
        settings.is_ok(),
        "the compose settings are valid: {settings:?}"
    );
    known.extend(read.into_inner().unwrap());
    known.insert("WXNOTIFY_LOG_FORMAT".into());
    known.insert("RUST_LOG".into());
    known
}

/// `KEY: value` lines of wxnotify's environment (the image's own variables excluded).
fn compose_variables(compose: &str) -> HashMap<String, String> {
    compose
        .lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(": ")?;
            let k = k.trim();
            let upper = !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            let image_own = k.starts_with("POSTGRES_") || k.starts_with("RABBITMQ_");
            (upper && !image_own).then(|| (k.to_owned(), substitute(v.trim())))
        })
        .collect()
}

/// `${NAME:-default}` -> default (what compose uses when NAME is not set).
fn substitute(v: &str) -> String {
    match v.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        Some(inner) => inner
            .split_once(":-")
            .map(|(_, d)| d.to_owned())
            .unwrap_or_default(),
        None => v.to_owned(),
    }
}

fn ports_after(lines: &[String], marker: &str) -> BTreeSet<u16> {
    lines
        .iter()
        .flat_map(|l| {
            l.match_indices(marker)
                .map(move |(i, _)| &l[i + marker.len()..])
        })
        .filter_map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .ok()
        })
        .collect()
}

/// Whether `args` is accepted by the binary named `bin` (`wxnotify` or `wxnotify-sandbox`).
fn parse(bin: &str, args: &[String]) -> Result<(), clap::Error> {
    let argv = std::iter::once(bin.to_owned()).chain(args.iter().cloned());
    match bin {
        "wxnotify-sandbox" => SandboxCli::try_parse_from(argv).map(drop),
        _ => Cli::try_parse_from(argv).map(drop),
    }
}

#[test]
fn every_command_and_flag_in_the_compose_file_exists() {
    let compose = read("docker-compose.yml");
    let mut commands = 0;
    for (name, lines) in services(&compose) {
        // The fake WeChat runs from the development image; everything else from the service's.
        let bin = if lines.iter().any(|l| l.contains("image: wxnotify-sandbox")) {
            "wxnotify-sandbox"
        } else {
            "wxnotify"
        };
        let Some(list) = lines
            .iter()
            .find_map(|l| l.trim().strip_prefix("command: "))
        else {
            continue;
        };
        let args: Vec<String> = serde_json::from_str(list).expect("command is a JSON-style list");
        if let Err(e) = parse(bin, &args) {
            panic!("{name}: command {args:?} is not accepted by {bin}: {e}");
        }
        commands += 1;
    }
    assert!(
        commands >= 4,
        "migrate, worker, serve, mock-wechat: {commands}"
    );
    let services = services(&compose);
    for name in [
        "postgres", "rabbitmq", "migrate", "worker-1", "worker-2", "serve",
    ] {
        assert!(
            services.contains_key(name),
            "service {name}: {:?}",
            services.keys()
        );
    }
}

#[test]
fn every_variable_in_the_compose_file_is_read_by_the_binary() {
    let compose = read("docker-compose.yml");
    let values = compose_variables(&compose);
    let known = known_variables(&values);
    let unknown: Vec<_> = values.keys().filter(|k| !known.contains(*k)).collect();
    assert!(
        unknown.is_empty(),
        "variables no wxnotify command reads: {unknown:?}"
    );
}

#[test]
fn health_checks_and_exposed_ports_meet_what_the_services_listen_on() {
    let compose = read("docker-compose.yml");
    let dockerfile = read("Dockerfile");
    let services = services(&compose);
    let mut listened = BTreeSet::new();
    for name in ["worker-1", "serve"] {
        let lines = &services[name];
        let listen = ports_after(lines, "0.0.0.0:");
        let checked = ports_after(lines, "/dev/tcp/127.0.0.1/");
        assert!(!checked.is_empty(), "{name} has a health check");
        assert!(
            checked.is_subset(&listen),
            "{name}: checks {checked:?}, listens {listen:?}"
        );
        let paths_ok = lines
            .iter()
            .filter(|l| l.contains("GET /"))
            .all(|l| l.contains("GET /healthz") || l.contains("GET /readyz"));
        assert!(paths_ok, "{name} checks /healthz or /readyz");
        listened.extend(listen);
    }
    // The service's image (the last stage) exposes only what its services listen on.
    let (_, runtime) = stages(&dockerfile).pop().expect("stages");
    let exposed: BTreeSet<u16> = runtime
        .iter()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| l.split_whitespace().filter_map(|p| p.parse().ok()))
        .collect();
    assert!(
        exposed.is_subset(&listened),
        "EXPOSE {exposed:?}, listened {listened:?}"
    );
    // The worker's drain (its in-flight sends, at most the WeChat timeout) fits its grace period.
    let grace = services["worker-1"]
        .iter()
        .find_map(|l| l.trim().strip_prefix("stop_grace_period: "))
        .and_then(|v| v.trim_end_matches('s').parse::<u64>().ok())
        .expect("the workers have a stop_grace_period in seconds");
    let drain = wxnotify_core::wechat::client::ClientOptions::default()
        .timeout
        .as_secs();
    assert!(grace > drain * 2, "grace {grace} s, drain up to {drain} s");
}

/// The Dockerfile's stages: name -> its lines (from its `FROM` to the next).
fn stages(dockerfile: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in dockerfile.lines() {
        if let Some(from) = line.strip_prefix("FROM ") {
            let name = from.rsplit(" AS ").next().unwrap_or(from).trim().to_owned();
            out.push((name, Vec::new()));
        }
        if let Some((_, lines)) = out.last_mut() {
            lines.push(line.to_owned());
        }
    }
    out
}

#[test]
fn the_image_runs_the_one_binary_as_a_non_root_user() {
    let dockerfile = read("Dockerfile");
    // The default target (the last stage) is the service alone; the sandbox is a stage of its
    // own, built only when asked for.
    let stages = stages(&dockerfile);
    let (last, runtime) = stages.last().expect("stages");
    assert_eq!(last, "runtime");
    assert!(
        runtime.iter().all(|l| !l.contains("sandbox")),
        "the service's image carries no sandbox: {runtime:?}"
    );
    let (_, sandbox) = stages
        .iter()
        .find(|(name, _)| name == "sandbox")
        .expect("a sandbox stage for the compose file's mock profile");
    let sandbox_cmd = sandbox
        .iter()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("the sandbox's CMD");
    let args: Vec<String> = serde_json::from_str(sandbox_cmd).unwrap();
    assert!(
        matches!(parse("wxnotify-sandbox", &args), Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp),
        "the sandbox's CMD shows its help"
    );
    let bin = env!("CARGO_PKG_NAME");
    assert!(dockerfile.contains(&format!("--bin {bin}")));
    assert!(dockerfile.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{bin}\"]")));
    let user = runtime
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "USER {user}"
    );
    // The CMD is a valid invocation.
    let cmd = runtime
        .iter()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("a CMD");
    let args: Vec<String> = serde_json::from_str(cmd).unwrap();
    let parsed = Cli::try_parse_from(std::iter::once(bin.to_owned()).chain(args));
    assert!(
        matches!(&parsed, Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp),
        "CMD shows the help"
    );
}
