//! Bounded memory for every body, measured on the real `wxnotify serve` process: eight clients
//! at once each send the largest body each route takes (a valid batch of 1,000 jobs, an 8 MiB
//! `{"jobs":[0,0,…]}`, a campaign with its recipients inline), and the process's peak resident
//! memory (`VmHWM`) stays under 150 MB.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{Value, json};
use wxnotify_api::admin::campaign_body::{CREATE_BODY_LIMIT, MAX_RECIPIENTS};
use wxnotify_api::producer::api_keys;
use wxnotify_api::producer::notifications::{BATCH_BODY_LIMIT, MAX_BATCH, SINGLE_BODY_LIMIT};
use wxnotify_core::domain::AppName;
use wxnotify_sandbox::mock_wechat;

use crate::system::System;

/// The ceiling the brief sets for `serve` under eight concurrent largest bodies.
const CEILING_KB: u64 = 150 * 1000;
/// Clients at once.
const CLIENTS: usize = 8;
const ADMIN_TOKEN: &str = "bodies-admin-token-of-at-least-32-characters";

/// A `VmHWM` or `VmRSS` of a process, in kB.
fn memory_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in {status}"))
}

/// A valid batch of [`MAX_BATCH`] jobs as large as a batch may be (each job near the 16 KiB a
/// job may be, all of them under the 8 MiB a batch may be).
fn largest_batch(client: usize) -> String {
    let per_job = BATCH_BODY_LIMIT / MAX_BATCH - 300;
    let fields = 32;
    let value_len = (per_job / fields).saturating_sub(14).min(200);
    let jobs: Vec<Value> = (0..MAX_BATCH)
        .map(|i| {
            let data: serde_json::Map<String, Value> = (1..=fields)
                .map(|f| (format!("keyword{f}"), json!("x".repeat(value_len))))
                .collect();
            json!({
                "id": format!("bodies-{client}-{i}"),
                "to": {"mp_openid": mock_wechat::mp_openid(i as u64)},
                "template_id": "TPL_BODIES_NEVER_SEEN",
                "data": data,
            })
        })
        .collect();
    let body = json!({ "jobs": jobs }).to_string();
    assert!(body.len() <= BATCH_BODY_LIMIT, "{}", body.len());
    body
}

/// `{"jobs":[0,0,…]}` of exactly the batch limit.
fn zeros_batch() -> String {
    let mut body = String::with_capacity(BATCH_BODY_LIMIT);
    body.push_str("{\"jobs\":[0");
    while body.len() + 4 <= BATCH_BODY_LIMIT {
        body.push_str(",0");
    }
    body.push_str("]}");
    body
}

/// A campaign with the most recipients inline, as close to the body limit as they fit.
fn largest_campaign(client: usize) -> String {
    let head = json!({
        "template_id": "TPL_ORDER_SHIPPED",
        "data": {"thing1": "Sale", "time2": "today"},
        "rate": 10,
    })
    .to_string();
    let room = CREATE_BODY_LIMIT - head.len() - 64;
    let per = room / MAX_RECIPIENTS;
    let mut recipients = String::with_capacity(room);
    for i in 0..MAX_RECIPIENTS {
        let openid = format!("oBodies{client}x{i:09}");
        let skeleton = format!(r#"{{"to":{{"mp_openid":"{openid}"}},"data":{{"thing1":""}}}},"#);
        let pad = "y".repeat(per.saturating_sub(skeleton.len()).min(20));
        recipients.push_str(&format!(
            r#"{{"to":{{"mp_openid":"{openid}"}},"data":{{"thing1":"{pad}"}}}},"#
        ));
    }
    recipients.pop();
    let body = format!(
        "{},\"audience\":{{\"recipients\":[{recipients}]}}}}",
        head.trim_end_matches('}')
    );
    assert!(body.len() <= CREATE_BODY_LIMIT, "{}", body.len());
    body
}

#[tokio::test]
async fn eight_concurrent_largest_bodies_keep_serve_under_150_mb() {
    let sys = System::seeded(20).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // `SERVE_BIN_UNDER_TEST` measures another build (e.g. target/release/wxnotify).
    let bin = std::env::var("SERVE_BIN_UNDER_TEST")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_wxnotify").to_owned());
    let mut serve = tokio::process::Command::new(&bin)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", sys.db.url())
        .env("AMQP_URL", sys.settings.amqp_url.expose_secret())
        .env("WXNOTIFY_QUEUE_PREFIX", sys.topology.prefix())
        .env("WXNOTIFY_OA_APPID", mock_wechat::MOCK_OA_APPID)
        .env("WXNOTIFY_OA_SECRET", mock_wechat::MOCK_OA_SECRET)
        .env("WXNOTIFY_ADMIN_TOKEN", ADMIN_TOKEN)
        // Memory is measured here, not latency: the bodies share a budget (two of the largest
        // at a time), and the last of eight waits its turn; a debug build on a busy machine may
        // take longer than the default 30 s for it.
        .env("WXNOTIFY_REQUEST_TIMEOUT_SECS", "300")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = serve.id().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    // A connection per request: a kept-alive one may be closed by serve's idle timeout just
    // as the next body starts on it.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(280))
        .build()
        .unwrap();
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let key = api_keys::create(&sys.db.pool, &AppName::default_app(), Some("bodies"))
        .await
        .unwrap()
        .key;
    let idle = memory_kb(pid, "VmHWM");

    // Built before they are sent, so the test's own memory is not the server's.
    let batches: Vec<String> = (0..CLIENTS).map(largest_batch).collect();
    let zeros = zeros_batch();
    let campaigns: Vec<String> = (0..CLIENTS).map(largest_campaign).collect();
    let send = |path: &'static str, token: String, body: String| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let sent = std::time::Instant::now();
            let r = http
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("after {:?}: {e:?}", sent.elapsed()));
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            (status, text)
        }
    };

    let started = std::time::Instant::now();
    let answers = futures::future::join_all(
        batches
            .into_iter()
            .map(|b| send("/v1/notifications/batch", key.clone(), b)),
    )
    .await;
    for (status, text) in &answers {
        assert_eq!(*status, 200, "{}", &text[..text.len().min(300)]);
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["accepted"], MAX_BATCH, "{}", &text[..text.len().min(300)]);
    }
    let after_batches = memory_kb(pid, "VmHWM");
    let batch_time = started.elapsed();

    let answers = futures::future::join_all(
        (0..CLIENTS).map(|_| send("/v1/notifications/batch", key.clone(), zeros.clone())),
    )
    .await;
    for (status, text) in &answers {
        assert_eq!(*status, 422, "{text}");
        assert!(text.contains("more than 1000 jobs"), "{text}");
    }
    let after_zeros = memory_kb(pid, "VmHWM");

    let started = std::time::Instant::now();
    let answers = futures::future::join_all(
        campaigns
            .into_iter()
            .map(|b| send("/admin/api/campaigns", ADMIN_TOKEN.into(), b)),
    )
    .await;
    for (status, text) in &answers {
        assert_eq!(*status, 201, "{}", &text[..text.len().min(300)]);
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["audience"], MAX_RECIPIENTS, "{text}");
    }
    let campaign_time = started.elapsed();

    // One byte past the limit is a 413 naming it (on the single job's route: a body the
    // socket buffers hold, so the early answer is read rather than cut by a broken pipe).
    let (status, text) = send(
        "/v1/notifications",
        key.clone(),
        " ".repeat(SINGLE_BODY_LIMIT + 1),
    )
    .await;
    assert_eq!(status, 413, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["limit_bytes"], SINGLE_BODY_LIMIT);

    let peak = memory_kb(pid, "VmHWM");
    eprintln!(
        "{bin}: serve VmHWM: idle {idle} kB; after 8 valid batches {after_batches} kB ({batch_time:?}); \
         after 8 zero batches {after_zeros} kB; after 8 campaigns of {MAX_RECIPIENTS} \
         recipients {peak} kB ({campaign_time:?})"
    );
    serve.start_kill().unwrap();
    let _ = serve.wait().await;
    assert!(
        peak < CEILING_KB,
        "serve peaked at {peak} kB with {CLIENTS} concurrent largest bodies (idle {idle} kB)"
    );
}
