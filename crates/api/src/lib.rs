//! # wxnotify-api
//!
//! The HTTP API of `wxnotify serve` (axum), by audience:
//!
//! - [`edge`]: what WeChat and the Mini Program call: `POST /v1/miniprogram/login` and the OA's
//!   pushes on `GET|POST /wechat/callback[/{app}]`, with their replay protection and limits;
//! - [`producer`]: what application services call: the producer API
//!   (`POST /v1/notifications[/batch]`, `GET /v1/notifications/{id}`), its keys, its link to
//!   RabbitMQ and the signed outcome webhooks;
//! - [`admin`]: what operators use: the admin API at `/admin/api/...` (dead letters, templates,
//!   campaigns) and the ops console at `/admin`.
//!
//! Beside them: [`failures`] (failed authentications limited across processes), [`server`]
//! (timeouts, connection limit, graceful shutdown), [`access`] (request ids, the access log and
//! the request metrics), [`health`] (`/livez`, `/readyz`, `/healthz`, `/metrics`), [`openapi`] (`GET /openapi.json`) and [`error`] (the
//! edge's error type). With `--metrics-listen`, `/metrics` moves to that address, and with
//! `--admin-listen` the admin surface moves to its own (keep both private; expose only
//! `--listen`).
//!
//! [`router`] builds the whole API on an [`AppState`], so tests serve it on port 0; [`serve`]
//! runs it with its background work. This crate depends on `wxnotify-services` and
//! `wxnotify-core`, never on the worker.

pub mod access;
pub mod admin;
pub mod bodies;
pub mod edge;
pub mod error;
pub mod failures;
pub mod health;
pub mod openapi;
pub mod producer;
pub mod server;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use tokio_util::task::TaskTracker;

use edge::login::{LoginFailure, LoginResponse};
use edge::login_codes::LoginCodes;
use edge::login_limits::{LoginLimiter, LoginLimits};
use error::HttpError;
pub use server::ServerLimits;
use wxnotify_core::config::{AppConfig, ConfigError};
use wxnotify_core::domain::AppName;
use wxnotify_core::wechat::crypto::{AesKey, AesKeys};
use wxnotify_core::wechat::{TokenStore, WechatClient};

/// The largest request body accepted (WeChat's pushes are a few KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

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
            callback_max_skew: edge::replay::DEFAULT_MAX_SKEW,
            callback_allow_plaintext: false,
            login: LoginLimits::default(),
        }
    }
}

/// One configured app, with its EncodingAESKeys decoded once.
#[derive(Debug)]
pub struct AppEntry {
    /// The configuration.
    pub config: AppConfig,
    /// The safe-mode keys (current, and previous during a key change), when an EncodingAESKey
    /// is configured.
    pub aes_keys: Option<AesKeys>,
    /// The Mini Program's safe-mode key, when its EncodingAESKey is configured.
    pub mp_aes_keys: Option<AesKeys>,
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
    producer: Option<producer::link::ProducerApi>,
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
            let decode = |which: &str, key: &Option<SecretString>| {
                key.as_ref()
                    .map(|k| AesKey::from_encoding_aes_key(k.expose_secret()))
                    .transpose()
                    .map_err(|e| ConfigError::Invalid {
                        name: format!("the {which} EncodingAESKey of app {}", app.name),
                        reason: e.to_string(),
                        hint: "Copy the 43-character EncodingAESKey from the OA console's server configuration.",
                    })
            };
            let current = decode("current", &app.encoding_aes_key)?;
            let previous = decode("previous", &app.encoding_aes_key_previous)?;
            let mp = decode("Mini Program", &app.mp_encoding_aes_key)?;
            let entry = AppEntry {
                config: app.clone(),
                aes_keys: current.map(|current| AesKeys::new(current, previous)),
                mp_aes_keys: mp.map(|key| AesKeys::new(key, None)),
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
    pub fn with_producer(mut self, api: producer::link::ProducerApi) -> Self {
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
fn with_producer(api: Router, producer: Option<producer::link::ProducerApi>) -> Router {
    match producer {
        Some(producer) => api.merge(producer::notifications::router(producer)),
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

/// The private address's API: `/metrics`, `/livez`, `/readyz`, `/healthz`.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/livez", get(health::livez))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .with_state(state)
}

/// The admin address's API (`--admin-listen`): the admin surface, the whole `/openapi.json`,
/// `/livez`, `/readyz` and `/healthz`.
pub fn admin_router(state: AppState, admin_surface: Router) -> Router {
    Router::new()
        .route("/livez", get(health::livez))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi::serve_full_openapi))
        .with_state(state)
        .merge(admin_surface)
}

/// The routes of the public address (add new public endpoints here).
fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/livez", get(health::livez))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/v1/miniprogram/login", post(edge::login::login))
        .route(
            "/v1/miniprogram/subscriptions",
            post(edge::subscriptions::report),
        )
        .route(
            "/wechat/mp-callback",
            get(edge::mp_callback::verify_default).post(edge::mp_callback::push_default),
        )
        .route(
            "/wechat/mp-callback/{app}",
            get(edge::mp_callback::verify).post(edge::mp_callback::push),
        )
        .route(
            "/wechat/callback",
            get(edge::callback::verify_default).post(edge::callback::push_default),
        )
        .route(
            "/wechat/callback/{app}",
            get(edge::callback::verify).post(edge::callback::push),
        )
        .route("/openapi.json", get(openapi::serve_openapi))
}

/// The listeners and policies of [`serve`].
pub struct ServeOptions {
    /// The public address (login, callback, producer API, admin).
    pub listener: tokio::net::TcpListener,
    /// The private address for `/metrics`, `/healthz`, `/readyz`; when given, `/metrics` is
    /// not served on `listener`.
    pub ops_listener: Option<tokio::net::TcpListener>,
    /// The private address of the admin surface (`/admin`, `/admin/api/...`, the whole
    /// `/openapi.json`); when given, the admin surface is not served on `listener`.
    pub admin_listener: Option<tokio::net::TcpListener>,
    /// The public edge's policies.
    pub edge: EdgeOptions,
    /// Timeouts and connection limits.
    pub limits: ServerLimits,
    /// The producer API's link to RabbitMQ and its per-key request limit.
    pub producer: producer::link::ProducerOptions,
}

/// Serves the whole HTTP API for the apps of `settings` on `pool`, calling WeChat through
/// `wechat`, until `shutdown` resolves; in-flight requests and background work (webhooks,
/// receipts) finish first.
pub async fn serve(
    settings: &wxnotify_core::config::Settings,
    pool: sqlx::PgPool,
    wechat: wxnotify_core::wechat::Wechat,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let producer = producer::link::ProducerApi::new(
        pool.clone(),
        settings.amqp_url.clone(),
        wxnotify_core::queue::Topology::new(settings.queue_prefix.clone()),
        &settings.apps,
        options.producer.clone(),
    );
    let forget_idle_keys = {
        let producer = producer.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                producer.forget_idle_keys();
            }
        })
    };
    let state = AppState::with_edge(
        pool.clone(),
        wechat.client,
        wechat.tokens,
        &settings.apps,
        health::metrics_handle(),
        options.edge,
    )?
    .with_producer(producer);
    let webhooks_stop = tokio_util::sync::CancellationToken::new();
    let webhooks = tokio::spawn(producer::webhooks::run_dispatcher(
        pool.clone(),
        producer::webhooks::WebhookOptions::default(),
        settings.secrets.clone(),
        webhooks_stop.clone(),
    ));
    let limits = options.limits;
    let listener = options.listener;
    tracing::info!(listen = %listener.local_addr()?, "serving the HTTP API");
    let stop = tokio_util::sync::CancellationToken::new();
    let housekeeping = tokio::spawn(housekeeping(state.clone()));
    let separate_ops = options.ops_listener.is_some();
    let ops = match options.ops_listener {
        Some(ops_listener) => {
            tracing::info!(listen = %ops_listener.local_addr()?, "serving /metrics, /healthz, /readyz");
            let (router, limits, stop) = (ops_router(state.clone()), limits.clone(), stop.clone());
            Some(tokio::spawn(async move {
                server::serve(ops_listener, router, &limits, stop.cancelled_owned()).await
            }))
        }
        None => None,
    };
    let public = if separate_ops {
        public_router(state.clone())
    } else {
        router(state.clone())
    };
    let client_ip_header = state.edge().login.client_ip_header.clone();
    let admin_surface = admin::start(pool.clone(), settings, client_ip_header).await?;
    let (public, admin) = match options.admin_listener {
        Some(admin_listener) => {
            tracing::info!(listen = %admin_listener.local_addr()?, "serving the admin surface on its own address");
            let router = admin_router(state.clone(), admin_surface);
            let (limits, stop) = (limits.clone(), stop.clone());
            let task = tokio::spawn(async move {
                server::serve(admin_listener, router, &limits, stop.cancelled_owned()).await
            });
            (public, Some(task))
        }
        None => (public.merge(admin_surface), None),
    };
    let signal = {
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    };
    server::serve(listener, public, &limits, signal).await?;
    if let Some(ops) = ops {
        ops.await??;
    }
    if let Some(admin) = admin {
        admin.await??;
    }
    housekeeping.abort();
    forget_idle_keys.abort();
    webhooks_stop.cancel();
    let _ = webhooks.await;
    state.background().close();
    if tokio::time::timeout(Duration::from_secs(10), state.background().wait())
        .await
        .is_err()
    {
        tracing::warn!("background work still running after 10 s; exiting anyway");
    }
    Ok(())
}

/// Deletes old callback event keys, nonces, expired Mini Program sessions, old subscribe
/// acceptances and failed-authentication counts every ten minutes; forgets idle login clients
/// and reads the gauges of shared state (webhook backlog, live workers) every ten seconds.
async fn housekeeping(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_secs(10));
    let mut ticks: u64 = 0;
    loop {
        every.tick().await;
        state.login_limiter().forget_idle();
        producer::webhooks::outbox::export_backlog(state.pool()).await;
        match wxnotify_services::quota::status::live_workers(state.pool()).await {
            Ok(live) => metrics::gauge!("wxnotify_workers_live").set(live.len() as f64),
            Err(e) => tracing::warn!(error = %e, "counting the live workers failed"),
        }
        if ticks.is_multiple_of(60) {
            match edge::store::prune_events(state.pool()).await {
                Ok(n) => tracing::debug!(pruned = n, "old callback event keys deleted"),
                Err(e) => tracing::warn!(error = %e, "pruning callback event keys failed"),
            }
            match edge::replay::prune(state.pool(), state.edge().callback_max_skew).await {
                Ok(n) => tracing::debug!(pruned = n, "old callback nonces deleted"),
                Err(e) => tracing::warn!(error = %e, "pruning callback nonces failed"),
            }
            match edge::mp_sessions::prune(state.pool()).await {
                Ok(n) => tracing::debug!(pruned = n, "expired Mini Program sessions deleted"),
                Err(e) => tracing::warn!(error = %e, "pruning Mini Program sessions failed"),
            }
            match wxnotify_services::subscriptions::prune_acceptances(state.pool()).await {
                Ok(n) => tracing::debug!(pruned = n, "old subscribe acceptances deleted"),
                Err(e) => tracing::warn!(error = %e, "pruning subscribe acceptances failed"),
            }
            match failures::prune(state.pool()).await {
                Ok(n) => tracing::debug!(pruned = n, "old failed-authentication counts deleted"),
                Err(e) => tracing::warn!(error = %e, "pruning failed-authentication counts failed"),
            }
        }
        ticks = ticks.wrapping_add(1);
    }
}
