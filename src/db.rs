//! Postgres: the pool and the embedded migrations (`migrations/`).

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The migrations of `migrations/`, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connects a pool of at most `max_connections`, failing within 10 s when Postgres is away.
pub async fn connect(url: &SecretString, max_connections: u32) -> anyhow::Result<PgPool> {
    use anyhow::Context;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(url.expose_secret())
        .await
        .context("cannot connect to Postgres (check DATABASE_URL and that the server runs)")
}

/// Applies every pending migration; running it again changes nothing.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    use anyhow::Context;
    MIGRATOR
        .run(pool)
        .await
        .context("applying the Postgres migrations failed")
}
