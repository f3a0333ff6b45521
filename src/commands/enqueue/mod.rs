//! `wxnotify enqueue`: one job from flags or JSON, or a file of jobs (NDJSON), published with
//! publisher confirms.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncBufRead, BufReader};

mod args;

pub use args::EnqueueArgs;

use super::{EXIT_CONFIG, EXIT_FAILURE, EXIT_OK};
use args::single_job;
use wxnotify_core::config::Settings;
use wxnotify_core::queue::ndjson::{EnqueueAborted, EnqueueSummary, publish_ndjson_checked};
use wxnotify_core::queue::{CONNECT_TIMEOUT, FailoverOptions, FailoverPublisher, Topology};

/// How many rejections the text summary lists (`--json` lists them all).
const SHOWN_REJECTIONS: usize = 20;

/// Runs `wxnotify enqueue`.
pub async fn run(args: EnqueueArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    let single = match single_job(&args, &settings) {
        Ok(single) => single,
        Err(reason) => return Ok(invalid_single_job(&args, reason)),
    };
    // Every job is checked against its template before it is published.
    let catalog = load_catalog(&settings).await;
    if let (Some(job), Some(catalog)) = (&single, &catalog) {
        match wxnotify_services::templates::check_job(catalog, job) {
            Ok(checked) => {
                for warning in &checked.warnings {
                    eprintln!("warning: {warning}");
                }
                for t in &checked.truncations {
                    eprintln!(
                        "note: data.{} will be shortened from {} to {} characters",
                        t.key, t.from, t.to
                    );
                }
            }
            Err(refusal) => return Ok(invalid_single_job(&args, refusal.to_string())),
        }
    }
    let topology = Topology::new(settings.queue_prefix.clone());
    // Over every node of AMQP_URL: a node lost mid-file costs the unconfirmed batch a second
    // publish on the next node, not the run.
    let publisher = FailoverPublisher::new(
        settings.amqp_url.clone(),
        "wxnotify enqueue",
        topology.clone(),
        FailoverOptions {
            patience: CONNECT_TIMEOUT * 3,
            ..FailoverOptions::default()
        },
    );
    let connection = publisher
        .connect_now()
        .await
        .context("cannot connect to RabbitMQ (check AMQP_URL and that the broker runs)")?;
    require_exchange(&connection, &topology).await?;
    let progress = progress_bar(&args);
    let result = match &single {
        Some(job) => {
            publish_stream(&publisher, &args, job.to_json().as_slice(), &progress, None).await
        }
        None => run_file(&publisher, &args, &progress, catalog.as_ref()).await?,
    };
    progress.finish_and_clear();
    publisher.close().await;
    match result {
        Ok(mut summary) => {
            if let Some(job) = single.filter(|_| summary.accepted == 1) {
                summary.job_ids = vec![job.id.to_string()];
            }
            print_summary(&summary, args.json);
            Ok(exit_code(&summary))
        }
        Err(aborted) => {
            print_summary(&aborted.summary, args.json);
            Err(aborted.into())
        }
    }
}

/// Fails with a clear message (exit code 2) when the main exchange is missing: publishing
/// would otherwise fail with the broker's NOT_FOUND on the first batch.
async fn require_exchange(
    connection: &lapin::Connection,
    topology: &Topology,
) -> anyhow::Result<()> {
    // A failed passive declaration closes its channel: use a throwaway one.
    let channel = connection.create_channel().await?;
    let passive = lapin::options::ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let exchange = topology.exchange();
    let result = channel
        .exchange_declare(
            exchange.as_str().into(),
            lapin::ExchangeKind::Direct,
            passive,
            lapin::types::FieldTable::default(),
        )
        .await;
    match result {
        Ok(()) => {
            let _ = channel.close(200, "checked".into()).await;
            Ok(())
        }
        Err(err) if err.is_amqp_soft_error() => Err(wxnotify_core::config::ConfigError::Invalid {
            name: "WXNOTIFY_QUEUE_PREFIX".into(),
            reason: format!("the exchange {exchange:?} does not exist on this broker"),
            hint: "Run `wxnotify migrate` with the same settings first, or fix the prefix.",
        }
        .into()),
        Err(err) => Err(err.into()),
    }
}

/// The template catalog of every app, or `None` (with a warning) when Postgres cannot be asked:
/// then jobs are published unchecked and the worker's check is the only one.
async fn load_catalog(settings: &Settings) -> Option<wxnotify_services::templates::Catalog> {
    use secrecy::ExposeSecret;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect(settings.database_url.expose_secret())
        .await;
    let loaded = match pool {
        Ok(pool) => {
            let catalog = wxnotify_services::templates::Catalog::load(&pool).await;
            pool.close().await;
            catalog
        }
        Err(e) => Err(e),
    };
    match loaded {
        Ok(catalog) => Some(catalog),
        Err(e) => {
            eprintln!("warning: jobs are not checked against their templates (Postgres: {e})");
            None
        }
    }
}

async fn publish_stream(
    publisher: &FailoverPublisher,
    args: &EnqueueArgs,
    input: impl AsyncBufRead + Unpin,
    progress: &ProgressBar,
    catalog: Option<&wxnotify_services::templates::Catalog>,
) -> Result<EnqueueSummary, EnqueueAborted> {
    publish_ndjson_checked(
        publisher,
        args.lane,
        input,
        args.batch_size,
        progress,
        |job| match catalog {
            Some(catalog) => wxnotify_services::templates::check_job(catalog, job)
                .map(|_| ())
                .map_err(|refusal| refusal.to_string()),
            None => Ok(()),
        },
    )
    .await
}

async fn run_file(
    publisher: &FailoverPublisher,
    args: &EnqueueArgs,
    progress: &ProgressBar,
    catalog: Option<&wxnotify_services::templates::Catalog>,
) -> anyhow::Result<Result<EnqueueSummary, EnqueueAborted>> {
    let path = args.file.as_ref().expect("--file is given");
    if path.as_os_str() == "-" {
        let stdin = BufReader::new(tokio::io::stdin());
        return Ok(publish_stream(publisher, args, stdin, progress, catalog).await);
    }
    let file = tokio::fs::File::open(path).await.map_err(|e| {
        wxnotify_core::config::ConfigError::File {
            path: path.clone(),
            reason: e.to_string(),
        }
    })?;
    if let Ok(meta) = file.metadata().await {
        progress.set_length(meta.len());
    }
    Ok(publish_stream(
        publisher,
        args,
        BufReader::with_capacity(1 << 16, file),
        progress,
        catalog,
    )
    .await)
}

fn progress_bar(args: &EnqueueArgs) -> ProgressBar {
    if args.file.is_none() || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
    )
    .expect("a valid template");
    bar.set_style(style);
    bar
}

/// An invalid single job is a bad argument (exit code 2); `--json` still gets a summary.
fn invalid_single_job(args: &EnqueueArgs, reason: String) -> ExitCode {
    if args.json {
        let summary = EnqueueSummary {
            accepted: 0,
            rejected: vec![wxnotify_core::queue::ndjson::Rejection { line: 1, reason }],
            job_ids: vec![],
        };
        print_summary(&summary, true);
    } else {
        eprintln!("error: the job is invalid: {reason}");
    }
    ExitCode::from(EXIT_CONFIG)
}

fn exit_code(summary: &EnqueueSummary) -> ExitCode {
    if summary.rejected.is_empty() {
        ExitCode::from(EXIT_OK)
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

fn print_summary(summary: &EnqueueSummary, json: bool) {
    if json {
        let out = serde_json::json!({
            "accepted": summary.accepted,
            "rejected": summary.rejected.len(),
            "rejections": summary.rejected,
            "job_ids": summary.job_ids,
        });
        println!("{out}");
        return;
    }
    println!(
        "accepted {}, rejected {}",
        summary.accepted,
        summary.rejected.len()
    );
    for id in &summary.job_ids {
        println!("job id: {id}");
    }
    for r in summary.rejected.iter().take(SHOWN_REJECTIONS) {
        println!("  line {}: {}", r.line, r.reason);
    }
    if summary.rejected.len() > SHOWN_REJECTIONS {
        println!(
            "  … and {} more (use --json to list them all)",
            summary.rejected.len() - SHOWN_REJECTIONS
        );
    }
}
