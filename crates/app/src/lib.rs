//! The composition root: the services a command needs, built in one place from [`Settings`].
//!
//! [`Application::connect`] opens the Postgres pool; the WeChat client and the token store are
//! built from it on demand ([`Application::wechat`]), the RabbitMQ side only by the commands
//! that publish or consume (the producer API, the worker), so `status` or `dlq` never need
//! RabbitMQ to be up.

pub mod process;
mod secrets;

use sqlx::PgPool;

use wxnotify_core::config::Settings;
pub use wxnotify_core::wechat::Wechat;
use wxnotify_core::wechat::client::ClientOptions;
use wxnotify_worker::{Worker, WorkerConfig};

/// The settings and the Postgres pool of one process, and the services built from them.
#[derive(Clone)]
pub struct Application {
    /// The settings it was built from.
    pub settings: Settings,
    /// The Postgres pool.
    pub pool: PgPool,
}

impl Application {
    /// Reads nothing: wraps settings and a pool made elsewhere (tests, the demo's scratch
    /// database).
    pub fn new(settings: Settings, pool: PgPool) -> Self {
        Application { settings, pool }
    }

    /// Opens `connections` Postgres connections to `DATABASE_URL` and registers the
    /// configured apps.
    pub async fn connect(settings: Settings, connections: u32) -> anyhow::Result<Self> {
        let pool = wxnotify_core::db::connect(&settings.database_url, connections).await?;
        Self::ready(settings, pool, false).await
    }

    /// Like [`Application::connect`], after applying the migrations (the commands that own a
    /// schema change: `migrate`, and those that must not run on an older schema).
    pub async fn connect_migrated(settings: Settings, connections: u32) -> anyhow::Result<Self> {
        let pool = wxnotify_core::db::connect(&settings.database_url, connections).await?;
        Self::ready(settings, pool, true).await
    }

    /// The application on `pool`, after applying the migrations when `migrate` says so, with
    /// the configured apps registered.
    async fn ready(settings: Settings, pool: PgPool, migrate: bool) -> anyhow::Result<Self> {
        if migrate {
            wxnotify_core::db::migrate(&pool).await?;
        }
        wxnotify_core::db::register_apps(&pool, &settings.apps).await?;
        secrets::check(&pool, &settings).await?;
        Ok(Application { settings, pool })
    }

    /// The WeChat client (default options) and token store.
    pub fn wechat(&self) -> anyhow::Result<Wechat> {
        self.wechat_with(&ClientOptions::default())
    }

    /// The WeChat client with `options`, and the token store.
    pub fn wechat_with(&self, options: &ClientOptions) -> anyhow::Result<Wechat> {
        Wechat::build(&self.settings, &self.pool, options)
    }

    /// The Postgres pool a worker needs (`connections` of them, each with the worker's session
    /// settings), migrated, with the configured apps registered.
    pub async fn connect_worker(settings: Settings, connections: u32) -> anyhow::Result<Self> {
        let pool = wxnotify_core::db::connect_worker(&settings.database_url, connections).await?;
        Self::ready(settings, pool, true).await
    }

    /// A worker for these settings and pool, its WeChat client built for `config`.
    pub fn worker(&self, config: WorkerConfig) -> anyhow::Result<Worker> {
        let wechat = self.wechat_with(&config.client_options())?;
        Worker::new(&self.settings, self.pool.clone(), wechat, config)
    }

    /// Serves the HTTP API (login, callback, producer API, console and admin API) until
    /// `shutdown` resolves.
    pub async fn serve(
        &self,
        options: wxnotify_api::ServeOptions,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let wechat = self.wechat()?;
        wxnotify_api::serve(&self.settings, self.pool.clone(), wechat, options, shutdown).await
    }
}
