//! The world of the follower sync and `serve` tests: a fresh database, the fake WeChat on port
//! 0, the default app configured for it (with a callback token and an EncodingAESKey), a client
//! and a token store; `serve` itself on port 0 when a test asks for it.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use url::Url;
use wxnotify_api::{AppState, EdgeOptions, health, router};
use wxnotify_core::config::Settings;
use wxnotify_core::domain::AppName;
use wxnotify_core::wechat::client::ClientOptions;
use wxnotify_core::wechat::{TokenStore, WechatClient};
use wxnotify_sandbox::mock_wechat::{self, MockConfig, MockWechat, PushMode};
use wxnotify_services::followers::{Progress, SyncError, SyncOptions, SyncReport};

use crate::support::TestDb;

/// The callback Token of the test app: the official handshake vector's.
pub const CALLBACK_TOKEN: &str = "AAAAA";
/// The EncodingAESKey of the test app (wechatpy's test key).
pub const AES_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";

/// One test's world.
pub struct World {
    pub db: TestDb,
    pub mock: MockWechat,
    pub settings: Settings,
    pub client: WechatClient,
    pub tokens: TokenStore,
    pub app: AppName,
}

impl World {
    /// A fresh world with the fake WeChat seeded by `cfg`.
    pub async fn new(cfg: MockConfig) -> World {
        Self::with_vars(cfg, &[]).await
    }

    /// A fresh world whose settings also read `extra` (which may override the defaults).
    pub async fn with_vars(cfg: MockConfig, extra: &[(&'static str, &str)]) -> World {
        let db = TestDb::new().await;
        let mock = MockWechat::start(cfg).await.expect("fake WeChat starts");
        let mut vars: HashMap<&str, String> = HashMap::from([
            ("DATABASE_URL", db.url()),
            ("WECHAT_API_BASE", mock.base_url().to_string()),
            ("WXNOTIFY_OA_APPID", mock_wechat::MOCK_OA_APPID.into()),
            ("WXNOTIFY_OA_SECRET", mock_wechat::MOCK_OA_SECRET.into()),
            ("WXNOTIFY_MP_APPID", mock_wechat::MOCK_MP_APPID.into()),
            ("WXNOTIFY_MP_SECRET", mock_wechat::MOCK_MP_SECRET.into()),
            ("WXNOTIFY_CALLBACK_TOKEN", CALLBACK_TOKEN.into()),
            ("WXNOTIFY_ENCODING_AES_KEY", AES_KEY.into()),
        ]);
        vars.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let settings = Settings::from_lookup(|k| vars.get(k).cloned()).expect("test settings");
        wxnotify_core::db::register_apps(&db.pool, &settings.apps)
            .await
            .unwrap();
        let client = WechatClient::new(mock.base_url(), &ClientOptions::default()).unwrap();
        let tokens = TokenStore::new(db.pool.clone(), client.clone(), &settings.apps);
        World {
            db,
            mock,
            settings,
            client,
            tokens,
            app: AppName::default_app(),
        }
    }

    /// Options that retry fast (tests do not wait for real backoff).
    pub fn fast_options() -> SyncOptions {
        SyncOptions {
            calls_per_second: std::num::NonZeroU32::new(10_000).unwrap(),
            retry_min_delay: Duration::from_millis(5),
            max_retries: 4,
            ..SyncOptions::default()
        }
    }

    /// Runs one sync of the default app.
    pub async fn sync(&self, opts: &SyncOptions) -> Result<SyncReport, SyncError> {
        wxnotify_services::followers::sync_followers(
            &self.db.pool,
            &self.client,
            &self.tokens,
            &self.app,
            opts,
            &Progress::hidden(),
        )
        .await
    }

    /// Serves the API on port 0; returns its base URL and state. Plaintext pushes are allowed
    /// (WeChat's compatible mode), since the test app has an EncodingAESKey and the tests push
    /// in both modes.
    pub async fn serve(&self) -> (Url, AppState) {
        self.serve_with(EdgeOptions {
            callback_allow_plaintext: true,
            ..EdgeOptions::default()
        })
        .await
    }

    /// Serves the API on port 0 with `edge`; returns its base URL and state.
    pub async fn serve_with(&self, edge: EdgeOptions) -> (Url, AppState) {
        let state = AppState::with_edge(
            self.db.pool.clone(),
            self.client.clone(),
            self.tokens.clone(),
            &self.settings.apps,
            health::metrics_handle(),
            edge,
        )
        .expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (Url::parse(&format!("http://{addr}/")).unwrap(), state)
    }

    /// A count from SQL.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

/// Plaintext pushes signed with the test token.
pub fn plain() -> PushMode {
    PushMode::Plain {
        token: CALLBACK_TOKEN.into(),
    }
}

/// Safe-mode pushes with the test token and key.
pub fn safe() -> PushMode {
    PushMode::Safe {
        token: CALLBACK_TOKEN.into(),
        encoding_aes_key: AES_KEY.into(),
    }
}

/// Polls `check` every 10 ms until it is true; panics after 10 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How the fake's persons `0..n` split: (following, following with unionid).
pub fn expected_followers(cfg: &MockConfig) -> (u64, u64) {
    let kth = |i: u64, k: u64| k != 0 && (i + 1).is_multiple_of(k);
    let following: Vec<u64> = (0..cfg.followers)
        .filter(|i| !kth(*i, cfg.unsubscribed_every))
        .collect();
    let with_unionid = following
        .iter()
        .filter(|i| mock_wechat::unionid(**i, cfg).is_some())
        .count();
    (following.len() as u64, with_unionid as u64)
}
