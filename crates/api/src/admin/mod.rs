//! What operators use: the JSON admin API at `/admin/api/...` ([`api`], [`campaigns`]) and the
//! ops console at `/admin` ([`console`]), all behind [`auth`].
//!
//! - [`auth`]: tokens, roles and the extractors other admin routes reuse;
//! - [`users`]: named admins and their personal tokens (`wxnotify admin-user`);
//! - [`campaigns`]: the campaign API (`/admin/api/campaigns`), described by
//!   [`campaigns_openapi`];
//! - [`actions`]: replay and purge (by ids or filter, dry run), audited;
//! - [`store`]: deliveries, apps, workers, overview figures, the audit trail;
//! - [`queues`]: queue depths by passive declare;
//! - [`retention`]: dead letters older than N days purged periodically.
//!
//! Settings: `WXNOTIFY_ADMIN_TOKEN` (role admin), `WXNOTIFY_VIEWER_TOKEN` (role viewer),
//! `WXNOTIFY_DLQ_RETENTION_DAYS` (off when unset). With no environment token and no admin user
//! at start, the surface is off (404). `serve --admin-listen` puts it on an address of its own.

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
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use secrecy::SecretString;
use sqlx::PgPool;

use crate::failures::{FailureLimiter, FailureLimits, Scope};
use auth::{AdminAuth, EnvTokens};
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
    /// The header a trusted reverse proxy names the client in (`--client-ip-header`), for the
    /// limit on failed logins and bearer tries.
    pub client_ip_header: Option<axum::http::HeaderName>,
    /// Whether admin users existed at start: with no environment token, the surface is on only
    /// then.
    pub admin_users_at_start: bool,
    /// Failed tries allowed per client address and token prefix (default
    /// [`crate::failures::ADMIN_FAILURES_PER_MINUTE`] a minute).
    pub failure_limits: Option<FailureLimits>,
}

impl AdminOptions {
    /// The admin options `settings` hold.
    pub fn from_settings(settings: &Settings) -> Self {
        AdminOptions {
            viewer_token: settings.viewer_token.clone(),
            retention_days: settings.dlq_retention_days,
            ..AdminOptions::default()
        }
    }
}

struct Inner {
    pool: PgPool,
    auth: Arc<AdminAuth>,
    settings: Settings,
    queues: QueueProbe,
    options: AdminOptions,
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
        let failures = FailureLimiter::new(
            Scope::Admin,
            options
                .failure_limits
                .unwrap_or_else(|| FailureLimits::default_for(Scope::Admin)),
            options.client_ip_header.clone(),
        );
        let auth = AdminAuth::new(
            pool.clone(),
            EnvTokens::new(settings.admin_token.as_ref(), options.viewer_token.as_ref()),
            options.admin_users_at_start,
            Arc::new(failures),
        );
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

    /// The token check, shareable with other admin routes (campaigns).
    pub fn auth_handle(&self) -> Arc<AdminAuth> {
        self.inner.auth.clone()
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
        .route(
            "/admin/openapi.json",
            axum::routing::get(full_openapi).layer(axum::middleware::map_response(private_answer)),
        )
        .merge(crate::admin::console::router())
        .with_state(state)
}

/// `GET /admin/openapi.json`: the whole document, admin API included, for any role.
async fn full_openapi(_who: auth::Principal) -> axum::response::Response {
    use axum::response::IntoResponse;
    crate::openapi::serve_full_openapi().await.into_response()
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

/// What `serve` runs for the admin surface: its routes (the admin API, the campaign API, the
/// console and `/admin/openapi.json`) and the retention task when set. Empty (every admin path
/// 404) with no environment token and no admin user.
pub async fn start(
    pool: PgPool,
    settings: &Settings,
    client_ip_header: Option<axum::http::HeaderName>,
) -> anyhow::Result<Router> {
    let options = AdminOptions {
        client_ip_header,
        admin_users_at_start: users::any(&pool).await?,
        ..AdminOptions::from_settings(settings)
    };
    let state = AdminState::new(pool.clone(), settings, options.clone());
    if let Some(days) = options.retention_days {
        tokio::spawn(retention::run(pool.clone(), days));
    }
    if !state.auth().enabled() {
        tracing::info!(
            "admin surface off: no WXNOTIFY_ADMIN_TOKEN, WXNOTIFY_VIEWER_TOKEN or admin user (`wxnotify admin-user add`)"
        );
        return Ok(Router::new());
    }
    tracing::info!("admin API at /admin/api and the ops console at /admin");
    let campaigns = campaigns::router_with(pool, settings, state.auth_handle());
    Ok(router(state).merge(campaigns))
}
