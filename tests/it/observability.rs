//! What operators look at tells the truth: the worker's quota gauge agrees with
//! `wxnotify status` after a day's sends, `status` lists the live workers, and `serve` gives
//! every request an id (in the answer and the access log) and counts it by route template.

use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use wxnotify_core::domain::{AppName, OpenId, Recipient};
use wxnotify_sandbox::mock_wechat;
use wxnotify_worker::WorkerConfig;

use crate::serve_support::{self, free_port};
use crate::support::TestDb;
use crate::system::System;

/// The value of the series `name` whose labels contain every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn the_quota_gauge_counts_the_sends_made_since_wechat_was_asked() {
    let handle = wxnotify_core::metrics::metrics_handle();
    let sys = System::seeded(20).await;
    let app = AppName::parse("default").unwrap();
    let worker = sys.start_worker(WorkerConfig::default());
    // The worker asks WeChat for the quota at its start, before any send.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while wxnotify_services::quota::today(&sys.db.pool, &app, chrono::Utc::now())
        .await
        .unwrap()
        .is_none()
    {
        assert!(tokio::time::Instant::now() < deadline, "the quota was read");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let jobs: Vec<_> = (0..20)
        .map(|i| {
            crate::worker::job(Recipient::MpOpenid(
                OpenId::parse(mock_wechat::mp_openid(i)).unwrap(),
            ))
        })
        .collect();
    sys.publish(&jobs).await;
    sys.wait_finished(20, Duration::from_secs(30)).await;
    let status = wxnotify_services::quota::today(&sys.db.pool, &app, chrono::Utc::now())
        .await
        .unwrap()
        .expect("read");
    assert!(
        status.sent_since_read > 0,
        "sends after the read: {status:?}"
    );
    // Within one refresh of the gauges, /metrics says what `status` says.
    let deadline =
        tokio::time::Instant::now() + wxnotify_worker::gauges::EVERY + Duration::from_secs(10);
    loop {
        let text = wxnotify_core::metrics::render(&handle);
        let used = sample(&text, "wxnotify_quota_used", &["app=\"default\""]);
        let remaining = sample(&text, "wxnotify_quota_remaining", &["app=\"default\""]);
        if used == Some(status.used as f64) {
            assert_eq!(remaining, Some(status.remaining as f64));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "wxnotify_quota_used is {used:?}, status says {}",
            status.used
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The same refresh exports the live workers and the queues' depths.
    let text = wxnotify_core::metrics::render(&handle);
    assert_eq!(sample(&text, "wxnotify_workers_live", &[]), Some(1.0));
    let jobs_queue = format!(
        "queue=\"{}\"",
        sys.topology.lane_queue(wxnotify_core::queue::Lane::Jobs)
    );
    assert_eq!(
        sample(&text, "wxnotify_queue_messages", &[&jobs_queue]),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "wxnotify_jobs_total",
            &["app=\"default\"", "outcome=\"sent\""]
        ),
        Some(status.sent_since_read as f64),
        "outcomes by app:\n{text}"
    );
    worker.stop().await;
}

#[tokio::test]
async fn status_lists_the_live_workers() {
    let sys = System::seeded(1).await;
    let mut config = WorkerConfig::default();
    config.consumer.lanes = vec![wxnotify_core::queue::Lane::Jobs];
    let worker = sys.start_worker(config);
    let env = [
        ("WXNOTIFY_QUEUE_PREFIX", sys.topology.prefix().to_owned()),
        ("WECHAT_API_BASE", sys.mock.base_url().to_string()),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let json = loop {
        let out = serve_support::wxnotify(&sys.db, &["status", "--json"], &env).await;
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        if json["workers"] == 1 {
            break json;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no live worker: {json}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let live = json["live_workers"].as_array().expect("live_workers");
    assert_eq!(live.len(), 1, "{json}");
    let w = &live[0];
    assert_eq!(w["pid"], std::process::id(), "{w}");
    assert_eq!(w["lanes"], serde_json::json!(["jobs"]), "{w}");
    assert!(!w["hostname"].as_str().unwrap().is_empty(), "{w}");
    for at in ["since", "heartbeat_at"] {
        let t = w[at].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(t).unwrap_or_else(|e| panic!("{at}: {t}: {e}"));
    }
    let out = serve_support::wxnotify(&sys.db, &["status"], &env).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("workers: 1 live"), "{text}");
    assert!(
        text.contains(&format!("pid {}: lanes jobs; since ", std::process::id())),
        "{text}"
    );
    assert!(text.contains("last heartbeat"), "{text}");
    worker.stop().await;
}

#[tokio::test]
async fn serve_gives_every_request_an_id_and_counts_it_by_route_template() {
    let db = TestDb::new().await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = serve_support::command(
        &db,
        &["serve", "--listen", &listen],
        &[("RUST_LOG", "info".to_owned())],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("serve starts");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
    }
    let base = format!("http://{listen}");
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "serve answers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let get = |path: &str, id: Option<&str>| {
        let mut r = http.get(format!("{base}{path}"));
        if let Some(id) = id {
            r = r.header("X-Request-Id", id);
        }
        r.send()
    };
    // A sane id is kept.
    let r = get("/livez", Some("trace-4711.abc")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "trace-4711.abc");
    // None, too long or not printable: a new one.
    for sent in [None, Some("x".repeat(129)), Some("with space".to_owned())] {
        let r = get("/livez", sent.as_deref()).await.unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{sent:?} -> {id}");
    }
    // Counted by route template, never by the raw path.
    let r = get("/v1/notifications/order-981-raw", Some("status-call-1"))
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no API key");
    assert_eq!(get("/no/such/page", None).await.unwrap().status(), 404);
    let text = get("/metrics", None).await.unwrap().text().await.unwrap();
    let route = "route=\"/v1/notifications/{id}\"";
    assert_eq!(
        sample(
            &text,
            "wxnotify_http_requests_total",
            &[route, "status=\"401\"", "method=\"GET\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "wxnotify_http_requests_total",
            &["route=\"/livez\"", "status=\"200\""]
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "wxnotify_http_requests_total",
            &["route=\"unmatched\"", "status=\"404\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains("order-981-raw"), "no raw path in the labels");
    assert_eq!(
        sample(
            &text,
            "wxnotify_http_request_duration_seconds_count",
            &[route]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains("# TYPE wxnotify_http_request_duration_seconds histogram"));
    assert!(text.contains("# HELP wxnotify_http_requests_total "));
    // The access log has the line, with the id.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = log.lock().unwrap().lines().any(|l| {
            l.contains("request answered")
                && l.contains("status-call-1")
                && l.contains("/v1/notifications/{id}")
                && l.contains("401")
        });
        if found {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no access log line:\n{}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // `wxnotify health` (the image's check) asks it: 0 on 200, 3 when nothing answers.
    let url = format!("{base}/livez");
    let ok = serve_support::wxnotify(&db, &["health", "--url", &url, "--json"], &[]).await;
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let answer: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(answer["status"], 200, "{answer}");
    let nobody = format!("http://127.0.0.1:{}/livez", free_port());
    let down = serve_support::wxnotify(&db, &["health", "--url", &nobody], &[]).await;
    assert_eq!(down.status.code(), Some(3), "{down:?}");
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("no answer from"),
        "{down:?}"
    );
    child.start_kill().ok();
    child.wait().await.ok();
}
