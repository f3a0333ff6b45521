//! `wxnotify dlq`: what ops need at 3 a.m. — list, inspect, replay and purge dead letters.
//!
//! Dead letters live in Postgres (`dead_letters`), with the reason, WeChat's errcode and message,
//! the original job and the attempt count; the attempt history is in `delivery_attempts`.
//! Replaying a dead letter re-opens its ledger row and publishes the job to its lane again with
//! the same id (so it is sent at most once more); malformed messages cannot be replayed.

pub mod query;
mod replay;
mod store;

use std::process::ExitCode;

use anyhow::Context;

use crate::config::Settings;
use crate::delivery::DeadReason;

pub use query::DeadLetterQuery;
pub use replay::{ReplayReport, replay, replay_query};
pub use store::{AttemptRow, DeadLetterRow, Filter, by_ids, get, history, purge};

/// Arguments of `wxnotify dlq`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify dlq list --reason retries_exhausted --since 1h\n  wxnotify dlq show 42\n  wxnotify dlq replay --reason retries_exhausted --since 2h --dry-run\n  wxnotify dlq replay 42 43\n  wxnotify dlq purge --older-than-days 30"
)]
pub struct DlqArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: DlqAction,
    /// Print JSON on stdout instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The dead-letter actions.
#[derive(Debug, clap::Subcommand)]
pub enum DlqAction {
    /// List dead letters, newest first.
    List(FilterArgs),
    /// Show one dead letter with its job and attempt history.
    Show {
        /// The dead letter's id (first column of `list`).
        id: i64,
    },
    /// Publish dead jobs again (same id, attempts counted from zero).
    Replay {
        /// Dead letter ids; or use the filter flags.
        ids: Vec<i64>,
        /// Which dead letters, when no ids are given.
        #[command(flatten)]
        filter: FilterArgs,
        /// Only say what would be replayed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete dead letters that were replayed or are older than a number of days.
    Purge {
        /// Delete dead letters older than this many days.
        #[arg(long)]
        older_than_days: u32,
    },
}

/// Which dead letters.
#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// Only this reason (malformed, not_following, retries_exhausted, …).
    #[arg(long, value_parser = parse_reason)]
    pub reason: Option<String>,
    /// Only this app.
    #[arg(long)]
    pub app: Option<String>,
    /// Only dead letters younger than this many minutes.
    #[arg(long, value_name = "MINUTES")]
    pub since_minutes: Option<u32>,
    /// Include dead letters already replayed.
    #[arg(long)]
    pub include_replayed: bool,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

fn parse_reason(s: &str) -> Result<String, String> {
    DeadReason::ALL
        .iter()
        .find(|r| r.as_str() == s)
        .map(|r| r.as_str().to_owned())
        .ok_or_else(|| {
            let known: Vec<_> = DeadReason::ALL.iter().map(|r| r.as_str()).collect();
            format!("unknown reason; one of: {}", known.join(", "))
        })
}

impl From<&FilterArgs> for Filter {
    fn from(f: &FilterArgs) -> Self {
        Filter {
            reason: f.reason.clone(),
            app: f.app.clone(),
            since_minutes: f.since_minutes,
            include_replayed: f.include_replayed,
            limit: f.limit,
        }
    }
}

/// Runs `wxnotify dlq`.
pub async fn run(args: DlqArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    let pool = crate::db::connect(&settings.database_url, 2).await?;
    match args.action {
        DlqAction::List(filter) => {
            let rows = store::list(&pool, &Filter::from(&filter)).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_table(&rows);
            }
        }
        DlqAction::Show { id } => {
            let row = store::get(&pool, id)
                .await?
                .with_context(|| format!("no dead letter {id}; see `wxnotify dlq list`"))?;
            let history = store::history(&pool, row.job_id.as_deref()).await?;
            let shown = serde_json::json!({ "dead_letter": row, "attempts": history });
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        DlqAction::Replay {
            ids,
            filter,
            dry_run,
        } => {
            let rows = if ids.is_empty() {
                store::list(&pool, &Filter::from(&filter)).await?
            } else {
                store::by_ids(&pool, &ids).await?
            };
            let report = replay::replay(&settings, &pool, rows, dry_run).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{}", report.summary(dry_run));
            }
            if !report.failed.is_empty() {
                return Ok(ExitCode::from(crate::cli::EXIT_FAILURE));
            }
        }
        DlqAction::Purge { older_than_days } => {
            let n = store::purge(&pool, older_than_days).await?;
            if args.json {
                println!("{}", serde_json::json!({ "deleted": n }));
            } else {
                println!("deleted {n} dead letters older than {older_than_days} days");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(rows: &[DeadLetterRow]) {
    println!(
        "{:>8}  {:<20}  {:<36}  {:>7}  {:<20}  message",
        "id", "reason", "job id", "errcode", "dead at"
    );
    for r in rows {
        let message: String = r.errmsg.as_deref().unwrap_or("").chars().take(60).collect();
        println!(
            "{:>8}  {:<20}  {:<36}  {:>7}  {:<20}  {}{}",
            r.id,
            r.reason,
            r.job_id.as_deref().unwrap_or("-"),
            r.errcode
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            r.created_at.format("%Y-%m-%d %H:%M:%S"),
            message,
            if r.replayed_at.is_some() {
                "  (replayed)"
            } else {
                ""
            }
        );
    }
    if rows.is_empty() {
        println!("(no dead letters match)");
    }
}
