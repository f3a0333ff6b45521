//! The HTTP API of `wxnotify serve` (axum).
//!
//! - [`login`]: `POST /v1/miniprogram/login`, with [`login_codes`] making each code single use;
//! - [`callback`]: `GET|POST /wechat/callback[/{app}]`, the OA server URL (events);
//! - [`health`]: `/healthz`, `/readyz`, `/metrics`;
//! - [`admin`]: the admin API at `/admin/api/...` and [`console`], the ops console at `/admin`;
//! - [`notifications`]: the producer API, `POST /v1/notifications[/batch]` and
//!   `GET /v1/notifications/{id}`, with [`api_keys`] (bearer keys per app), [`job_input`]
//!   (422 with JSON pointers), [`notification_store`] (idempotency, status), [`producer`] (the
//!   RabbitMQ link) and [`webhooks`] (signed outcome events); [`openapi`]: `GET /openapi.json`;
//! - [`error`]: the one error type; [`store`]: the SQL of the handlers.
//!
//! The public edge: [`server`] (timeouts, connection limit, graceful shutdown), [`replay`]
//! (the callback's timestamp window and nonce cache), [`login_limits`] (per-client and global
//! login limits). With `--metrics-listen`, `/metrics` moves to that address (keep it private;
//! expose only `--listen`).
//!
//! [`router`] builds the whole API on an [`AppState`], so tests serve it on port 0.

pub mod admin;
pub mod api_error;
pub mod api_keys;
pub mod callback;
pub mod campaigns;
pub mod campaigns_openapi;
pub mod console;
pub mod error;
pub mod health;
pub mod job_input;
pub mod login;
pub mod login_codes;
pub mod login_limits;
pub mod notification_store;
pub mod notifications;
pub mod openapi;
pub mod producer;
pub mod replay;
pub mod server;
pub mod store;
pub mod webhooks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
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
use login_limits::{LoginLimiter, LoginLimits};
use server::{ServerArgs, ServerLimits};

/// The largest request body accepted (WeChat's pushes are a few KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Arguments of `wxnotify serve`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify serve\n  wxnotify serve --listen 0.0.0.0:8080\n  WXNOTIFY_CALLBACK_TOKEN=... WXNOTIFY_ENCODING_AES_KEY=... wxnotify serve\n\nServes POST /v1/miniprogram/login, GET|POST /wechat/callback[/{app}], /healthz, /readyz, /metrics."
)]
pub struct ServeArgs {
    /// Address to listen on (the public one: login and the OA callback).
    #[arg(long, env = "WXNOTIFY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// A second, private address for `/metrics` (and `/healthz`, `/readyz`); when set,
    /// `/metrics` is not served on `--listen`.
    #[arg(long, env = "WXNOTIFY_SERVE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds a callback's `timestamp` may differ from this server's clock.
    #[arg(long, env = "WXNOTIFY_CALLBACK_MAX_SKEW_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(30..=3600))]
    pub callback_max_skew_secs: u64,
    /// Accept plaintext pushes for apps with an EncodingAESKey (WeChat's compatible mode, while
    /// switching to safe mode); otherwise they are refused.
    #[arg(long, env = "WXNOTIFY_CALLBACK_ALLOW_PLAINTEXT")]
    pub callback_allow_plaintext: bool,
    /// Logins per minute from one client address (an IPv6 /64).
    #[arg(long, env = "WXNOTIFY_LOGIN_PER_CLIENT_PER_MINUTE", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub login_per_client_per_minute: u32,
    /// Logins per minute from all clients (keep it below WeChat's jscode2session quota).
    #[arg(long, env = "WXNOTIFY_LOGIN_PER_MINUTE", default_value_t = 3000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub login_per_minute: u32,
    /// Producer API requests per second per API key (429 with Retry-After past it); 0: no limit.
    #[arg(long, env = "WXNOTIFY_API_KEY_RATE", default_value_t = producer::DEFAULT_KEY_REQUESTS_PER_SECOND)]
    pub api_key_rate: u32,
    /// Header in which a trusted reverse proxy puts the client's address (e.g.
    /// X-Forwarded-For; its last value is used). Only set it behind such a proxy.
    #[arg(long, env = "WXNOTIFY_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<axum::http::HeaderName>,
    /// Timeouts and the connection limit.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The policies of the public edge shared by the handlers.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// How far a callback's `timestamp` may be from this server's clock.
    pub callback_max_skew: Duration,
    /// Accept plaintext pushes for apps in safe mode (compatible mode).
    pub callback_allow_plaintext: bool,
    /// The login limits.
    pub login: LoginLimits,
}

impl Default for EdgeOptions {
    fn default() -> Self {
        Self {
            callback_max_skew: replay::DEFAULT_MAX_SKEW,
            callback_allow_plaintext: false,
            login: LoginLimits::default(),
        }
    }
}

impl From<&ServeArgs> for EdgeOptions {
    fn from(a: &ServeArgs) -> Self {
        let nz = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self {
            callback_max_skew: Duration::from_secs(a.callback_max_skew_secs),
            callback_allow_plaintext: a.callback_allow_plaintext,
            login: LoginLimits {
                per_client_per_minute: nz(a.login_per_client_per_minute),
                global_per_minute: nz(a.login_per_minute),
                client_ip_header: a.client_ip_header.clone(),
            },
        }
    }
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
    login_limiter: LoginLimiter,
    edge: EdgeOptions,
    metrics: PrometheusHandle,
    /// Work that outlives a request (user/info after a subscribe); waited for at shutdown.
    background: TaskTracker,
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
    /// The producer API (`/v1/notifications`); its routes are served only when set.
    producer: Option<producer::ProducerApi>,
}

impl AppState {
    /// The state for `apps` with the default [`EdgeOptions`]. Fails when an EncodingAESKey is
    /// not a valid key.
    pub fn new(
        pool: PgPool,
        client: WechatClient,
        tokens: TokenStore,
        apps: &[AppConfig],
        metrics: PrometheusHandle,
    ) -> Result<Self, ConfigError> {
        Self::with_edge(pool, client, tokens, apps, metrics, EdgeOptions::default())
    }

    /// The state for `apps` with the edge policies `edge`.
    pub fn with_edge(
        pool: PgPool,
        client: WechatClient,
        tokens: TokenStore,
        apps: &[AppConfig],
        metrics: PrometheusHandle,
        edge: EdgeOptions,
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
                login_limiter: LoginLimiter::new(edge.login.clone()),
                edge,
                metrics,
                background: TaskTracker::new(),
            }),
            producer: None,
        })
    }

    /// Serves the producer API (`/v1/notifications…`) with `api` too.
    pub fn with_producer(mut self, api: producer::ProducerApi) -> Self {
        self.producer = Some(api);
        self
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

    /// The login limits' buckets.
    pub fn login_limiter(&self) -> &LoginLimiter {
        &self.inner.login_limiter
    }

    /// The edge policies.
    pub fn edge(&self) -> &EdgeOptions {
        &self.inner.edge
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

/// The whole API on one address (what `serve` runs without `--metrics-listen`, and tests).
pub fn router(state: AppState) -> Router {
    let producer = state.producer.clone();
    with_producer(
        public_routes()
            .route("/metrics", get(health::metrics))
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(state),
        producer,
    )
}

/// `api` and, when a producer is configured, the producer API (with its own body limits: a
/// batch is up to 8 MiB).
fn with_producer(api: Router, producer: Option<producer::ProducerApi>) -> Router {
    match producer {
        Some(producer) => api.merge(notifications::router(producer)),
        None => api,
    }
}

/// The public address's API when metrics have their own address: all but `/metrics`.
pub fn public_router(state: AppState) -> Router {
    let producer = state.producer.clone();
    with_producer(
        public_routes()
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(state),
        producer,
    )
}

/// The private address's API: `/metrics`, `/healthz`, `/readyz`.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .with_state(state)
}

/// The routes of the public address (add new public endpoints here).
fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/v1/miniprogram/login", post(login::login))
        .route(
            "/wechat/callback",
            get(callback::verify_default).post(callback::push_default),
        )
        .route(
            "/wechat/callback/{app}",
            get(callback::verify).post(callback::push),
        )
        .route("/openapi.json", get(openapi::serve_openapi))
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
    let producer = producer::ProducerApi::new(
        pool.clone(),
        settings.amqp_url.clone(),
        crate::queue::Topology::new(settings.queue_prefix.clone()),
        &settings.apps,
        producer::ProducerOptions {
            key_requests_per_second: NonZeroU32::new(args.api_key_rate),
            ..producer::ProducerOptions::default()
        },
    );
    {
        let producer = producer.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                producer.forget_idle_keys();
            }
        });
    }
    let edge = EdgeOptions::from(&args);
    let state = AppState::with_edge(
        pool.clone(),
        client,
        tokens,
        &settings.apps,
        health::metrics_handle(),
        edge,
    )?
    .with_producer(producer);
    let webhooks_stop = tokio_util::sync::CancellationToken::new();
    let webhooks = tokio::spawn(webhooks::run_dispatcher(
        pool.clone(),
        webhooks::WebhookOptions::default(),
        webhooks_stop.clone(),
    ));
    let limits = ServerLimits::from(&args.server);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "serving the HTTP API");
    let stop = tokio_util::sync::CancellationToken::new();
    let housekeeping = tokio::spawn(housekeeping(state.clone()));
    let ops = match args.metrics_listen {
        Some(addr) => {
            let ops_listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(listen = %ops_listener.local_addr()?, "serving /metrics, /healthz, /readyz");
            let (router, limits, stop) = (ops_router(state.clone()), limits.clone(), stop.clone());
            Some(tokio::spawn(async move {
                server::serve(ops_listener, router, &limits, stop.cancelled_owned()).await
            }))
        }
        None => None,
    };
    let public = if args.metrics_listen.is_some() {
        public_router(state.clone())
    } else {
        router(state.clone())
    }
    .merge(admin::start(pool.clone(), &settings)?);
    let public = match campaigns::router(pool.clone(), &settings) {
        Some(campaigns) => public.merge(campaigns),
        None => public,
    };
    let signal = {
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            stop.cancel();
        }
    };
    server::serve(listener, public, &limits, signal).await?;
    if let Some(ops) = ops {
        ops.await??;
    }
    housekeeping.abort();
    webhooks_stop.cancel();
    let _ = webhooks.await;
    state.background().close();
    if tokio::time::timeout(Duration::from_secs(10), state.background().wait())
        .await
        .is_err()
    {
        tracing::warn!("background work still running after 10 s; exiting anyway");
    }
    Ok(ExitCode::SUCCESS)
}

/// Deletes old callback event keys and nonces every ten minutes; forgets idle login clients
/// every ten seconds.
async fn housekeeping(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_secs(10));
    let mut ticks: u64 = 0;
    loop {
        every.tick().await;
        state.login_limiter().forget_idle();
        if ticks.is_multiple_of(60) {
            match store::prune_events(state.pool()).await {
                Ok(n) => tracing::debug!(pruned = n, "old callback event keys deleted"),
                Err(e) => tracing::warn!(error = %e, "pruning callback event keys failed"),
            }
            match replay::prune(state.pool(), state.edge().callback_max_skew).await {
                Ok(n) => tracing::debug!(pruned = n, "old callback nonces deleted"),
                Err(e) => tracing::warn!(error = %e, "pruning callback nonces failed"),
            }
        }
        ticks = ticks.wrapping_add(1);
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
