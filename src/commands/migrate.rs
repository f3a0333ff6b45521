//! `wxnotify migrate`: the Postgres schema, the configured apps, and the RabbitMQ topology, all
//! idempotent, so it runs at every deploy.

use std::process::ExitCode;
use wxnotify_app::Application;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

use wxnotify_core::config::{ConfigError, Settings};
use wxnotify_core::queue::{Topology, TopologyError, TopologyOptions, connect};

/// Arguments of `wxnotify migrate`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify migrate\n  DATABASE_URL=postgres://postgres@127.0.0.1/wxnotify wxnotify migrate --create-database"
)]
pub struct MigrateArgs {
    /// Create the database of DATABASE_URL when it does not exist (otherwise a missing
    /// database is an error, so a mistyped URL cannot make a new empty one).
    #[arg(long)]
    pub create_database: bool,
}

/// Runs `wxnotify migrate`: applies the migrations, registers the configured apps and
/// declares the topology of `WXNOTIFY_QUEUE_PREFIX`, printing each step.
pub async fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    ensure_database(&settings.database_url, args.create_database).await?;
    let app = Application::connect_migrated(settings.clone(), 2).await?;
    println!("postgres: migrations applied");
    println!("postgres: {} app(s) registered", settings.apps.len());
    app.pool.close().await;

    let topology = Topology::new(settings.queue_prefix.clone());
    declare_topology(&settings, &topology).await?;
    println!(
        "rabbitmq: declared {} exchanges and {} quorum queues with prefix {:?}",
        topology.exchanges().len(),
        topology.queues().len(),
        topology.prefix()
    );
    Ok(ExitCode::SUCCESS)
}

/// Checks the database of `DATABASE_URL` exists; creates it only when `create` says so (a
/// fresh machine), else a missing one is a settings error (exit 2).
async fn ensure_database(url: &SecretString, create: bool) -> anyhow::Result<()> {
    use sqlx::migrate::MigrateDatabase;
    let url = url.expose_secret();
    let exists = sqlx::Postgres::database_exists(url)
        .await
        .context("cannot connect to Postgres (check DATABASE_URL and that the server runs)")?;
    if !exists && !create {
        let name = url::Url::parse(url)
            .ok()
            .map(|u| u.path().trim_start_matches('/').to_owned())
            .unwrap_or_default();
        return Err(ConfigError::Invalid {
            name: "DATABASE_URL".into(),
            reason: format!("the database {name:?} does not exist"),
            hint: wxnotify_core::db::MISSING_DATABASE_HINT,
        }
        .into());
    }
    if !exists {
        sqlx::Postgres::create_database(url)
            .await
            .context("cannot create the database of DATABASE_URL")?;
        println!("postgres: database created");
    }
    Ok(())
}

async fn declare_topology(settings: &Settings, topology: &Topology) -> anyhow::Result<()> {
    let connection = connect(&settings.amqp_url, "wxnotify migrate").await?;
    let channel = connection
        .create_channel()
        .await
        .context("cannot open a channel")?;
    let result = topology
        .declare(&channel, &TopologyOptions::default())
        .await;
    let _ = connection.close(200, "migrate done".into()).await;
    result.map_err(|err| match err {
        // An existing queue with other arguments is a settings conflict to resolve: exit 2.
        TopologyError::Inequivalent { .. } => {
            let hint =
                "Resolve the conflict as the message says, then run `wxnotify migrate` again.";
            anyhow::Error::new(ConfigError::Invalid {
                name: "RabbitMQ topology".into(),
                reason: err.to_string(),
                hint,
            })
        }
        other => anyhow::Error::new(other),
    })
}
