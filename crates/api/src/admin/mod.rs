//! What operators use: the JSON admin API at `/admin/api/...` ([`api`], [`campaigns`]) and the
//! ops console at `/admin` ([`console`]), all behind [`auth`].
//!
//! - [`auth`]: tokens, roles and the extractors other admin routes reuse;
//! - [`campaigns`]: the campaign API (`/admin/api/campaigns`), described by
//!   [`campaigns_openapi`];
//! - [`actions`]: replay and purge (by ids or filter, dry run), audited;
//! - [`store`]: deliveries, apps, workers, overview figures, the audit trail;
//! - [`queues`]: queue depths by passive declare;
//! - [`retention`]: dead letters older than N days purged periodically.
//!
//! Settings: `WXNOTIFY_ADMIN_TOKEN` (role admin), `WXNOTIFY_VIEWER_TOKEN` (role viewer),
//! `WXNOTIFY_DLQ_RETENTION_DAYS` (off when unset). With no token the surface is off (404).

pub mod actions;
pub mod api;
pub mod auth;
pub mod campaign_body;
pub mod campaigns;
pub mod campaigns_openapi;
pub mod console;
pub mod error;
pub mod queues;
pub mod retention;
pub mod store;
pub mod strict;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use secrecy::SecretString;
use sqlx::PgPool;

use auth::AdminAuth;
use queues::QueueProbe;
use wxnotify_core::config::Settings;
use wxnotify_core::queue::Topology;

/// Admin settings beyond [`Settings::admin_token`].
#[derive(Debug, Clone, Default)]
pub struct AdminOptions {
    /// The read-only token ([`Settings::viewer_token`]).
    pub viewer_token: Option<SecretString>,
    /// Purge dead letters older than this many days ([`Settings::dlq_retention_days`]).
    pub retention_days: Option<u32>,
    /// How long a console login lasts (default 12 hours).
    pub session_ttl: Option<Duration>,
}

impl AdminOptions {
    /// The admin options `settings` hold.
    pub fn from_settings(settings: &Settings) -> Self {
        AdminOptions {
            viewer_token: settings.viewer_token.clone(),
            retention_days: settings.dlq_retention_days,
            session_ttl: None,
        }
    }
}

struct Inner {
    pool: PgPool,
    auth: Arc<AdminAuth>,
    settings: Settings,
    queues: QueueProbe,
    options: AdminOptions,
    login_guard: crate::admin::console::login_guard::LoginGuard,
}

/// What the admin API and the console share. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    inner: Arc<Inner>,
}

impl FromRef<AdminState> for Arc<AdminAuth> {
    fn from_ref(state: &AdminState) -> Self {
        state.inner.auth.clone()
    }
}

impl AdminState {
    /// The admin state of `settings` (its admin token, broker, queue prefix) and `options`.
    pub fn new(pool: PgPool, settings: &Settings, options: AdminOptions) -> Self {
        let auth = AdminAuth::new(settings.admin_token.as_ref(), options.viewer_token.as_ref());
        let queues = QueueProbe::new(
            settings.amqp_url.clone(),
            Topology::new(settings.queue_prefix.clone()),
        );
        AdminState {
            inner: Arc::new(Inner {
                pool,
                auth: Arc::new(auth),
                settings: settings.clone(),
                queues,
                options,
                login_guard: Default::default(),
            }),
        }
    }

    /// The Postgres pool.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The tokens.
    pub fn auth(&self) -> &AdminAuth {
        &self.inner.auth
    }

    /// The settings (broker and queue prefix for replays).
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The queue-depth probe.
    pub fn queues(&self) -> &QueueProbe {
        &self.inner.queues
    }

    /// The options.
    pub fn options(&self) -> &AdminOptions {
        &self.inner.options
    }

    /// Failed console logins per client address.
    pub fn login_guard(&self) -> &crate::admin::console::login_guard::LoginGuard {
        &self.inner.login_guard
    }
}

/// The admin API and the console, or an empty router when no token is configured (so every
/// admin path is 404).
pub fn router(state: AdminState) -> Router {
    if !state.auth().enabled() {
        return Router::new();
    }
    Router::new()
        .nest(
            "/admin/api",
            api::router().layer(axum::middleware::map_response(private_answer)),
        )
        .merge(crate::admin::console::router())
        .with_state(state)
}

/// The headers of every admin API answer, refusals included: no cache keeps it
/// (`Cache-Control: no-store`: dead letters hold people's data) and no browser reads it as
/// anything but what it says (`X-Content-Type-Options: nosniff`).
pub async fn private_answer(mut answer: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let headers = answer.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    answer
}

/// What `serve` runs for the admin surface: its routes, and the retention task when set.
pub fn start(pool: PgPool, settings: &Settings) -> Router {
    let options = AdminOptions::from_settings(settings);
    let state = AdminState::new(pool.clone(), settings, options.clone());
    if let Some(days) = options.retention_days {
        tokio::spawn(retention::run(pool, days));
    }
    if state.auth().enabled() {
        tracing::info!("admin API at /admin/api and the ops console at /admin");
    }
    router(state)
}
