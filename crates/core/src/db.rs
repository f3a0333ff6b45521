//! Postgres: the pool and the embedded migrations (`migrations/`).

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// The migrations of `migrations/`, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Connects a pool of at most `max_connections`, failing within 10 s when Postgres is away.
///
/// A wrong `DATABASE_URL` (not a URL, a database that does not exist, a refused login) is a
/// [`ConfigError`](crate::config::ConfigError) naming the setting (exit code 2); a server that
/// cannot be reached is an error to retry (exit code 3).
pub async fn connect(url: &SecretString, max_connections: u32) -> anyhow::Result<PgPool> {
    open(url, max_connections, |options| options).await
}

/// [`connect`] for a worker: its connections plan every execution of a prepared statement for
/// the table sizes of that moment ([`plan_each_execution`]).
pub async fn connect_worker(url: &SecretString, max_connections: u32) -> anyhow::Result<PgPool> {
    open(url, max_connections, plan_each_execution).await
}

/// Sets `plan_cache_mode = force_custom_plan` on the connections of `options`.
///
/// The worker's ledger statements are prepared once per connection and run hundreds of times
/// a second. With Postgres's default, a connection may keep a generic plan made while
/// `deliveries` was nearly empty (a fresh install, the first minutes of a big campaign, before
/// autovacuum's first ANALYZE) and go on scanning the whole growing table with it: measured, a
/// worker's drain slowed from 2,000 to 1,400 sends/s within 30,000 jobs, Postgres using most of
/// the machine. Planning again costs a fraction of a millisecond per batched statement, which
/// the worker's batches share; the producer API, with a statement or two per request, keeps
/// the default.
pub fn plan_each_execution(options: PgConnectOptions) -> PgConnectOptions {
    options.options([("plan_cache_mode", "force_custom_plan")])
}

/// A pooled connection idle longer than this is pinged before use; one in use moments ago is
/// not. sqlx pings on every acquire by default: one more round trip per statement, which at the
/// worker's hundreds of statements a second cost Postgres and the worker measurable CPU. A
/// connection that broke while busy (Postgres restarted, failed over) fails its next statement
/// instead, which every caller already treats as Postgres being away, and the pool replaces it.
const PING_IF_IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// The pool settings of every wxnotify process: at most `max_connections`, 10 s to get one,
/// and a ping only for connections idle [`PING_IF_IDLE_FOR`].
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    use sqlx::Connection;
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

async fn open(
    url: &SecretString,
    max_connections: u32,
    session: fn(PgConnectOptions) -> PgConnectOptions,
) -> anyhow::Result<PgPool> {
    use anyhow::Context;
    let result = match url.expose_secret().parse::<PgConnectOptions>() {
        Ok(options) => {
            pool_options(max_connections)
                .connect_with(session(options))
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(pool) => Ok(pool),
        Err(err) => match misconfiguration(&err) {
            Some(config) => Err(config.into()),
            None => Err(err).context(
                "cannot connect to Postgres (check DATABASE_URL and that the server runs)",
            ),
        },
    }
}

/// What to do when the database of `DATABASE_URL` does not exist: one wording for every command.
pub const MISSING_DATABASE_HINT: &str = "Create it with `wxnotify migrate --create-database` (or createdb), or fix the database name in DATABASE_URL.";

/// The setting to fix when connecting failed for a reason retrying cannot change.
fn misconfiguration(err: &sqlx::Error) -> Option<crate::config::ConfigError> {
    use crate::config::ConfigError;
    let invalid = |reason: String, hint: &'static str| ConfigError::Invalid {
        name: "DATABASE_URL".into(),
        reason,
        hint,
    };
    match err {
        sqlx::Error::Configuration(e) => Some(invalid(
            e.to_string(),
            "Use postgres://USER[:PASSWORD]@HOST:5432/DATABASE.",
        )),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // invalid_catalog_name: the database does not exist.
            Some("3D000") => Some(invalid(db.message().to_string(), MISSING_DATABASE_HINT)),
            // invalid_password, invalid_authorization_specification (unknown role, pg_hba).
            Some("28P01" | "28000") => Some(invalid(
                db.message().to_string(),
                "Check the user and password in DATABASE_URL and the server's pg_hba.conf.",
            )),
            _ => None,
        },
        _ => None,
    }
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
