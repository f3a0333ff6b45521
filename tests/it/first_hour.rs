//! What a newcomer meets in the first hour: wrong settings exit 2 at once naming the setting,
//! and every command's `--help` has examples.

use std::process::Output;
use std::time::Duration;

use crate::support::{TestDb, amqp_url, queue_prefix};

/// Runs `wxnotify ARGS` with `env`, failing the test if it does not exit within 30 s.
async fn wxnotify(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxnotify"));
    cmd.args(args)
        .env("WXNOTIFY_OA_APPID", "wx0123456789abcdef")
        .env("WXNOTIFY_OA_SECRET", "first-hour-secret")
        .env("WXNOTIFY_LOG_FORMAT", "json")
        .env_remove("WXNOTIFY_CONFIG")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("wxnotify {args:?} did not exit within 30 s"))
        .expect("run wxnotify")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The last line of stderr: the `error: …` line the CLI prints.
fn error_line(out: &Output) -> String {
    stderr(out)
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default()
        .to_string()
}

fn with_broker_path(path: &str) -> String {
    let base = amqp_url();
    let (server, _) = base.rsplit_once('/').expect("an AMQP URL has a vhost path");
    format!("{server}/{path}")
}

#[tokio::test]
async fn a_worker_with_a_wrong_broker_setting_exits_2_naming_it() {
    let db = TestDb::new().await;
    let wrong_password = amqp_url().replacen("guest:guest", "guest:wrong-password", 1);
    let cases = [
        ("a refused login", wrong_password, "AMQP_URL"),
        (
            "a missing vhost",
            with_broker_path("no-such-vhost"),
            "vhost",
        ),
        ("not a URL", "not a url".to_string(), "AMQP_URL"),
    ];
    for (case, url, named) in cases {
        let out = wxnotify(
            &["worker"],
            &[
                ("DATABASE_URL", db.url()),
                ("AMQP_URL", url),
                ("WXNOTIFY_QUEUE_PREFIX", queue_prefix()),
            ],
        )
        .await;
        let line = error_line(&out);
        assert_eq!(out.status.code(), Some(2), "{case}: {}", stderr(&out));
        assert!(line.contains(named), "{case}: {line}");
        assert!(!stderr(&out).contains("wrong-password"), "{case} leaked");
    }
}

#[tokio::test]
async fn a_worker_whose_queues_exist_with_another_delivery_limit_exits_2() {
    let db = TestDb::new().await;
    let prefix = queue_prefix();
    let env = |limit: &str| {
        vec![
            ("DATABASE_URL", db.url()),
            ("AMQP_URL", amqp_url()),
            ("WXNOTIFY_QUEUE_PREFIX", prefix.clone()),
            ("WXNOTIFY_DELIVERY_LIMIT", limit.to_string()),
        ]
    };
    let migrated = wxnotify(&["migrate"], &env("10")).await;
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let out = wxnotify(&["worker"], &env("5")).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(error_line(&out).contains("WXNOTIFY_DELIVERY_LIMIT"));
    delete_queues(&prefix).await;
}

#[tokio::test]
async fn a_wrong_database_url_exits_2_and_a_missing_database_says_how_to_create_it() {
    let missing = format!(
        "{}/wxnotify_missing_{}",
        crate::support::server_url().rsplit_once('/').unwrap().0,
        uuid::Uuid::new_v4().simple()
    );
    let out = wxnotify(
        &["worker"],
        &[("DATABASE_URL", missing), ("AMQP_URL", amqp_url())],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.contains("DATABASE_URL") && line.contains("wxnotify migrate"),
        "{line}"
    );

    let out = wxnotify(
        &["worker"],
        &[
            ("DATABASE_URL", "not-a-url".into()),
            ("AMQP_URL", amqp_url()),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(error_line(&out).contains("DATABASE_URL"));
}

#[tokio::test]
async fn an_unreachable_broker_is_retried_not_a_config_error() {
    let db = TestDb::new().await;
    // A port nothing listens on: the worker must keep trying (and say so), not exit.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxnotify"))
        .arg("worker")
        .env("WXNOTIFY_OA_APPID", "wx0123456789abcdef")
        .env("WXNOTIFY_OA_SECRET", "s")
        .env("WXNOTIFY_LOG_FORMAT", "json")
        .env("DATABASE_URL", db.url())
        .env(
            "AMQP_URL",
            format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        )
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let exited = tokio::time::timeout(Duration::from_secs(4), child.wait()).await;
    assert!(
        exited.is_err(),
        "the worker gave up on an unreachable broker: {exited:?}"
    );
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(stderr(&out).contains("reconnecting"), "{}", stderr(&out));
}

#[tokio::test]
async fn every_command_has_examples_in_its_help() {
    let mut commands: Vec<Vec<&str>> = vec![vec![]];
    for c in [
        "migrate",
        "worker",
        "enqueue",
        "dlq",
        "sync-followers",
        "serve",
        "schema",
        "templates",
        "status",
        "campaign",
        "api-key",
        "webhook",
        "admin-user",
    ] {
        commands.push(vec![c]);
    }
    for sub in ["list", "stats", "show", "replay", "purge"] {
        commands.push(vec!["dlq", sub]);
    }
    for sub in ["create", "status"] {
        commands.push(vec!["campaign", sub]);
    }
    for sub in ["add", "list", "disable", "rotate"] {
        commands.push(vec!["admin-user", sub]);
    }
    for mut command in commands {
        command.push("--help");
        let out = wxnotify(&command, &[]).await;
        assert!(out.status.success(), "{command:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("Examples:"),
            "{command:?} has no examples:\n{help}"
        );
        assert!(help.contains("wxnotify"), "{command:?}");
    }
}

#[test]
fn every_sandbox_command_has_examples_in_its_help() {
    use clap::CommandFactory;
    let mut cli = wxnotify_sandbox::cli::Cli::command();
    let help = cli.render_long_help().to_string();
    assert!(help.contains("Examples:"), "{help}");
    let mut seen = Vec::new();
    for sub in cli.get_subcommands_mut() {
        let name = sub.get_name().to_owned();
        if name == "help" {
            continue;
        }
        let help = sub.render_long_help().to_string();
        assert!(
            help.contains("Examples:"),
            "{name} has no examples:\n{help}"
        );
        assert!(help.contains("wxnotify-sandbox"), "{name}:\n{help}");
        seen.push(name);
    }
    for name in ["demo", "bench", "mock-wechat", "seed-followers"] {
        assert!(seen.iter().any(|s| s == name), "{name} in {seen:?}");
    }
}

async fn delete_queues(prefix: &str) {
    let connection = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    wxnotify_core::queue::Topology::new(prefix.to_string())
        .delete(&channel)
        .await
        .ok();
}

/// Every environment variable the code reads, found in the source: `"WXNOTIFY_…"` literals and
/// clap's `env = "…"`, plus the three service URLs.
fn variables_read_by_the_code() -> std::collections::BTreeSet<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    walk(&root.join("src"), &mut files);
    walk(&root.join("crates"), &mut files);
    let mut names: std::collections::BTreeSet<String> =
        ["DATABASE_URL", "AMQP_URL", "WECHAT_API_BASE"]
            .map(String::from)
            .into();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, _) in text.match_indices("\"WXNOTIFY_") {
            let name: String = text[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            // A prefix being built (`"WXNOTIFY_" + …`) is not a variable.
            if !name.ends_with('_') {
                names.insert(name);
            }
        }
    }
    names
}

fn read_doc(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_configuration_document_names_every_environment_variable_the_code_reads() {
    let doc = read_doc("docs/configuration.md");
    let missing: Vec<String> = variables_read_by_the_code()
        .into_iter()
        .filter(|name| !doc.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not name {missing:?}"
    );
}

/// The README and every document under `docs/`.
fn documents() -> Vec<(String, String)> {
    let mut docs = vec![("README.md".to_owned(), read_doc("README.md"))];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            let name = format!("docs/{}", path.file_name().unwrap().to_string_lossy());
            docs.push((name.clone(), read_doc(&name)));
        }
    }
    docs
}

#[test]
fn the_readme_is_a_front_page_that_links_the_documents() {
    let readme = read_doc("README.md");
    assert!(
        readme.len() <= 15 * 1024,
        "README.md is {} bytes; the front page stays under 15 KB",
        readme.len()
    );
    for doc in [
        "docs/ARCHITECTURE.md",
        "docs/api.md",
        "docs/campaigns.md",
        "docs/operations.md",
        "docs/deployment.md",
        "docs/security.md",
        "docs/exactly-once.md",
        "docs/configuration.md",
        "docs/benchmarks.md",
        "docs/ledger.md",
        "docs/wechat.md",
    ] {
        assert!(readme.contains(doc), "the README does not link {doc}");
    }
    assert!(readme.contains("cargo nextest run"), "the test command");
    assert!(
        readme.contains("cargo run --release -p wxnotify-sandbox -- demo"),
        "the main command"
    );
}

#[test]
fn the_documents_point_only_at_files_of_the_repository() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, text) in documents() {
        for (n, line) in text.lines().enumerate() {
            let lower = line.to_lowercase();
            let internal = lower
                .match_indices("issue ")
                .any(|(i, m)| lower[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()));
            assert!(
                !internal,
                "{name}:{} cites an internal issue number: {line}",
                n + 1
            );
            assert!(
                !line.contains("../"),
                "{name}:{} points outside the repository: {line}",
                n + 1
            );
            // Every path of the repository a document names exists.
            for word in line.split(|c: char| c.is_whitespace() || "`()[]<>\"',;*".contains(c)) {
                let word = word.trim_end_matches(['.', ':']);
                let word = word.split(['#', ':']).next().unwrap_or_default();
                let rooted = [
                    "src/",
                    "crates/",
                    "docs/",
                    "tests/",
                    "migrations/",
                    "bench/",
                    "scripts/",
                ]
                .iter()
                .any(|p| word.starts_with(p));
                if rooted && !word.contains('*') && !word.contains('{') && !word.contains('…') {
                    assert!(
                        root.join(word).exists(),
                        "{name}:{} names {word}, which does not exist",
                        n + 1
                    );
                }
            }
        }
    }
}
