//! Outcome webhooks against a real Postgres: one slow receiver delays only its own app, two real
//! `serve` processes post each event once, the Standard Webhooks signature checked with the
//! spec's algorithm written out here, and secrets (webhook secrets, access tokens) encrypted at
//! rest with `WXNOTIFY_SECRET_KEY` while rows from before still work.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;
use wxnotify_api::producer::webhooks::{self, WebhookOptions};
use wxnotify_core::at_rest::SecretCodec;
use wxnotify_core::domain::{AppId, AppName};
use wxnotify_core::wechat::client::ClientOptions;
use wxnotify_core::wechat::{
    AccessToken, OaCredentials, TokenError, TokenSource, TokenStore, WechatClient,
};
use wxnotify_sandbox::mock_wechat::{self, MockConfig, MockWechat};

use crate::support::{TestDb, amqp_url, queue_prefix};

/// A key for `WXNOTIFY_SECRET_KEY`, and another one.
const KEY: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
const OTHER_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// One post as the receiver saw it on arrival.
#[derive(Clone)]
struct Hit {
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

impl Hit {
    fn header(&self, name: &str) -> &str {
        self.headers[name].to_str().unwrap()
    }
}

/// A webhook receiver on port 0: `POST /{app}` is recorded on arrival, then answered 204 after
/// the app's delay.
struct Receiver {
    base: Url,
    hits: Arc<Mutex<HashMap<String, Vec<Hit>>>>,
    max_in_flight: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(delays: &[(&str, Duration)]) -> Receiver {
        let delays: Arc<HashMap<String, Duration>> =
            Arc::new(delays.iter().map(|(a, d)| (a.to_string(), *d)).collect());
        let hits: Arc<Mutex<HashMap<String, Vec<Hit>>>> = Arc::default();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let router = axum::Router::new().route(
            "/{app}",
            axum::routing::post({
                let (hits, in_flight, max) =
                    (hits.clone(), in_flight.clone(), max_in_flight.clone());
                move |Path(app): Path<String>, headers: HeaderMap, body: Bytes| {
                    let (hits, in_flight, max, delays) =
                        (hits.clone(), in_flight.clone(), max.clone(), delays.clone());
                    async move {
                        let at = Instant::now();
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(now, Ordering::SeqCst);
                        let delay = delays.get(&app).copied().unwrap_or_default();
                        hits.lock().unwrap().entry(app).or_default().push(Hit {
                            headers,
                            body,
                            at,
                        });
                        tokio::time::sleep(delay).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        StatusCode::NO_CONTENT
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Receiver {
            base,
            hits,
            max_in_flight,
        }
    }

    fn url(&self, app: &str) -> Url {
        self.base.join(app).unwrap()
    }

    fn hits(&self, app: &str) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap()
            .get(app)
            .cloned()
            .unwrap_or_default()
    }

    /// The posts to `app` once there are at least `n`, within `within`.
    async fn wait_hits(&self, app: &str, n: usize, within: Duration) -> Vec<Hit> {
        let deadline = Instant::now() + within;
        loop {
            let hits = self.hits(app);
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "{app}'s receiver got {} of {n} posts within {within:?}",
                hits.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The Standard Webhooks signature, written out from the specification: HMAC-SHA256 over
/// `"{id}.{timestamp}.{body}"` keyed with the base64-decoded part of `whsec_<base64>`, sent as
/// `v1,<base64>`.
fn spec_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .expect("the secret is standard base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Checks a post against `secret` as a receiver with a Standard Webhooks library would.
fn assert_signed(hit: &Hit, secret: &str) {
    let id = hit.header(webhooks::ID_HEADER);
    let timestamp = hit.header(webhooks::TIMESTAMP_HEADER);
    let sent_at: i64 = timestamp.parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - sent_at).abs() < 60);
    assert_eq!(
        hit.header(webhooks::SIGNATURE_HEADER),
        spec_signature(secret, id, timestamp, &hit.body)
    );
    let body: Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(body["event_id"], id, "the body carries the event id");
    assert!(id.starts_with("msg_"), "{id}");
}

async fn register_apps(pool: &PgPool, apps: &[&str]) {
    for app in apps {
        sqlx::query("INSERT INTO apps (name, oa_appid) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(app)
            .bind(mock_wechat::MOCK_OA_APPID)
            .execute(pool)
            .await
            .unwrap();
    }
}

/// Adds `n` `dead` events of `app` to the outbox, as the ledger's triggers do.
async fn add_events(pool: &PgPool, app: &str, n: i32) {
    sqlx::query(
        "INSERT INTO webhook_outbox (app, job_id, event, payload)
         SELECT $1::text, $1::text || '-' || g, 'dead',
                jsonb_build_object('event', 'dead', 'id', $1::text || '-' || g, 'app', $1::text)
         FROM generate_series(1, $2::int) g",
    )
    .bind(app)
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("SELECT pg_notify('wxnotify_webhooks', '')")
        .execute(pool)
        .await
        .unwrap();
}

fn app(name: &str) -> AppName {
    AppName::parse(name).unwrap()
}

/// The dispatcher of one `serve` process, in this process; stopped by the token.
fn dispatcher(
    pool: &PgPool,
    options: WebhookOptions,
    secrets: SecretCodec,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let task = tokio::spawn(webhooks::run_dispatcher(
        pool.clone(),
        options,
        secrets,
        stop.clone(),
    ));
    (stop, task)
}

#[test]
fn webhook_signatures_match_the_standard_webhooks_test_vector() {
    // The test vector of the Standard Webhooks specification.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    let body = br#"{"test": 2432232314}"#;
    let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    assert_eq!(spec_signature(secret, id, "1614265330", body), expected);
    assert_eq!(webhooks::sign(secret, id, 1_614_265_330, body), expected);
    let signed = webhooks::Signed {
        id,
        timestamp: "1614265330",
        signature: expected,
    };
    let tolerance = Duration::from_secs(300);
    assert!(webhooks::verify(
        secret,
        signed,
        body,
        1_614_265_330,
        tolerance
    ));
    assert!(!webhooks::verify(
        secret,
        signed,
        b"{}",
        1_614_265_330,
        tolerance
    ));
}

#[tokio::test]
async fn a_slow_webhook_receiver_delays_only_its_own_app_and_times_out_into_retries() {
    let db = TestDb::new().await;
    let pool = db.pool.clone();
    register_apps(&pool, &["slow", "fast"]).await;
    let receiver = Receiver::start(&[("slow", Duration::from_secs(6))]).await;
    let codec = SecretCodec::plain();
    for name in ["slow", "fast"] {
        webhooks::set(&pool, &codec, &app(name), &receiver.url(name), false, false)
            .await
            .unwrap();
    }
    let fast_secret = webhooks::set(
        &pool,
        &codec,
        &app("fast"),
        &receiver.url("fast"),
        false,
        true,
    )
    .await
    .unwrap()
    .expect("a rotated secret is shown");
    let options = WebhookOptions {
        timeout: Duration::from_secs(2),
        min_delay: Duration::from_secs(60),
        max_delay: Duration::from_secs(120),
        idle_poll: Duration::from_millis(50),
        ..WebhookOptions::default()
    };
    let concurrency = options.per_app_concurrency;
    let (stop, task) = dispatcher(&pool, options, codec);

    add_events(&pool, "slow", 40).await;
    receiver
        .wait_hits("slow", concurrency, Duration::from_secs(10))
        .await;
    // The slow receiver holds every post its app may have in flight; the other app's event
    // goes out at once.
    let added = Instant::now();
    add_events(&pool, "fast", 1).await;
    let fast = receiver.wait_hits("fast", 1, Duration::from_secs(10)).await;
    let waited = fast[0].at - added;
    assert!(
        waited < Duration::from_secs(1),
        "app fast waited {waited:?} behind app slow"
    );
    assert_signed(&fast[0], &fast_secret);
    assert_eq!(
        receiver.hits("slow").len(),
        concurrency,
        "no more than its concurrency in flight to one app"
    );

    // Every slow post times out after 2 s into the retry schedule (next attempt a minute on).
    let deadline = Instant::now() + Duration::from_secs(20);
    let rows = loop {
        let rows: Vec<(i32, Option<String>, bool, bool)> = sqlx::query_as(
            "SELECT attempts, last_error, leased_until IS NULL,
                    next_attempt_at > now() + interval '30 seconds'
             FROM webhook_outbox WHERE app = 'slow' AND delivered_at IS NULL",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        if rows.iter().all(|r| r.1.is_some()) || Instant::now() >= deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rows.len(), 40);
    for (attempts, error, lease_released, later) in rows {
        assert_eq!(attempts, 1);
        assert_eq!(
            error.as_deref(),
            Some("the receiver did not answer in time")
        );
        assert!(lease_released && later);
    }
    stop.cancel();
    task.await.unwrap();
}

/// `wxnotify serve` on `database_url` (its public port is of no use here).
fn serve_process(database_url: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_wxnotify"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", database_url)
        .env("AMQP_URL", amqp_url())
        .env("WXNOTIFY_QUEUE_PREFIX", queue_prefix())
        .env("WECHAT_API_BASE", "http://127.0.0.1:9/")
        .env("WXNOTIFY_OA_APPID", mock_wechat::MOCK_OA_APPID)
        .env("WXNOTIFY_OA_SECRET", mock_wechat::MOCK_OA_SECRET)
        .env_remove("WXNOTIFY_CONFIG")
        .env_remove("WXNOTIFY_SECRET_KEY")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the wxnotify binary runs")
}

#[tokio::test]
async fn two_serve_processes_post_each_webhook_event_exactly_once() {
    const EVENTS: usize = 80;
    let db = TestDb::new().await;
    let pool = db.pool.clone();
    register_apps(&pool, &["default"]).await;
    // Slow enough that a claim of every due event at once outlives its lease before the last
    // ones are posted (what doubled events with two processes).
    let receiver = Receiver::start(&[("default", Duration::from_secs(5))]).await;
    let secret = webhooks::set(
        &pool,
        &SecretCodec::plain(),
        &AppName::default_app(),
        &receiver.url("default"),
        false,
        false,
    )
    .await
    .unwrap()
    .unwrap();
    add_events(&pool, "default", EVENTS as i32).await;
    let _serve = [serve_process(&db.url()), serve_process(&db.url())];

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let delivered: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM webhook_outbox WHERE delivered_at IS NOT NULL",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if delivered == EVENTS as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{delivered} of {EVENTS} delivered in 90 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = receiver.hits("default");
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for hit in &hits {
        *per_id
            .entry(hit.header(webhooks::ID_HEADER).to_owned())
            .or_default() += 1;
    }
    let repeated: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "events posted more than once: {repeated:?}"
    );
    assert_eq!((hits.len(), per_id.len()), (EVENTS, EVENTS));
    assert!(
        receiver.max_in_flight.load(Ordering::SeqCst)
            > WebhookOptions::default().per_app_concurrency,
        "both processes posted"
    );
    assert_signed(&hits[0], &secret);
}

fn oa_credentials() -> OaCredentials {
    OaCredentials {
        app: AppName::default_app(),
        appid: AppId::parse(mock_wechat::MOCK_OA_APPID).unwrap(),
        secret: mock_wechat::MOCK_OA_SECRET.to_owned().into(),
        source: TokenSource::Stable,
        mini_program: None,
    }
}

async fn stored_token(pool: &PgPool) -> String {
    sqlx::query_scalar("SELECT token FROM access_tokens WHERE app = 'default'")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn stored_webhook_secret(pool: &PgPool) -> String {
    sqlx::query_scalar("SELECT secret FROM app_webhooks WHERE app = 'default'")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn access_tokens_and_webhook_secrets_are_encrypted_at_rest_and_old_plaintext_rows_still_work()
{
    let db = TestDb::new().await;
    let pool = db.pool.clone();
    register_apps(&pool, &["default"]).await;
    let mock = MockWechat::start(MockConfig::default()).await.unwrap();
    let client = WechatClient::new(mock.base_url(), &ClientOptions::default()).unwrap();
    let key = SecretCodec::from_base64_key(KEY).unwrap();
    let store = |codec: SecretCodec| {
        TokenStore::with_secrets(pool.clone(), client.clone(), [oa_credentials()], codec)
    };
    let default = AppName::default_app();

    // Access tokens: stored encrypted, read by another process with the same key.
    let token = store(key.clone()).get(&default).await.unwrap();
    let stored = stored_token(&pool).await;
    assert!(stored.starts_with("enc:v1:"), "{stored}");
    assert!(!stored.contains(token.expose()));
    assert_eq!(
        store(key.clone()).get(&default).await.unwrap().expose(),
        token.expose()
    );
    // Without the key, or with another, a clear error naming the setting, never the token.
    for codec in [
        SecretCodec::plain(),
        SecretCodec::from_base64_key(OTHER_KEY).unwrap(),
    ] {
        let err = store(codec).get(&default).await.unwrap_err();
        assert!(matches!(err, TokenError::Sealed(_)), "{err}");
        let text = err.to_string();
        assert!(text.contains("WXNOTIFY_SECRET_KEY"), "{text}");
        assert!(!text.contains(token.expose()), "{text}");
    }
    // A token stored in plain text before the key was set is read, and stored encrypted when
    // it is next written.
    sqlx::query("UPDATE access_tokens SET token = 'old-plain-token' WHERE app = 'default'")
        .execute(&pool)
        .await
        .unwrap();
    let keyed = store(key.clone());
    assert_eq!(
        keyed.get(&default).await.unwrap().expose(),
        "old-plain-token"
    );
    let fresh = keyed
        .invalidate(&default, &AccessToken::new("old-plain-token"))
        .await
        .unwrap();
    let stored = stored_token(&pool).await;
    assert!(stored.starts_with("enc:v1:"), "{stored}");
    assert_eq!(
        store(key.clone()).get(&default).await.unwrap().expose(),
        fresh.expose()
    );

    // Webhook secrets: stored encrypted, and the dispatcher signs with the secret shown.
    let receiver = Receiver::start(&[]).await;
    let hook = receiver.url("default");
    let secret = webhooks::set(&pool, &key, &default, &hook, false, false)
        .await
        .unwrap()
        .unwrap();
    let stored = stored_webhook_secret(&pool).await;
    assert!(stored.starts_with("enc:v1:"), "{stored}");
    assert!(!stored.contains(secret.trim_start_matches("whsec_")));
    let options = WebhookOptions {
        idle_poll: Duration::from_millis(50),
        ..WebhookOptions::default()
    };
    let (stop, task) = dispatcher(&pool, options, key.clone());
    add_events(&pool, "default", 1).await;
    let hits = receiver
        .wait_hits("default", 1, Duration::from_secs(10))
        .await;
    assert_signed(&hits[0], &secret);
    // A secret stored in plain text before the key was set still signs; `webhook set` keeps it
    // and stores it encrypted.
    let old = format!("whsec_{}", STANDARD.encode([9u8; 32]));
    sqlx::query("UPDATE app_webhooks SET secret = $1 WHERE app = 'default'")
        .bind(&old)
        .execute(&pool)
        .await
        .unwrap();
    add_events(&pool, "default", 1).await;
    let hits = receiver
        .wait_hits("default", 2, Duration::from_secs(10))
        .await;
    assert_signed(&hits[1], &old);
    let shown = webhooks::set(&pool, &key, &default, &hook, true, false)
        .await
        .unwrap();
    assert_eq!(shown, None, "a kept secret is not shown again");
    assert!(stored_webhook_secret(&pool).await.starts_with("enc:v1:"));
    add_events(&pool, "default", 1).await;
    let hits = receiver
        .wait_hits("default", 3, Duration::from_secs(10))
        .await;
    assert_signed(&hits[2], &old);
    stop.cancel();
    task.await.unwrap();

    // A process started with another key, or none, stops at once with exit code 2 naming the
    // setting, and shows no secret.
    for (key_var, code) in [(Some(KEY), 0), (Some(OTHER_KEY), 2), (None, 2)] {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxnotify"));
        command
            .args(["webhook", "list"])
            .env("DATABASE_URL", db.url())
            .env_remove("WXNOTIFY_CONFIG")
            .env_remove("WXNOTIFY_OA_APPID")
            .env("RUST_LOG", "warn");
        match key_var {
            Some(k) => command.env("WXNOTIFY_SECRET_KEY", k),
            None => command.env_remove("WXNOTIFY_SECRET_KEY"),
        };
        let out = command.output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        if code == 2 {
            assert!(stderr.contains("WXNOTIFY_SECRET_KEY"), "{stderr}");
        }
        for secret in [old.as_str(), fresh.expose(), KEY, OTHER_KEY] {
            assert!(!stderr.contains(secret), "a secret in the log: {stderr}");
        }
    }
}
