//! The shared access-token store against the real Postgres, with WeChat played by wiremock.
//! Several `TokenStore`s, each with a pool of its own, stand for several wxnotify processes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::json;
use tokio::task::JoinSet;
use wiremock::matchers::{body_partial_json, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};
use wxnotify_core::config::{AppConfig, TokenSource};
use wxnotify_core::domain::{AppId, AppName};
use wxnotify_core::wechat::client::ClientOptions;
use wxnotify_core::wechat::{AccessToken, ErrClass, TokenStore, WechatClient, WechatError};

use crate::support::TestDb;

const SECRET: &str = "oa-secret-for-tests";

/// One app, its database and a fake WeChat whose token endpoints count their calls.
struct Fixture {
    db: TestDb,
    wechat: MockServer,
    app: AppConfig,
    /// Calls to the token endpoint so far (each one answers `T<n>`).
    calls: Arc<AtomicUsize>,
}

/// What the n-th (1-based) token call answers.
type Answer = Arc<dyn Fn(usize) -> ResponseTemplate + Send + Sync>;

fn token_answer(n: usize, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"access_token": format!("T{n}"), "expires_in": expires_in}))
        // Long enough for every concurrent caller to pile up behind the refresh in flight.
        .set_delay(Duration::from_millis(100))
}

fn wechat_error(errcode: i64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_string(format!(
        r#"{{"errcode":{errcode},"errmsg":"system error rid: 1-2-3"}}"#
    ))
}

impl Fixture {
    /// Every token call answers a fresh `T<n>` that lives two hours.
    async fn new(source: TokenSource) -> Fixture {
        Self::answering(source, Arc::new(|n| token_answer(n, 7200))).await
    }

    async fn answering(source: TokenSource, answer: Answer) -> Fixture {
        let db = TestDb::new().await;
        let app = AppConfig {
            name: AppName::parse("shop").unwrap(),
            oa_appid: AppId::parse("wxOA0123456789").unwrap(),
            oa_secret: SecretString::from(SECRET),
            mp_appid: None,
            mp_secret: None,
            callback_token: None,
            encoding_aes_key: None,
            encoding_aes_key_previous: None,
            mp_callback_token: None,
            mp_encoding_aes_key: None,
            rate_per_second: 100,
            token_source: source,
        };
        wxnotify_core::db::register_apps(&db.pool, std::slice::from_ref(&app))
            .await
            .unwrap();
        let wechat = MockServer::start().await;
        // force_refresh=true invalidates every process's token: wxnotify must never send it.
        Mock::given(path("/cgi-bin/stable_token"))
            .and(body_partial_json(json!({"force_refresh": true})))
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .named("stable_token with force_refresh=true")
            .mount(&wechat)
            .await;
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let endpoint = match source {
            TokenSource::Stable => Mock::given(method("POST"))
                .and(path("/cgi-bin/stable_token"))
                .and(body_partial_json(json!({
                    "grant_type": "client_credential",
                    "appid": "wxOA0123456789",
                    "secret": SECRET,
                    "force_refresh": false,
                }))),
            TokenSource::Classic => Mock::given(method("GET"))
                .and(path("/cgi-bin/token"))
                .and(query_param("grant_type", "client_credential"))
                .and(query_param("appid", "wxOA0123456789"))
                .and(query_param("secret", SECRET)),
        };
        endpoint
            .respond_with(move |_: &Request| answer(counter.fetch_add(1, Ordering::SeqCst) + 1))
            .named("token endpoint")
            .mount(&wechat)
            .await;
        Fixture {
            db,
            wechat,
            app,
            calls,
        }
    }

    /// A store with a pool of its own, as another process would have.
    async fn store(&self) -> TokenStore {
        let client = WechatClient::new(
            url::Url::parse(&self.wechat.uri()).unwrap(),
            &ClientOptions::default(),
        )
        .unwrap();
        let pool = self.db.another_pool(3).await;
        TokenStore::new(pool, client, std::slice::from_ref(&self.app))
    }

    async fn stores(&self, n: usize) -> Vec<TokenStore> {
        let mut stores = Vec::new();
        for _ in 0..n {
            stores.push(self.store().await);
        }
        stores
    }

    fn name(&self) -> &AppName {
        &self.app.name
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The stored row: (token, refreshes, lease holder set?).
    async fn row(&self) -> (Option<String>, i64, bool) {
        sqlx::query_as(
            "SELECT token, refreshes, refresh_holder IS NOT NULL OR refresh_lease_until IS NOT NULL
             FROM access_tokens WHERE app = $1",
        )
        .bind(self.name().as_str())
        .fetch_one(&self.db.pool)
        .await
        .unwrap()
    }

    /// Moves the stored token's fetch and expiry instants `secs` seconds into the past, as if
    /// that much time had gone by.
    async fn age_stored_token(&self, secs: i32) {
        sqlx::query(
            "UPDATE access_tokens
             SET fetched_at = fetched_at - make_interval(secs => $2),
                 expires_at = expires_at - make_interval(secs => $2)
             WHERE app = $1",
        )
        .bind(self.name().as_str())
        .bind(f64::from(secs))
        .execute(&self.db.pool)
        .await
        .unwrap();
    }
}

/// Runs `per_store` concurrent `op`s on every store; returns every token they got.
async fn on_every_store<F, Fut>(stores: &[TokenStore], per_store: usize, op: F) -> Vec<String>
where
    F: Fn(TokenStore) -> Fut,
    Fut: Future<Output = Result<AccessToken, wxnotify_core::wechat::TokenError>> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    for store in stores {
        for _ in 0..per_store {
            tasks.spawn(op(store.clone()));
        }
    }
    let mut tokens = Vec::new();
    while let Some(done) = tasks.join_next().await {
        tokens.push(done.unwrap().expect("a token").expose().to_owned());
    }
    tokens
}

fn api_error(errcode: i64) -> WechatError {
    WechatError::Api {
        endpoint: "cgi-bin/message/template/send",
        errcode,
        errmsg: format!("errcode {errcode} rid: 9-9-9"),
        class: wxnotify_core::wechat::classify(errcode),
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_callers_in_many_processes_share_one_token_fetched_once() {
    let fx = Fixture::new(TokenSource::Stable).await;
    let stores = fx.stores(4).await;
    let app = fx.name().clone();

    let tokens = on_every_store(&stores, 50, |s| {
        let app = app.clone();
        async move { s.get(&app).await }
    })
    .await;

    assert_eq!(tokens.len(), 200);
    assert!(tokens.iter().all(|t| t == "T1"), "{tokens:?}");
    assert_eq!(fx.calls(), 1, "WeChat is asked once");
    assert_eq!(fx.row().await, (Some("T1".into()), 1, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refreshed_once_when_every_caller_of_every_process_sees_40001() {
    let fx = Fixture::new(TokenSource::Stable).await;
    let stores = fx.stores(4).await;
    let app = fx.name().clone();
    for store in &stores {
        assert_eq!(store.get(&app).await.unwrap().expose(), "T1");
    }

    let bad = AccessToken::new("T1");
    let tokens = on_every_store(&stores, 50, |s| {
        let (app, bad) = (app.clone(), bad.clone());
        async move { s.invalidate(&app, &bad).await }
    })
    .await;

    assert!(tokens.iter().all(|t| t == "T2"), "{tokens:?}");
    assert_eq!(fx.calls(), 2, "exactly one refresh");
    assert_eq!(fx.row().await, (Some("T2".into()), 2, false));
    for store in &stores {
        assert_eq!(store.get(&app).await.unwrap().expose(), "T2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_40001_for_an_old_token_does_not_refresh_again() {
    let fx = Fixture::new(TokenSource::Stable).await;
    let stores = fx.stores(2).await;
    let app = fx.name().clone();
    for store in &stores {
        store.get(&app).await.unwrap();
    }
    let t1 = AccessToken::new("T1");
    assert_eq!(
        stores[0].invalidate(&app, &t1).await.unwrap().expose(),
        "T2"
    );
    assert_eq!(fx.calls(), 2);

    // Late reports about T1, from the process that refreshed and from one that did not.
    let tokens = on_every_store(&stores, 20, |s| {
        let (app, t1) = (app.clone(), t1.clone());
        async move { s.invalidate(&app, &t1).await }
    })
    .await;

    assert!(tokens.iter().all(|t| t == "T2"), "{tokens:?}");
    assert_eq!(
        fx.calls(),
        2,
        "compare and swap: T1 is no longer the stored token"
    );
}

#[tokio::test]
async fn a_token_is_refreshed_before_it_expires() {
    // The first token lives 3 s, so it is due for refresh at 2.25 s (a quarter of its life
    // before expiry); the next one lives two hours.
    let fx = Fixture::answering(
        TokenSource::Stable,
        Arc::new(|n| token_answer(n, if n == 1 { 3 } else { 7200 })),
    )
    .await;
    let store = fx.store().await;
    let app = fx.name();
    assert_eq!(store.get(app).await.unwrap().expose(), "T1");
    let fetched = Instant::now();

    let deadline = fetched + Duration::from_secs(5);
    let replaced = loop {
        let token = store.get(app).await.unwrap();
        if token.expose() != "T1" {
            assert_eq!(token.expose(), "T2");
            break fetched.elapsed();
        }
        assert!(Instant::now() < deadline, "T1 was never replaced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    assert!(
        replaced >= Duration::from_millis(2000),
        "kept while fresh: {replaced:?}"
    );
    assert!(
        replaced < Duration::from_secs(3),
        "replaced before expiry: {replaced:?}"
    );
    assert_eq!(fx.calls(), 2);
}

#[tokio::test]
async fn a_process_starting_late_refreshes_a_stored_token_close_to_expiry() {
    let fx = Fixture::new(TokenSource::Stable).await;
    let app = fx.name();
    assert_eq!(fx.store().await.get(app).await.unwrap().expose(), "T1");

    // A fresh process reads T1 with plenty of life left: it uses it.
    assert_eq!(fx.store().await.get(app).await.unwrap().expose(), "T1");
    assert_eq!(fx.calls(), 1);

    // Two hours minus two minutes later T1 is still valid, but inside the refresh margin.
    fx.age_stored_token(7200 - 120).await;
    assert_eq!(fx.store().await.get(app).await.unwrap().expose(), "T2");
    assert_eq!(fx.calls(), 2);
}

#[tokio::test]
async fn the_classic_source_uses_cgi_bin_token() {
    let fx = Fixture::new(TokenSource::Classic).await;
    Mock::given(path("/cgi-bin/stable_token"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&fx.wechat)
        .await;
    let store = fx.store().await;
    assert_eq!(store.get(fx.name()).await.unwrap().expose(), "T1");
    assert_eq!(fx.calls(), 1);
    let stored: (Option<String>,) =
        sqlx::query_as("SELECT source FROM access_tokens WHERE app = $1")
            .bind(fx.name().as_str())
            .fetch_one(&fx.db.pool)
            .await
            .unwrap();
    assert_eq!(stored.0.as_deref(), Some("classic"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_refresh_is_never_sent_true() {
    let fx = Fixture::new(TokenSource::Stable).await;
    let stores = fx.stores(2).await;
    let app = fx.name().clone();
    for store in &stores {
        store.get(&app).await.unwrap();
    }
    for round in 1..=3 {
        let bad = AccessToken::new(format!("T{round}"));
        on_every_store(&stores, 5, |s| {
            let (app, bad) = (app.clone(), bad.clone());
            async move { s.invalidate(&app, &bad).await }
        })
        .await;
    }
    stores[0]
        .with_token(&app, |_| async { Err::<(), _>(api_error(42001)) })
        .await
        .unwrap_err();

    assert_eq!(fx.calls(), 5);
    let requests = fx.wechat.received_requests().await.unwrap();
    assert_eq!(requests.len(), 5);
    for request in requests {
        let body: serde_json::Value = request.body_json().unwrap();
        assert_eq!(body["force_refresh"], json!(false), "{body}");
    }
    // The force_refresh=true mock's expect(0) is checked again when the server drops.
}

#[tokio::test]
async fn a_failed_refresh_releases_the_lease_so_the_next_call_refreshes_at_once() {
    let fx = Fixture::answering(
        TokenSource::Stable,
        Arc::new(|n| {
            if n == 1 {
                wechat_error(-1)
            } else {
                token_answer(n, 7200)
            }
        }),
    )
    .await;
    let (a, b) = (fx.store().await, fx.store().await);
    let app = fx.name();

    let err = a.get(app).await.unwrap_err();
    assert_eq!(err.class(), ErrClass::Transient, "{err}");
    assert_eq!(fx.row().await, (None, 0, false), "no lease is left behind");

    // Another process, then the same one, get a token without waiting for a lease to run out.
    let started = Instant::now();
    assert_eq!(b.get(app).await.unwrap().expose(), "T2");
    assert_eq!(a.get(app).await.unwrap().expose(), "T2");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fx.calls(), 2);
}

#[tokio::test]
async fn with_token_retries_once_with_the_new_token_after_40001() {
    let fx = Fixture::new(TokenSource::Stable).await;
    let store = fx.store().await;
    let seen = Arc::new(Mutex::new(Vec::new()));

    let result = store
        .with_token(fx.name(), |token| {
            let seen = seen.clone();
            async move {
                let first = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(token.expose().to_owned());
                    seen.len() == 1
                };
                if first { Err(api_error(40001)) } else { Ok(42) }
            }
        })
        .await;

    assert_eq!(result.unwrap(), 42);
    assert_eq!(*seen.lock().unwrap(), ["T1", "T2"]);
    assert_eq!(fx.calls(), 2);
}

#[tokio::test]
async fn with_token_retries_only_once_when_the_new_token_is_refused_too() {
    let fx = Fixture::new(TokenSource::Stable).await;
    let store = fx.store().await;
    let attempts = Arc::new(AtomicUsize::new(0));

    let err = store
        .with_token(fx.name(), |_| {
            attempts.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(api_error(40001)) }
        })
        .await
        .unwrap_err();

    assert_eq!(err.class(), ErrClass::TokenInvalid);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(fx.calls(), 2, "one refresh");
}

#[tokio::test]
async fn with_token_does_not_retry_other_errors() {
    let fx = Fixture::new(TokenSource::Stable).await;
    let store = fx.store().await;
    for errcode in [45009, -1, 43004] {
        let attempts = AtomicUsize::new(0);
        let err = store
            .with_token(fx.name(), |_| {
                attempts.fetch_add(1, Ordering::SeqCst);
                async move { Err::<(), _>(api_error(errcode)) }
            })
            .await
            .unwrap_err();
        assert_eq!(err.class(), wxnotify_core::wechat::classify(errcode));
        assert_eq!(attempts.load(Ordering::SeqCst), 1, "{errcode}");
    }
    assert_eq!(fx.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_waiting_on_a_failing_refresh_share_its_error_instead_of_each_asking_wechat() {
    let fx = Fixture::answering(
        TokenSource::Stable,
        Arc::new(|_| wechat_error(-1).set_delay(Duration::from_millis(300))),
    )
    .await;
    let stores = fx.stores(3).await;
    let app = fx.name().clone();

    let mut tasks = JoinSet::new();
    for store in &stores {
        for _ in 0..20 {
            let (store, app) = (store.clone(), app.clone());
            tasks.spawn(async move { store.get(&app).await });
        }
    }
    while let Some(done) = tasks.join_next().await {
        let err = done.unwrap().unwrap_err();
        assert_eq!(err.class(), ErrClass::Transient, "{err}");
    }

    // At most one attempt per process (each takes the lease in turn), not one per caller.
    let calls = fx.calls();
    assert!((1..=3).contains(&calls), "{calls} calls for 60 callers");
    assert!(!fx.row().await.2, "no lease is left behind");
    // A caller arriving after the failure tries again.
    stores[0].get(&app).await.unwrap_err();
    assert_eq!(fx.calls(), calls + 1);
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_stored_token_while_it_is_still_valid() {
    let fx = Fixture::answering(
        TokenSource::Stable,
        Arc::new(|n| {
            if n == 1 {
                token_answer(n, 7200)
            } else {
                wechat_error(-1)
            }
        }),
    )
    .await;
    let app = fx.name();
    assert_eq!(fx.store().await.get(app).await.unwrap().expose(), "T1");

    // T1 is due for refresh (two minutes left) but WeChat fails: T1 is still good.
    fx.age_stored_token(7200 - 120).await;
    let store = fx.store().await;
    assert_eq!(store.get(app).await.unwrap().expose(), "T1");
    assert_eq!(fx.calls(), 2);
    // The next send does not ask WeChat again at once.
    assert_eq!(store.get(app).await.unwrap().expose(), "T1");
    assert_eq!(fx.calls(), 2);
    assert_eq!(fx.row().await, (Some("T1".into()), 1, false));

    // Once T1 has expired, the failure is the answer.
    fx.age_stored_token(200).await;
    let err = fx.store().await.get(app).await.unwrap_err();
    assert_eq!(err.class(), ErrClass::Transient);
    assert_eq!(fx.calls(), 3);
}

#[tokio::test]
async fn an_invalidated_token_is_not_kept_when_the_refresh_fails() {
    let fx = Fixture::answering(
        TokenSource::Stable,
        Arc::new(|n| {
            if n == 1 {
                token_answer(n, 7200)
            } else {
                wechat_error(45009)
            }
        }),
    )
    .await;
    let store = fx.store().await;
    let app = fx.name();
    let t1 = store.get(app).await.unwrap();

    let err = store.invalidate(app, &t1).await.unwrap_err();

    assert_eq!(err.class(), ErrClass::QuotaExhausted, "{err}");
    assert_eq!(fx.calls(), 2);
}

/// A refresher whose lease lapsed and was taken over while it waited for WeChat does not
/// overwrite the new holder's token: the write is fenced on the lease holder.
#[tokio::test]
async fn a_refresh_whose_lease_was_taken_over_does_not_overwrite_the_token() {
    let fx = Fixture::answering(
        TokenSource::Stable,
        Arc::new(|n| token_answer(n, 7200).set_delay(Duration::from_millis(1500))),
    )
    .await;
    let store = fx.store().await;
    let app = fx.name().clone();
    let refresh = tokio::spawn(async move { store.get(&app).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    let leased = || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT refresh_holder IS NOT NULL FROM access_tokens WHERE app = $1",
        )
        .bind(fx.name().as_str())
        .fetch_optional(&fx.db.pool)
        .await
        .unwrap()
        .unwrap_or(false)
    };
    while !leased().await {
        assert!(
            Instant::now() < deadline,
            "the refresh never took the lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another process takes the lease over (as if ours had lapsed) and stores its token.
    sqlx::query(
        "UPDATE access_tokens SET refresh_holder = gen_random_uuid(),
             refresh_lease_until = now() + interval '1 minute',
             token = 'NEWER', fetched_at = now(), expires_at = now() + interval '2 hours'
         WHERE app = $1",
    )
    .bind(fx.name().as_str())
    .execute(&fx.db.pool)
    .await
    .unwrap();
    let got = refresh.await.unwrap().unwrap();
    assert_eq!(
        fx.row().await.0.as_deref(),
        Some("NEWER"),
        "the new holder's token stays"
    );
    assert_eq!(got.expose(), "NEWER", "the fresh stored token is used");
}
