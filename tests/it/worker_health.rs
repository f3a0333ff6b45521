//! The worker's health endpoints (on `--metrics-listen`) while RabbitMQ goes away and comes
//! back: `/livez` stays 200 (a liveness probe must not restart it), `/readyz` and `/healthz`
//! answer 503 naming RabbitMQ. A worker process reaches the real broker through a TCP proxy the
//! test stops and starts.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use wxnotify_sandbox::mock_wechat::{self, MockConfig};

use crate::system::System;

/// Forwards every connection on `listen` to `target` until the token is cancelled, then
/// drops them all (what a broker restart or a network cut looks like to the worker).
async fn proxy(listen: SocketAddr, target: SocketAddr) -> CancellationToken {
    let listener = TcpListener::bind(listen).await.expect("the proxy's port");
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        loop {
            let (mut inbound, _) = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            let stop = stop.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = stop.cancelled() => {}
                }
            });
        }
    });
    token
}

async fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// Polls `path` until it answers `status`; returns the body.
async fn becomes(addr: SocketAddr, path: &str, status: u16, within: Duration) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = String::from("no answer");
    loop {
        if let Ok(r) = reqwest::get(format!("http://{addr}{path}")).await {
            let code = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            if code == status {
                return serde_json::from_str(&body)
                    .unwrap_or_else(|_| panic!("{path} is JSON: {body}"));
            }
            last = format!("{code} {body}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never answered {status}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `/healthz` until it answers `status`; returns the body.
async fn health_becomes(addr: SocketAddr, status: u16, within: Duration) -> serde_json::Value {
    becomes(addr, "/healthz", status, within).await
}

#[tokio::test]
async fn the_worker_stays_live_but_not_ready_while_rabbitmq_is_away() {
    let sys = System::new(MockConfig::default(), 1000).await;
    let amqp = url::Url::parse(sys.settings.amqp_url.expose_secret()).unwrap();
    let broker: SocketAddr = tokio::net::lookup_host((
        amqp.host_str().unwrap().to_owned(),
        amqp.port().unwrap_or(5672),
    ))
    .await
    .unwrap()
    .next()
    .unwrap();
    let via = free_port().await;
    let mut proxied = amqp.clone();
    proxied.set_port(Some(via.port())).unwrap();
    let metrics = free_port().await;
    let mut stop = proxy(via, broker).await;

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxnotify"))
        .arg("worker")
        .args(["--metrics-listen", &metrics.to_string()])
        .env("DATABASE_URL", sys.db.url())
        .env("AMQP_URL", proxied.as_str())
        .env("WECHAT_API_BASE", sys.mock.base_url().to_string())
        .env("WXNOTIFY_QUEUE_PREFIX", sys.topology.prefix())
        .env("WXNOTIFY_OA_APPID", mock_wechat::MOCK_OA_APPID)
        .env("WXNOTIFY_OA_SECRET", mock_wechat::MOCK_OA_SECRET)
        // The queues were declared with the tests' delivery limit.
        .env(
            "WXNOTIFY_DELIVERY_LIMIT",
            crate::system::test_topology().delivery_limit.to_string(),
        )
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the wxnotify binary runs");

    let up = health_becomes(metrics, 200, Duration::from_secs(60)).await;
    assert_eq!(up["rabbitmq"], "consuming", "{up}");
    let ready = becomes(metrics, "/readyz", 200, Duration::from_secs(5)).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["checks"]["rabbitmq"], "consuming", "{ready}");
    assert_eq!(ready["checks"]["postgres"], "ok", "{ready}");

    // The broker goes away: the worker reconnects in the background, and says so.
    stop.cancel();
    let down = health_becomes(metrics, 503, Duration::from_secs(20)).await;
    assert_eq!(down["rabbitmq"], "disconnected", "{down}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = health_becomes(metrics, 503, Duration::from_secs(1)).await;
    assert_eq!(
        still["rabbitmq"], "disconnected",
        "while the broker stays away"
    );
    // Not ready, naming what is missing; but alive: a liveness probe leaves it running.
    let not_ready = becomes(metrics, "/readyz", 503, Duration::from_secs(1)).await;
    assert_eq!(not_ready["status"], "unavailable", "{not_ready}");
    assert_eq!(
        not_ready["missing"],
        serde_json::json!(["rabbitmq"]),
        "{not_ready}"
    );
    assert_eq!(not_ready["checks"]["postgres"], "ok", "{not_ready}");
    let live = becomes(metrics, "/livez", 200, Duration::from_secs(1)).await;
    assert_eq!(live["status"], "ok", "{live}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the worker keeps running while RabbitMQ is away"
    );

    // It comes back: consuming again, healthy again.
    stop = proxy(via, broker).await;
    let back = health_becomes(metrics, 200, Duration::from_secs(30)).await;
    assert_eq!(back["rabbitmq"], "consuming", "{back}");
    becomes(metrics, "/readyz", 200, Duration::from_secs(5)).await;

    // SAFETY: kill(2) on our own child's pid.
    let pid = child.id().expect("the worker runs") as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the worker exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    stop.cancel();
}
