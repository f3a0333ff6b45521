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

/// Upserts a row in `apps` for every configured app (the other tables refer to it).
pub async fn register_apps(pool: &PgPool, apps: &[crate::config::AppConfig]) -> anyhow::Result<()> {
    use anyhow::Context;
    for app in apps {
        sqlx::query(
            "INSERT INTO apps (name, oa_appid, mp_appid) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE
             SET oa_appid = EXCLUDED.oa_appid, mp_appid = EXCLUDED.mp_appid, updated_at = now()",
        )
        .bind(app.name.as_str())
        .bind(app.oa_appid.as_str())
        .bind(app.mp_appid.as_ref().map(|a| a.as_str()))
        .execute(pool)
        .await
        .with_context(|| format!("registering app {} in Postgres", app.name))?;
    }
    Ok(())
}
