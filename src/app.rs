//! The composition root: the services a command needs, built in one place from [`Settings`].
//!
//! [`Application::connect`] opens the Postgres pool; the WeChat client and the token store are
//! built from it on demand ([`Application::wechat`]), the RabbitMQ side only by the commands
//! that publish or consume (the producer API, the worker), so `status` or `dlq` never need
//! RabbitMQ to be up.

use sqlx::PgPool;

use crate::config::Settings;
use crate::wechat::client::ClientOptions;
use crate::wechat::{TokenStore, WechatClient};

/// The WeChat side: one HTTP client and the access-token store over it.
#[derive(Clone)]
pub struct Wechat {
    /// The API client.
    pub client: WechatClient,
    /// Access tokens of every configured app, shared through Postgres.
    pub tokens: TokenStore,
}

impl Wechat {
    /// The client (with `options`) and token store for the apps of `settings` on `pool`.
    pub fn build(
        settings: &Settings,
        pool: &PgPool,
        options: &ClientOptions,
    ) -> anyhow::Result<Self> {
        let client = WechatClient::new(settings.wechat_api_base.clone(), options)?;
        let tokens = TokenStore::new(pool.clone(), client.clone(), &settings.apps);
        Ok(Wechat { client, tokens })
    }
}

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
        let pool = crate::db::connect(&settings.database_url, connections).await?;
        crate::db::register_apps(&pool, &settings.apps).await?;
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

    /// The producer API's link to RabbitMQ (connects lazily, on the first publish).
    pub fn producer(
        &self,
        options: crate::http::producer::ProducerOptions,
    ) -> crate::http::producer::ProducerApi {
        crate::http::producer::ProducerApi::new(
            self.pool.clone(),
            self.settings.amqp_url.clone(),
            crate::queue::Topology::new(self.settings.queue_prefix.clone()),
            &self.settings.apps,
            options,
        )
    }
}
