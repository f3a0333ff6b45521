//! The public edge: callback replays and downgrades, login limits, slow clients,
//! the metrics address, and `migrate` not creating databases by itself.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::Url;
use wxnotify_api::edge::login_limits::LoginLimits;
use wxnotify_api::server::{ServerLimits, serve};
use wxnotify_api::{AppState, EdgeOptions, ops_router, public_router, router};
use wxnotify_core::wechat::crypto::{AesKey, msg_signature, signature};
use wxnotify_core::wechat::event::encrypted_envelope;
use wxnotify_sandbox::mock_wechat::{self, Endpoint, MockConfig, MockEvent};

use crate::users_support::{AES_KEY, CALLBACK_TOKEN, World};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A callback URL signed for `(ts, nonce)`.
fn signed(base: &Url, ts: &str, nonce: &str) -> Url {
    let mut url = base.join("wechat/callback").unwrap();
    url.query_pairs_mut()
        .append_pair("signature", &signature(CALLBACK_TOKEN, ts, nonce))
        .append_pair("timestamp", ts)
        .append_pair("nonce", nonce);
    url
}

async fn post(url: Url, body: String) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(url)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// `xml` encrypted with the test app's key.
fn encrypt(xml: &str) -> String {
    let key = AesKey::from_encoding_aes_key(AES_KEY).unwrap();
    key.encrypt(xml.as_bytes(), mock_wechat::MOCK_OA_APPID)
}

/// A safe-mode POST of `xml` for `(ts, nonce)`.
async fn safe_post(base: &Url, ts: &str, nonce: &str, xml: &str) -> (u16, String) {
    safe_post_encrypted(base, ts, nonce, &encrypt(xml)).await
}

/// A safe-mode POST of an `Encrypt` text for `(ts, nonce)`.
async fn safe_post_encrypted(base: &Url, ts: &str, nonce: &str, encrypt: &str) -> (u16, String) {
    let mut url = signed(base, ts, nonce);
    url.query_pairs_mut()
        .append_pair("encrypt_type", "aes")
        .append_pair(
            "msg_signature",
            &msg_signature(CALLBACK_TOKEN, ts, nonce, encrypt),
        );
    post(
        url,
        encrypted_envelope(mock_wechat::MOCK_OA_ORIGINAL_ID, encrypt),
    )
    .await
}

async fn subscribed(world: &World, person: u64) -> Option<bool> {
    sqlx::query_scalar("SELECT subscribed FROM oa_followers WHERE oa_openid = $1")
        .bind(mock_wechat::oa_openid(person))
        .fetch_optional(&world.db.pool)
        .await
        .unwrap()
}

fn world_config() -> MockConfig {
    MockConfig {
        followers: 10,
        ..MockConfig::default()
    }
}

#[tokio::test]
async fn a_captured_plaintext_query_cannot_carry_a_forged_unsubscribe() {
    let world = World::new(world_config()).await;
    let (base, state) = world.serve().await;
    let (ts, nonce) = (now().to_string(), "40001".to_string());
    let subscribe = world
        .mock
        .event(&MockEvent::Subscribe { person: 3 })
        .unwrap();
    let url = signed(&base, &ts, &nonce);
    assert_eq!(
        post(url.clone(), subscribe.xml.clone()).await,
        (200, "success".into())
    );
    assert_eq!(subscribed(&world, 3).await, Some(true));

    // The attacker read the query string (an access log) and posts an unsubscribe with it.
    let forged = world
        .mock
        .event(&MockEvent::Unsubscribe { person: 3 })
        .unwrap();
    assert_eq!(post(url.clone(), forged.xml).await.0, 403);
    assert_eq!(
        subscribed(&world, 3).await,
        Some(true),
        "the forged event changed nothing"
    );
    // WeChat retrying the very same request is still answered (and changes nothing again).
    assert_eq!(post(url, subscribe.xml).await, (200, "success".into()));
    state.background().close();
    state.background().wait().await;
}

#[tokio::test]
async fn the_handshake_query_cannot_be_reused_for_a_push() {
    let world = World::new(world_config()).await;
    let (base, _) = world.serve().await;
    let (ts, nonce) = (now().to_string(), "40002".to_string());
    let mut handshake = signed(&base, &ts, &nonce);
    handshake.query_pairs_mut().append_pair("echostr", "hello");
    let r = reqwest::get(handshake).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let forged = world
        .mock
        .event(&MockEvent::Unsubscribe { person: 1 })
        .unwrap();
    assert_eq!(post(signed(&base, &ts, &nonce), forged.xml).await.0, 403);
    assert_eq!(world.count("SELECT count(*) FROM callback_events").await, 0);
}

#[tokio::test]
async fn timestamps_outside_the_window_or_not_unix_seconds_are_refused_in_both_modes() {
    let world = World::new(world_config()).await;
    let (base, _) = world.serve().await;
    let push = world
        .mock
        .event(&MockEvent::Unsubscribe { person: 2 })
        .unwrap();
    let too_old = (now() - 400).to_string();
    let too_new = (now() + 400).to_string();
    for ts in [
        "1",
        "1600000000",
        "not-a-time",
        too_old.as_str(),
        too_new.as_str(),
    ] {
        let nonce = rand::random::<u32>().to_string();
        assert_eq!(
            post(signed(&base, ts, &nonce), push.xml.clone()).await.0,
            403,
            "{ts}"
        );
        assert_eq!(safe_post(&base, ts, &nonce, &push.xml).await.0, 403, "{ts}");
    }
    assert_eq!(world.count("SELECT count(*) FROM callback_events").await, 0);
}

#[tokio::test]
async fn a_safe_mode_push_replayed_a_day_later_is_refused() {
    let world = World::new(world_config()).await;
    let (base, _) = world.serve().await;
    let push = world
        .mock
        .event(&MockEvent::Unsubscribe { person: 4 })
        .unwrap();
    // The push was captured whole (query and encrypted body) a day and a minute ago, after the
    // event keys of a day were pruned.
    let ts = (now() - 86_460).to_string();
    assert_eq!(safe_post(&base, &ts, "40003", &push.xml).await.0, 403);
    // Within the window WeChat's retry of the same request is answered, and applied once.
    let ts = now().to_string();
    let sealed = encrypt(&push.xml);
    assert_eq!(
        safe_post_encrypted(&base, &ts, "40004", &sealed).await.0,
        200
    );
    assert_eq!(
        safe_post_encrypted(&base, &ts, "40004", &sealed).await.0,
        200
    );
    assert_eq!(world.count("SELECT count(*) FROM callback_events").await, 1);
    // The same pair with another ciphertext (even of the same event) is a replay.
    assert_eq!(safe_post(&base, &ts, "40004", &push.xml).await.0, 403);
}

#[tokio::test]
async fn safe_mode_refuses_plaintext_pushes_unless_compatibility_is_set() {
    let world = World::new(world_config()).await;
    let (strict, _) = world.serve_with(EdgeOptions::default()).await;
    let push = world
        .mock
        .event(&MockEvent::Unsubscribe { person: 5 })
        .unwrap();
    let nonce = rand::random::<u32>().to_string();
    let (status, body) = post(
        signed(&strict, &now().to_string(), &nonce),
        push.xml.clone(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("safe mode"), "{body}");
    assert_eq!(world.count("SELECT count(*) FROM callback_events").await, 0);
    // The same app in compatible mode takes it.
    let (compatible, _) = world.serve().await;
    let nonce = rand::random::<u32>().to_string();
    let (status, _) = post(signed(&compatible, &now().to_string(), &nonce), push.xml).await;
    assert_eq!(status, 200);
}

/// Serves `app` through the hardened server on port 0.
async fn serve_hardened(app: axum::Router, limits: ServerLimits) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { serve(listener, app, &limits, std::future::pending()).await });
    addr
}

#[tokio::test]
async fn a_login_flood_from_one_client_gets_429_with_retry_after_and_spends_no_quota() {
    let world = World::new(world_config()).await;
    let edge = EdgeOptions {
        login: LoginLimits {
            per_client_per_minute: std::num::NonZeroU32::new(30).unwrap(),
            ..LoginLimits::default()
        },
        ..EdgeOptions::default()
    };
    let state = AppState::with_edge(
        world.db.pool.clone(),
        world.client.clone(),
        world.tokens.clone(),
        &world.settings.apps,
        wxnotify_api::health::metrics_handle(),
        edge,
    )
    .unwrap();
    let addr = serve_hardened(router(state), ServerLimits::default()).await;
    let client = reqwest::Client::new();
    let (mut limited, mut retry_after) = (0, None);
    for i in 0..200 {
        let r = client
            .post(format!("http://{addr}/v1/miniprogram/login"))
            .json(&serde_json::json!({ "code": format!("random-code-{i}") }))
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 429 {
            limited += 1;
            retry_after = r.headers().get("retry-after").cloned();
        }
    }
    let calls = world.mock.stats().calls_to(Endpoint::JsCode2Session);
    assert!(
        calls <= 4,
        "{calls} jscode2session calls for one client's flood"
    );
    assert!(limited >= 196, "{limited} answers were 429");
    let secs: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs), "Retry-After: {secs}");
}

#[tokio::test]
async fn metrics_move_to_their_own_address_when_asked() {
    let world = World::new(world_config()).await;
    let (_, state) = world.serve().await;
    let public = serve_hardened(public_router(state.clone()), ServerLimits::default()).await;
    let ops = serve_hardened(ops_router(state), ServerLimits::default()).await;
    let status = |url: String| async move { reqwest::get(url).await.unwrap().status().as_u16() };
    assert_eq!(status(format!("http://{public}/metrics")).await, 404);
    assert_eq!(status(format!("http://{public}/healthz")).await, 200);
    assert_eq!(status(format!("http://{ops}/metrics")).await, 200);
    assert_eq!(
        status(format!("http://{ops}/v1/miniprogram/login")).await,
        404
    );
}

/// How a slow client misbehaves.
#[derive(Clone, Copy, Debug)]
enum Slow {
    /// Sends half a request head and waits.
    Headers,
    /// Sends the head and drips the body a byte every 300 ms.
    Body,
    /// Makes one request, then keeps the connection open without another.
    Idle,
}

/// Runs one slow client; returns how long the server kept its connection open.
async fn slow_client(addr: std::net::SocketAddr, how: Slow) -> Duration {
    let started = tokio::time::Instant::now();
    let mut conn = TcpStream::connect(addr).await.unwrap();
    match how {
        Slow::Headers => {
            conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap();
        }
        Slow::Body => {
            conn.write_all(
                b"POST /v1/miniprogram/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
            )
            .await
            .unwrap();
            let (mut read, mut write) = conn.into_split();
            let drip = tokio::spawn(async move {
                while write.write_all(b" ").await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            });
            let mut sink = Vec::new();
            let _ = read.read_to_end(&mut sink).await;
            drip.abort();
            return started.elapsed();
        }
        Slow::Idle => {
            conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
        }
    }
    // Read until the server closes (an answer, if any, comes first).
    let mut sink = Vec::new();
    let _ = conn.read_to_end(&mut sink).await;
    started.elapsed()
}

#[tokio::test]
async fn three_hundred_slow_connections_are_closed_in_time_and_a_normal_request_is_answered() {
    let world = World::new(world_config()).await;
    let (_, state) = world.serve().await;
    let limits = ServerLimits {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        max_connections: 400,
        // All 300 come from 127.0.0.1; the per-client limit has a test of its own.
        max_connections_per_client: 0,
        shutdown_grace: Duration::from_secs(1),
    };
    let addr = serve_hardened(router(state), limits).await;
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..300 {
        let how = [Slow::Headers, Slow::Body, Slow::Idle][i % 3];
        clients.spawn(async move { (how, slow_client(addr, how).await) });
    }
    // While they hang on, a normal request gets its answer at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = tokio::time::Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        reqwest::get(format!("http://{addr}/healthz")),
    )
    .await
    .expect("a normal request is answered while 300 slow clients hang on")
    .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    // Every slow connection is closed by the server within its timeout (plus scheduling slack).
    let all = tokio::time::timeout(Duration::from_secs(15), async {
        let mut kept = Vec::new();
        while let Some(done) = clients.join_next().await {
            kept.push(done.unwrap());
        }
        kept
    })
    .await
    .expect("the server closed every slow connection");
    assert_eq!(all.len(), 300);
    for (how, open) in all {
        let limit = match how {
            Slow::Headers | Slow::Idle => Duration::from_secs(1),
            Slow::Body => Duration::from_secs(2),
        };
        assert!(
            open < limit + Duration::from_secs(3),
            "{how:?} connection stayed open {open:?}"
        );
    }
}

#[tokio::test]
async fn the_connection_limit_holds_new_connections_until_one_closes() {
    let world = World::new(world_config()).await;
    let (_, state) = world.serve().await;
    let limits = ServerLimits {
        header_timeout: Duration::from_secs(2),
        max_connections: 5,
        ..ServerLimits::default()
    };
    let addr = serve_hardened(router(state), limits).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(c);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = tokio::time::Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        reqwest::get(format!("http://{addr}/healthz")),
    )
    .await
    .expect("answered once the held connections time out")
    .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let waited = started.elapsed();
    assert!(
        waited > Duration::from_millis(1500),
        "the sixth connection was served after {waited:?}, before a slot was free"
    );
    drop(held);
}

#[tokio::test]
async fn one_host_cannot_take_every_connection() {
    let world = World::new(world_config()).await;
    let (_, state) = world.serve().await;
    let limits = ServerLimits {
        header_timeout: Duration::from_secs(30),
        max_connections: 100,
        max_connections_per_client: 10,
        ..ServerLimits::default()
    };
    let addr = serve_hardened(router(state), limits).await;
    // 127.0.0.1 opens 50 connections that never finish their headers.
    let mut held = Vec::new();
    for _ in 0..50 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        let _ = c.write_all(b"GET /healthz HTTP/1.1\r\n").await;
        held.push(c);
    }
    // The server closes the 40 past its share at once (read: EOF or reset).
    let mut closed = 0;
    for c in &mut held {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(500), c.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 40);
    // Another host (127.0.0.2) is answered at once.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        other.get(format!("http://{addr}/healthz")).send(),
    )
    .await
    .expect("another host is served while one holds its share")
    .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
}

#[tokio::test]
async fn migrate_does_not_create_a_missing_database_unless_asked() {
    let name = format!("wxnotify_missing_{}", uuid::Uuid::new_v4().simple());
    let mut url = Url::parse(&admin_url()).unwrap();
    url.set_path(&name);
    let url = url.to_string();
    let exists = |name: String| async move {
        let pool = sqlx::PgPool::connect(&admin_url()).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap();
        n == 1
    };
    let run = |create: bool| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxnotify"));
        cmd.env("DATABASE_URL", &url)
            .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
            .env("RUST_LOG", "warn")
            .env_remove("WXNOTIFY_CONFIG")
            .env_remove("WXNOTIFY_OA_APPID")
            .arg("migrate");
        if create {
            cmd.arg("--create-database");
        }
        cmd.output()
    };
    let out = run(false).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--create-database"), "{stderr}");
    assert!(
        !exists(name.clone()).await,
        "a mistyped URL made a database"
    );
    // With the flag it is created (the broker is unreachable here, so the run ends with 3 after
    // the Postgres steps).
    let out = run(true).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("database created"), "{stdout}");
    assert!(exists(name.clone()).await);
    let server: sqlx::postgres::PgConnectOptions = admin_url().parse().unwrap();
    wxnotify_sandbox::scratch::drop_database(&server, &name).await;
}

fn admin_url() -> String {
    crate::support::server_url()
}
