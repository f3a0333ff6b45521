//! The HTTP API of `wxnotify serve` (axum).
//!
//! - [`login`]: `POST /v1/miniprogram/login`, with [`login_codes`] making each code single use;
//! - [`callback`]: `GET|POST /wechat/callback[/{app}]`, the OA server URL (events);
//! - [`health`]: `/healthz`, `/readyz`, `/metrics`;
//! - not built yet: `POST /v1/notifications` (jobs over HTTP) and `/admin/...`;
//! - [`error`]: the one error type; [`store`]: the SQL of the handlers.
//!
//! [`router`] builds the whole API on an [`AppState`], so tests serve it on port 0.

pub mod admin_token;
pub mod callback;
pub mod campaigns;
pub mod error;
pub mod health;
pub mod login;
pub mod login_codes;
pub mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio_util::task::TaskTracker;

use crate::config::{AppConfig, ConfigError, Settings};
use crate::domain::AppName;
use crate::wechat::client::ClientOptions;
use crate::wechat::crypto::AesKey;
use crate::wechat::{TokenStore, WechatClient};
use error::HttpError;
use login::{LoginFailure, LoginResponse};
use login_codes::LoginCodes;

/// The largest request body accepted (WeChat's pushes are a few KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Arguments of `wxnotify serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WXNOTIFY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

/// One configured app, with its EncodingAESKey decoded once.
#[derive(Debug)]
pub struct AppEntry {
    /// The configuration.
    pub config: AppConfig,
    /// The safe-mode key, when an EncodingAESKey is configured.
    pub aes_key: Option<AesKey>,
}

struct Inner {
    pool: PgPool,
    client: WechatClient,
    tokens: TokenStore,
    apps: HashMap<AppName, AppEntry>,
    default_app: Option<AppName>,
    logins: LoginCodes<LoginResponse, LoginFailure>,
    metrics: PrometheusHandle,
    /// Work that outlives a request (user/info after a subscribe); waited for at shutdown.
    background: TaskTracker,
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl AppState {
    /// The state for `apps`. Fails when an EncodingAESKey is not a valid key.
    pub fn new(
        pool: PgPool,
        client: WechatClient,
        tokens: TokenStore,
        apps: &[AppConfig],
        metrics: PrometheusHandle,
    ) -> Result<Self, ConfigError> {
        let mut entries = HashMap::new();
        for app in apps {
            let aes_key = app
                .encoding_aes_key
                .as_ref()
                .map(|k| AesKey::from_encoding_aes_key(k.expose_secret()))
                .transpose()
                .map_err(|e| ConfigError::Invalid {
                    name: format!("the EncodingAESKey of app {}", app.name),
                    reason: e.to_string(),
                    hint: "Copy the 43-character EncodingAESKey from the OA console's server configuration.",
                })?;
            let entry = AppEntry {
                config: app.clone(),
                aes_key,
            };
            entries.insert(app.name.clone(), entry);
        }
        let default_app = apps
            .iter()
            .find(|a| a.name == AppName::default_app())
            .or(apps.first())
            .map(|a| a.name.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                client,
                tokens,
                apps: entries,
                default_app,
                logins: LoginCodes::default(),
                metrics,
                background: TaskTracker::new(),
            }),
        })
    }

    /// The Postgres pool.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The WeChat client.
    pub fn client(&self) -> &WechatClient {
        &self.inner.client
    }

    /// The access-token store.
    pub fn tokens(&self) -> &TokenStore {
        &self.inner.tokens
    }

    /// The Prometheus handle.
    pub fn metrics(&self) -> &PrometheusHandle {
        &self.inner.metrics
    }

    /// Background work started by requests; `close()` + `wait()` it at shutdown (and in tests).
    pub fn background(&self) -> &TaskTracker {
        &self.inner.background
    }

    fn logins(&self) -> &LoginCodes<LoginResponse, LoginFailure> {
        &self.inner.logins
    }

    /// The named app (404 if unknown), or the default app (`default`, else the first).
    fn app_or_default(&self, name: Option<&str>) -> Result<AppName, HttpError> {
        match name {
            Some(name) => {
                let app = AppName::parse(name)
                    .ok()
                    .filter(|a| self.inner.apps.contains_key(a));
                app.ok_or_else(|| HttpError::NotFound(format!("unknown app {name:?}")))
            }
            None => self
                .inner
                .default_app
                .clone()
                .ok_or_else(|| HttpError::NotFound("no app is configured".into())),
        }
    }

    fn entry(&self, app: &AppName) -> Result<&AppEntry, HttpError> {
        self.inner
            .apps
            .get(app)
            .ok_or_else(|| HttpError::NotFound(format!("unknown app {app}")))
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/v1/miniprogram/login", post(login::login))
        .route(
            "/wechat/callback",
            get(callback::verify_default).post(callback::push_default),
        )
        .route(
            "/wechat/callback/{app}",
            get(callback::verify).post(callback::push),
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Runs `wxnotify serve` until SIGTERM or Ctrl-C; in-flight requests and background work finish
/// first.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    settings.require_apps()?;
    let pool = crate::db::connect(&settings.database_url, 16).await?;
    crate::db::register_apps(&pool, &settings.apps).await?;
    let client = WechatClient::new(settings.wechat_api_base.clone(), &ClientOptions::default())?;
    let tokens = TokenStore::new(pool.clone(), client.clone(), &settings.apps);
    let state = AppState::new(
        pool.clone(),
        client,
        tokens,
        &settings.apps,
        health::metrics_handle(),
    )?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "serving the HTTP API");
    let pruner = tokio::spawn(prune_events(pool.clone()));
    let mut app = router(state.clone());
    if let Some(campaigns) = campaigns::router(pool.clone(), &settings) {
        app = app.merge(campaigns);
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    pruner.abort();
    state.background().close();
    if tokio::time::timeout(Duration::from_secs(10), state.background().wait())
        .await
        .is_err()
    {
        tracing::warn!("background work still running after 10 s; exiting anyway");
    }
    Ok(ExitCode::SUCCESS)
}

/// Deletes old callback event keys every ten minutes.
async fn prune_events(pool: PgPool) {
    let mut every = tokio::time::interval(Duration::from_secs(600));
    loop {
        every.tick().await;
        match store::prune_events(&pool).await {
            Ok(n) => tracing::debug!(pruned = n, "old callback event keys deleted"),
            Err(e) => tracing::warn!(error = %e, "pruning callback event keys failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
