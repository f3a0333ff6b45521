//! `wxnotify-sandbox demo --serve`: the whole system left running, used the way its banner
//! says (the printed `curl` lines, pasted into a shell), then stopped, leaving nothing behind.

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::Value;
use wxnotify_core::config::Settings;
use wxnotify_sandbox::demo::serve::{DemoServer, PEOPLE, ServeOptions};

/// Runs `line` in `sh` and answers its stdout (the test fails if it exits non-zero).
async fn shell(line: &str) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg(line)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the command ends within 20 s")
    .expect("sh runs");
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The indented line after the line that starts with `heading`.
fn line_after<'a>(banner: &'a str, heading: &str) -> &'a str {
    let mut lines = banner.lines();
    lines
        .by_ref()
        .find(|l| l.starts_with(heading))
        .unwrap_or_else(|| panic!("no {heading:?} in:\n{banner}"));
    lines.next().unwrap().trim()
}

#[tokio::test]
async fn demo_serve_sends_with_its_printed_curl_line_and_stopping_removes_what_it_made() {
    let vars = std::collections::HashMap::from([
        ("DATABASE_URL".to_string(), crate::support::server_url()),
        ("AMQP_URL".to_string(), crate::support::amqp_url()),
    ]);
    let base = Settings::from_lookup(|k| vars.get(k).cloned()).expect("settings");
    let options = ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        mock_listen: "127.0.0.1:0".parse().unwrap(),
        followers: 5,
        rate: 50,
    };
    let server = tokio::time::timeout(Duration::from_secs(60), DemoServer::start(&options, &base))
        .await
        .expect("the demo system starts within a minute")
        .expect("the demo system starts");
    let banner = server.banner();
    let (database, prefix) = (
        server.database().to_owned(),
        server.queue_prefix().to_owned(),
    );

    // It names its people and templates and says what a job needs to reach a person.
    for name in PEOPLE {
        assert!(banner.contains(name), "{banner}");
    }
    assert!(banner.contains("order_shipped"));
    assert!(banner.contains("logged in") && banner.contains("followers were synced"));
    assert!(banner.contains(&format!("{}admin", server.api_base())));

    // The printed send, pasted into a shell: accepted, then sent.
    let send = line_after(&banner, "Send alice");
    assert!(send.starts_with("curl "), "{send}");
    let accepted: Value = serde_json::from_str(&shell(send).await).expect("a JSON answer");
    assert_eq!(accepted["id"], "hello-alice-1", "{accepted}");
    let lookup = line_after(&banner, "Where it is");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status: Value = serde_json::from_str(&shell(lookup).await).expect("a JSON status");
        if status["state"] == "sent" {
            assert!(status["msgid"].is_string(), "{status}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not sent within 30 s: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The export lines paste into a shell as they are.
    let exports: Vec<&str> = banner
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("export "))
        .collect();
    assert_eq!(exports.len(), 3, "{banner}");
    let echoed = shell(&format!(
        "{}; printf '%s %s' \"$WXNOTIFY_QUEUE_PREFIX\" \"$WXNOTIFY_OA_APPID\"",
        exports.join("; ")
    ))
    .await;
    assert_eq!(
        echoed,
        format!("{prefix} {}", wxnotify_sandbox::mock_wechat::MOCK_OA_APPID)
    );

    // The console answers at the printed URL.
    let console = reqwest::get(server.api_base().join("admin/login").unwrap())
        .await
        .unwrap();
    assert_eq!(console.status(), 200);

    // Stopped: the database and the queues are gone.
    tokio::time::timeout(Duration::from_secs(30), server.stop())
        .await
        .expect("the demo stops within 30 s");
    let pool = sqlx::PgPool::connect(&crate::support::server_url())
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&database)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "the database {database} was removed");
    let connection = lapin::Connection::connect(
        &crate::support::amqp_url(),
        lapin::ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let jobs = channel
        .queue_declare(
            format!("{prefix}.jobs").as_str().into(),
            passive,
            FieldTable::default(),
        )
        .await;
    assert!(jobs.is_err(), "the queue {prefix}.jobs was removed");
    let _ = connection.close(200, "checked".into()).await;
}
