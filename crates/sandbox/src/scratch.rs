//! Throw-away environments for the demo, the benchmarks and the integration tests: a database
//! of their own on the server of `DATABASE_URL`, a queue prefix of their own on the broker of
//! `AMQP_URL`, and the default app pointed at a fake WeChat. Removed again by
//! [`Scratch::remove`].
//!
//! The pieces ([`database_name`], [`queue_prefix`], [`create_database`], [`drop_database`]) are
//! public too: the test harness (`tests/it/support.rs`) makes its per-test databases and queue
//! prefixes with them.

use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::mock_wechat::{self, MockConfig, MockWechat};
use wxnotify_core::config::Settings;
use wxnotify_core::queue::{Publisher, PublisherOptions, Topology, TopologyOptions};

/// The OA server URL Token of scratch environments (a fake, like the fake WeChat's secrets).
pub const SCRATCH_CALLBACK_TOKEN: &str = "scratch-callback-token";

/// A scratch database and queue prefix with the settings that point at them.
pub struct Scratch {
    /// Settings for processes working in the scratch environment.
    pub settings: Settings,
    /// Its database.
    pub db_name: String,
    /// A pool on it.
    pub pool: PgPool,
    /// Its topology (declared).
    pub topology: Topology,
    /// A publisher on it.
    pub publisher: Publisher,
    server: PgConnectOptions,
    connection: Arc<lapin::Connection>,
}

impl Scratch {
    /// Creates the database (migrated, app registered) and the topology, for the fake WeChat at
    /// `mock` and `rate` sends per second.
    pub async fn create(
        base: &Settings,
        label: &str,
        mock: &MockWechat,
        rate: u32,
    ) -> anyhow::Result<Scratch> {
        let run = unique_suffix();
        let db_name = format!("wxnotify_{label}_{run}");
        let prefix = format!("wxnotify-{label}-{run}");
        let server: PgConnectOptions = base
            .database_url
            .expose_secret()
            .parse()
            .context("DATABASE_URL is not a Postgres URL")?;
        // RabbitMQ first: when it is down nothing has been created that would be left behind.
        let connection = Arc::new(
            wxnotify_core::queue::connect(&base.amqp_url, &format!("wxnotify-{label}")).await?,
        );
        create_database(&server, &db_name).await?;
        let topology = Topology::new(prefix.clone());
        let filled = async {
            let settings = scratch_settings(base, mock, &server, &db_name, &prefix, rate)?;
            let pool = wxnotify_core::db::connect(&settings.database_url, 8).await?;
            wxnotify_core::db::migrate(&pool).await?;
            wxnotify_core::db::register_apps(&pool, &settings.apps).await?;
            topology
                .declare(
                    &connection.create_channel().await?,
                    &TopologyOptions::default(),
                )
                .await?;
            let publisher = Publisher::new(
                connection.clone(),
                topology.clone(),
                PublisherOptions::default(),
            )
            .await?;
            anyhow::Ok((settings, pool, publisher))
        }
        .await;
        match filled {
            Ok((settings, pool, publisher)) => Ok(Scratch {
                settings,
                db_name,
                pool,
                topology,
                publisher,
                server,
                connection,
            }),
            Err(err) => {
                // Half made: take away what was made.
                if let Ok(channel) = connection.create_channel().await {
                    let _ = topology.delete(&channel).await;
                }
                drop_database(&server, &db_name).await;
                Err(err)
            }
        }
    }

    /// Removes the queues, exchanges and database.
    pub async fn remove(self) {
        if let Ok(channel) = self.connection.create_channel().await {
            let _ = self.topology.delete(&channel).await;
            let _ = channel.close(200, "scratch removed".into()).await;
        }
        let _ = self.connection.close(200, "scratch removed".into()).await;
        self.pool.close().await;
        drop_database(&self.server, &self.db_name).await;
    }
}

fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A database name no one else uses: `wxnotify_{label}_` and 12 random hex digits. `label` must be
/// lower-case letters, digits and `_` (it is spliced into SQL as an identifier).
pub fn database_name(label: &str) -> String {
    format!("wxnotify_{label}_{}", unique_suffix())
}

/// A queue prefix no one else uses: `wxnotify-{label}-` and 12 random hex digits, so runs share
/// a broker without seeing each other's messages.
pub fn queue_prefix(label: &str) -> String {
    format!("wxnotify-{label}-{}", unique_suffix())
}

/// Creates the empty database `db_name` on the server of `server` (connecting to its `postgres`
/// database). `db_name` comes from [`database_name`]; it is spliced into SQL.
pub async fn create_database(server: &PgConnectOptions, db_name: &str) -> anyhow::Result<()> {
    let mut admin = server
        .clone()
        .database("postgres")
        .connect()
        .await
        .context("cannot reach Postgres: start it (see README) or set DATABASE_URL")?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
        .execute(&mut admin)
        .await
        .with_context(|| format!("CREATE DATABASE {db_name}"))?;
    admin.close().await?;
    Ok(())
}

/// Drops the database `db_name` (its connections closed by force); best effort: a server that
/// cannot be reached leaves it.
pub async fn drop_database(server: &PgConnectOptions, db_name: &str) {
    if let Ok(mut admin) = server.clone().database("postgres").connect().await {
        let drop = format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)");
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(&mut admin)
            .await;
    }
}

fn scratch_settings(
    base: &Settings,
    mock: &MockWechat,
    server: &PgConnectOptions,
    db_name: &str,
    prefix: &str,
    rate: u32,
) -> anyhow::Result<Settings> {
    let url = server.clone().database(db_name).to_url_lossy().to_string();
    fake_wechat_settings(&url, base.amqp_url.expose_secret(), mock, prefix, rate)
}

/// Settings for a process of a throw-away environment: the database at `database_url`, the
/// queues under `prefix` on the broker at `amqp_url`, and the default app on the fake WeChat
/// `mock`, sending at most `rate` per second, its OA server URL Token
/// [`SCRATCH_CALLBACK_TOKEN`].
pub fn fake_wechat_settings(
    database_url: &str,
    amqp_url: &str,
    mock: &MockWechat,
    prefix: &str,
    rate: u32,
) -> anyhow::Result<Settings> {
    let base_url = mock.base_url().to_string();
    Ok(Settings::from_lookup(|k| match k {
        "DATABASE_URL" => Some(database_url.to_owned()),
        "AMQP_URL" => Some(amqp_url.to_owned()),
        "WECHAT_API_BASE" => Some(base_url.clone()),
        "WXNOTIFY_QUEUE_PREFIX" => Some(prefix.to_owned()),
        "WXNOTIFY_OA_APPID" => Some(mock_wechat::MOCK_OA_APPID.into()),
        "WXNOTIFY_OA_SECRET" => Some(mock_wechat::MOCK_OA_SECRET.into()),
        "WXNOTIFY_MP_APPID" => Some(mock_wechat::MOCK_MP_APPID.into()),
        "WXNOTIFY_MP_SECRET" => Some(mock_wechat::MOCK_MP_SECRET.into()),
        "WXNOTIFY_RATE_PER_SECOND" => Some(rate.to_string()),
        "WXNOTIFY_CALLBACK_TOKEN" => Some(SCRATCH_CALLBACK_TOKEN.into()),
        _ => None,
    })?)
}

/// Writes what logins and the follower sync would have learned about persons `0..n` of the
/// fake WeChat straight into Postgres (for benchmarks and tests that are not about those paths),
/// then analyzes the two tables.
pub async fn seed_mapping(pool: &PgPool, n: u64, cfg: &MockConfig) -> Result<(), sqlx::Error> {
    const CHUNK: u64 = 50_000;
    for start in (0..n).step_by(CHUNK as usize) {
        let people: Vec<u64> = (start..(start + CHUNK).min(n)).collect();
        let mp: Vec<String> = people.iter().map(|i| mock_wechat::mp_openid(*i)).collect();
        let oa: Vec<String> = people.iter().map(|i| mock_wechat::oa_openid(*i)).collect();
        let union: Vec<Option<String>> = people
            .iter()
            .map(|i| mock_wechat::unionid(*i, cfg))
            .collect();
        let follows: Vec<bool> = people
            .iter()
            .map(|i| mock_wechat::seeded_follower(*i, cfg))
            .collect();
        sqlx::query(
            "INSERT INTO mp_users (app, mp_openid, unionid)
             SELECT 'default', * FROM UNNEST($1::text[], $2::text[])",
        )
        .bind(&mp)
        .bind(&union)
        .execute(pool)
        .await?;
        sqlx::query(
            "INSERT INTO oa_followers (app, oa_openid, unionid, subscribed)
             SELECT 'default', * FROM UNNEST($1::text[], $2::text[], $3::bool[])",
        )
        .bind(&oa)
        .bind(&union)
        .bind(&follows)
        .execute(pool)
        .await?;
    }
    // A synced mapping is long-lived and analyzed; without this, the first seconds of a run
    // would measure autovacuum catching up with the bulk insert.
    sqlx::query("ANALYZE mp_users, oa_followers")
        .execute(pool)
        .await?;
    Ok(())
}
