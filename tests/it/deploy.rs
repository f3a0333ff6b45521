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
        let test = lines
            .iter()
            .find_map(|l| l.trim().strip_prefix("test: "))
            .unwrap_or_else(|| panic!("{name} has a health check"));
        let test: Vec<String> = serde_json::from_str(test).expect("test is a JSON-style list");
        assert_eq!(test[..2], ["CMD", "wxnotify"], "{name}: {test:?}");
        let url = health_url(&test[1..]);
        assert!(
            listen.contains(&url.port().expect("a port")),
            "{name}: checks {url}, listens {listen:?}"
        );
        assert_eq!(url.path(), "/readyz", "{name} is healthy when ready");
        listened.extend(listen);
    }
    // The image's own HEALTHCHECK: liveness (a restart would not bring RabbitMQ back).
    let (_, runtime) = stages(&dockerfile).pop().expect("stages");
    let check = runtime
        .iter()
        .position(|l| l.starts_with("HEALTHCHECK "))
        .expect("the image has a HEALTHCHECK");
    let cmd = runtime[check..]
        .iter()
        .find_map(|l| l.trim().strip_prefix("CMD "))
        .expect("HEALTHCHECK ... CMD [...]");
    let cmd: Vec<String> = serde_json::from_str(cmd).expect("CMD is a JSON list");
    let bin = format!("/usr/local/bin/{}", env!("CARGO_PKG_NAME"));
    assert_eq!(cmd[0], bin);
    let url = health_url(&cmd);
    assert_eq!(url.path(), "/livez", "the image's check is liveness: {url}");
    assert!(listened.contains(&url.port().unwrap()), "{url}");
    // The service's image (the last stage) exposes only what its services listen on.
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

/// The URL `wxnotify health ARGS` asks (`argv` starts with the binary), checking that the
/// binary accepts the arguments.
fn health_url(argv: &[String]) -> url::Url {
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    match cli.command {
        wxnotify::commands::Command::Health(args) => args.url,
        other => panic!("{argv:?} is not `wxnotify health`: {other:?}"),
    }
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

/// Every `wxnotify_...` name in `text`.
fn series_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("wxnotify_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.insert(name);
    }
    out
}

/// The `.rs` files under `dir`.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every series the code emits: the names after `counter!(`, `gauge!(` and `histogram!(` in the
/// sources of every crate and of the binary, with their kind.
fn emitted_series() -> Vec<(String, wxnotify_core::metrics::Kind, String)> {
    use wxnotify_core::metrics::Kind;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("crates"), &mut files);
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (macro_name, kind) in [
            ("counter!(", Kind::Counter),
            ("gauge!(", Kind::Gauge),
            ("histogram!(", Kind::Histogram),
        ] {
            for (i, _) in text.match_indices(macro_name) {
                let after = text[i + macro_name.len()..].trim_start();
                if let Some(quoted) = after.strip_prefix('"') {
                    let name = quoted.split('"').next().unwrap().to_owned();
                    out.push((name, kind, file.display().to_string()));
                }
            }
        }
    }
    out
}

#[test]
fn every_series_the_code_emits_is_described_and_every_described_one_is_emitted() {
    let emitted = emitted_series();
    assert!(
        emitted.len() > 20,
        "the scan found the metrics: {emitted:?}"
    );
    for (name, kind, file) in &emitted {
        let listed = wxnotify_core::metrics::series(name)
            .unwrap_or_else(|| panic!("{file}: {name} is not in wxnotify_core::metrics::SERIES"));
        assert_eq!(listed.kind, *kind, "{file}: {name}");
    }
    for s in wxnotify_core::metrics::SERIES {
        assert!(
            emitted.iter().any(|(name, ..)| name == s.name),
            "{} is described but nothing emits it",
            s.name
        );
    }
}

#[test]
fn every_series_the_dashboard_and_the_alert_rules_name_is_exported() {
    let dashboard = read("deploy/grafana/wxnotify.json");
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let exprs: Vec<String> = json["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("an expr").to_owned())
        .collect();
    let in_dashboard = series_names(&exprs.join("\n"));
    let rules = read("deploy/prometheus/wxnotify-alerts.yml");
    let tests = read("deploy/prometheus/wxnotify-alerts.test.yml");
    for (file, names) in [
        ("the dashboard", &in_dashboard),
        ("the alert rules", &series_names(&rules)),
        ("the rules' tests", &series_names(&tests)),
    ] {
        let unknown: Vec<_> = names
            .iter()
            .filter(|n| wxnotify_core::metrics::exported(n).is_none())
            .collect();
        assert!(
            unknown.is_empty(),
            "{file} names series wxnotify does not export: {unknown:?}"
        );
    }
    // What the dashboard is for.
    for needed in [
        "wxnotify_jobs_total",
        "wxnotify_queue_messages",
        "wxnotify_quota_used",
        "wxnotify_token_refreshes_total",
        "wxnotify_webhook_backlog",
        "wxnotify_http_requests_total",
        "wxnotify_http_request_duration_seconds_bucket",
    ] {
        assert!(
            in_dashboard.contains(needed),
            "the dashboard shows {needed}"
        );
    }
}

#[test]
fn every_alert_rule_has_a_promtool_test_that_fires_it() {
    let rules = read("deploy/prometheus/wxnotify-alerts.yml");
    let tests = read("deploy/prometheus/wxnotify-alerts.test.yml");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    for needed in [
        "WxnotifyQueueBacklogOld",
        "WxnotifyDeadLetterRate",
        "WxnotifyAppPaused",
        "WxnotifyQuotaNearlySpent",
        "WxnotifyNoLiveWorker",
        "WxnotifyTokenRefreshFailing",
        "WxnotifyWebhookBacklog",
    ] {
        assert!(alerts.contains(&needed), "a rule {needed}: {alerts:?}");
    }
    for alert in alerts {
        let fires = tests
            .split(&format!("alertname: {alert}\n"))
            .skip(1)
            .any(|after| {
                let block: Vec<&str> = after.lines().take(2).map(str::trim).collect();
                block.first() == Some(&"exp_alerts:") && block.get(1) == Some(&"- exp_labels:")
            });
        assert!(fires, "{alert}: no promtool test expects it to fire");
    }
}

/// The names `.env.example` lists, as `NAME=` or, optional, `# NAME=`.
fn env_example_names() -> BTreeSet<String> {
    read(".env.example")
        .lines()
        .filter_map(|l| {
            let l = l.strip_prefix("# ").unwrap_or(l);
            let (name, _) = l.split_once('=')?;
            let upper = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            upper.then(|| name.to_owned())
        })
        .collect()
}

#[test]
fn the_env_example_lists_every_variable_the_service_reads_and_no_other() {
    let listed = env_example_names();
    // The settings read with the default app configured (so its variables are read too).
    let values: HashMap<String, String> = [
        ("WXNOTIFY_OA_APPID", "wx0123456789abcdef"),
        ("WXNOTIFY_OA_SECRET", "s"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let read_vars = Mutex::new(BTreeSet::new());
    Settings::from_lookup(|k| {
        read_vars.lock().unwrap().insert(k.to_owned());
        values.get(k).cloned()
    })
    .expect("valid settings");
    let mut needed = read_vars.into_inner().unwrap();
    fn walk(cmd: &clap::Command, out: &mut BTreeSet<String>) {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                out.insert(env.to_string_lossy().into_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    walk(&Cli::command(), &mut needed);
    needed.insert("WXNOTIFY_LOG_FORMAT".into());
    needed.insert("RUST_LOG".into());
    assert!(needed.len() > 30, "{needed:?}");
    let missing: Vec<_> = needed.difference(&listed).collect();
    assert!(missing.is_empty(), ".env.example lacks {missing:?}");
    let stale: Vec<_> = listed.difference(&needed).collect();
    assert!(
        stale.is_empty(),
        ".env.example lists variables nothing reads: {stale:?}"
    );
    // Secrets are left empty.
    for line in read(".env.example").lines() {
        if let Some((name, value)) = line.split_once('=')
            && !line.starts_with('#')
            && (name.contains("SECRET") || name.contains("TOKEN") || name.contains("AES_KEY"))
        {
            assert!(value.is_empty(), "{name} is a secret: leave it empty");
        }
    }
}

#[test]
fn shell_completions_cover_every_command() {
    use clap_complete::Shell;
    for (shell, marker) in [
        (Shell::Bash, "complete -F"),
        (Shell::Zsh, "#compdef wxnotify"),
        (Shell::Fish, "complete -c wxnotify"),
    ] {
        let script = wxnotify::commands::completion::script(shell);
        assert!(script.contains(marker), "{shell}: {marker}");
        for sub in Cli::command().get_subcommands() {
            assert!(
                script.contains(sub.get_name()),
                "{shell} completes {}",
                sub.get_name()
            );
        }
        assert!(script.contains("metrics-listen"), "{shell} completes flags");
    }
}
