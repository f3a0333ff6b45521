//! `wxnotify dlq list|show|replay|purge`.

use std::process::ExitCode;
use wxnotify_app::Application;

use anyhow::Context;

use wxnotify_core::config::Settings;
use wxnotify_services::dlq::{DeadLetterRow, Filter, replay, store};
use wxnotify_worker::DeadReason;

/// Arguments of `wxnotify dlq`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify dlq list --reason retries_exhausted --since-minutes 60\n  wxnotify dlq show 42\n  wxnotify dlq replay --reason retries_exhausted --since-minutes 120 --dry-run --json\n  wxnotify dlq replay 42 43\n  wxnotify dlq replay --all --dry-run\n  wxnotify dlq purge --older-than-days 30 --dry-run"
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
    #[command(
        after_help = "Examples:\n  wxnotify dlq list\n  wxnotify dlq list --reason not_following --app shop --since-minutes 60\n  wxnotify dlq list --limit 1000 --json | jq '.[].job_id'"
    )]
    List(FilterArgs),
    /// Show one dead letter with its job, its attempt history and every life of the job (each
    /// replay starts a new life; attempts keep counting across them).
    #[command(after_help = "Examples:\n  wxnotify dlq show 42\n  wxnotify dlq show 42 --json")]
    Show {
        /// The dead letter's id (first column of `list`).
        id: i64,
    },
    /// Publish dead jobs again (same id; a new life of the job: its attempts keep counting, the
    /// retry policy's limit applies to the new life).
    #[command(
        after_help = "Examples:\n  wxnotify dlq replay 42 43\n  wxnotify dlq replay --reason retries_exhausted --since-minutes 120 --dry-run\n  wxnotify dlq replay --reason retries_exhausted --since-minutes 120 --dry-run --json\n  wxnotify dlq replay --reason retries_exhausted --since-minutes 120 --limit 5000\n  wxnotify dlq replay --all --limit 1000\n\nGive ids, a filter (--reason, --app, --since-minutes) or --all: without them nothing is replayed (exit 2).\nWith a filter, at most --limit letters (newest first) are replayed; the summary says how many matched.\n--dry-run changes nothing and answers what a real run would touch: the count and the first 20 ids\n(with --json: {\"dry_run\",\"matched\",\"count\",\"first_ids\",\"replayed\",\"skipped\",\"failed\"})."
    )]
    Replay {
        /// Dead letter ids; or use the filter flags, or --all.
        ids: Vec<i64>,
        /// Which dead letters, when no ids are given.
        #[command(flatten)]
        filter: FilterArgs,
        /// Every open dead letter (newest first, at most --limit): the one way to act without
        /// ids or a filter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Change nothing; print the count and the first 20 ids a real run would replay.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete dead letters older than a number of days, replayed or not.
    #[command(
        after_help = "Examples:\n  wxnotify dlq purge --older-than-days 30\n  wxnotify dlq purge --older-than-days 30 --dry-run\n  wxnotify dlq purge --older-than-days 90 --dry-run --json\n  wxnotify dlq purge --older-than-days 90 --json\n\n--dry-run deletes nothing and answers what a real run would delete: the count and the first 20 ids\n(with --json: {\"dry_run\":true,\"count\",\"first_ids\"})."
    )]
    Purge {
        /// Delete dead letters older than this many days (1 to 36500).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DAYS)))]
        older_than_days: u32,
        /// Delete nothing; print the count and the first 20 ids a real run would delete.
        #[arg(long)]
        dry_run: bool,
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
    /// Only dead letters younger than this many minutes (1 to 5256000, ten years).
    #[arg(long, value_name = "MINUTES",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_MINUTES)))]
    pub since_minutes: Option<u32>,
    /// Include dead letters already replayed.
    #[arg(long)]
    pub include_replayed: bool,
    /// At most this many (1 to 100000).
    #[arg(long, default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LIMIT)))]
    pub limit: u32,
}

/// The largest `--older-than-days` (a hundred years).
pub const MAX_DAYS: u32 = 36_500;
/// The largest `--since-minutes` (ten years).
pub const MAX_MINUTES: u32 = 5_256_000;
/// The largest `--limit`.
pub const MAX_LIMIT: u32 = 100_000;
/// How many ids a dry run lists.
pub const FIRST_IDS: usize = 20;

impl FilterArgs {
    /// Whether any flag narrows the letters (`--include-replayed` widens, `--limit` only cuts).
    pub fn narrows(&self) -> bool {
        self.reason.is_some() || self.app.is_some() || self.since_minutes.is_some()
    }
}

/// Refuses a replay that names no letters: no ids, no narrowing flag and no `--all`.
fn check_target(ids: &[i64], filter: &FilterArgs, all: bool) -> Result<(), String> {
    if ids.is_empty() && !all && !filter.narrows() {
        return Err("no dead letters named: give ids, a filter (--reason, --app, --since-minutes), or --all to mean every open letter".into());
    }
    Ok(())
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
    let pool = Application::connect(settings.clone(), 2).await?.pool;
    match args.action {
        DlqAction::List(filter) => {
            let filter = Filter::from(&filter);
            let rows = store::list(&pool, &filter).await?;
            let matching = store::count(&pool, &filter).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_table(&rows);
                if matching > rows.len() as i64 {
                    println!(
                        "showing {} of {matching} matching dead letters (newest first; raise --limit or narrow the filter)",
                        rows.len()
                    );
                }
            }
        }
        DlqAction::Show { id } => {
            let row = store::get(&pool, id)
                .await?
                .with_context(|| format!("no dead letter {id}; see `wxnotify dlq list`"))?;
            let history = store::history(&pool, row.job_key()).await?;
            let lives = store::lives(&pool, row.job_key()).await?;
            let shown =
                serde_json::json!({ "dead_letter": row, "attempts": history, "lives": lives });
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        DlqAction::Replay {
            ids,
            filter,
            all,
            dry_run,
        } => {
            if let Err(e) = check_target(&ids, &filter, all) {
                eprintln!("wxnotify dlq replay: {e}");
                return Ok(ExitCode::from(super::EXIT_CONFIG));
            }
            let rows = if ids.is_empty() {
                let filter = Filter::from(&filter);
                let rows = store::list(&pool, &filter).await?;
                let matching = store::count(&pool, &filter).await?;
                if matching > rows.len() as i64 {
                    eprintln!(
                        "{matching} dead letters match; this run takes the newest {} (--limit)",
                        rows.len()
                    );
                }
                rows
            } else {
                store::by_ids(&pool, &ids).await?
            };
            let matched = rows.len();
            let report = replay::replay(&settings, &pool, rows, dry_run).await?;
            if args.json {
                let first: Vec<i64> = report.replayed.iter().take(FIRST_IDS).copied().collect();
                let shown = serde_json::json!({
                    "dry_run": dry_run,
                    "matched": matched,
                    "count": report.replayed.len(),
                    "first_ids": first,
                    "replayed": report.replayed,
                    "skipped": report.skipped,
                    "failed": report.failed,
                });
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                println!("{}", report.summary(dry_run));
                if dry_run && !report.replayed.is_empty() {
                    println!("first ids: {}", ids_line(&report.replayed));
                }
            }
            if !report.failed.is_empty() {
                return Ok(ExitCode::from(super::EXIT_FAILURE));
            }
        }
        DlqAction::Purge {
            older_than_days,
            dry_run: true,
        } => {
            let (n, first) = store::purge_preview(&pool, older_than_days, FIRST_IDS as u32).await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({ "dry_run": true, "count": n, "first_ids": first })
                );
            } else {
                println!(
                    "would delete {n} dead letters older than {older_than_days} days (nothing deleted)"
                );
                if !first.is_empty() {
                    println!("first ids: {}", ids_line(&first));
                }
            }
        }
        DlqAction::Purge {
            older_than_days, ..
        } => {
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

/// The first [`FIRST_IDS`] ids, comma-separated.
fn ids_line(ids: &[i64]) -> String {
    let shown: Vec<String> = ids.iter().take(FIRST_IDS).map(i64::to_string).collect();
    let more = if ids.len() > FIRST_IDS { ", …" } else { "" };
    format!("{}{more}", shown.join(", "))
}

fn print_table(rows: &[DeadLetterRow]) {
    println!(
        "{:>8}  {:<20}  {:<36}  {:<12}  {:>7}  {:<20}  message",
        "id", "reason", "job id", "channel", "errcode", "dead at"
    );
    for r in rows {
        let message: String = r.errmsg.as_deref().unwrap_or("").chars().take(60).collect();
        println!(
            "{:>8}  {:<20}  {:<36}  {:<12}  {:>7}  {:<20}  {}{}",
            r.id,
            r.reason,
            r.job_id.as_deref().unwrap_or("-"),
            r.channel.as_deref().unwrap_or("-"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        dlq: DlqArgs,
    }

    fn parse(args: &[&str]) -> Result<DlqArgs, clap::Error> {
        let argv = std::iter::once("dlq").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.dlq)
    }

    #[test]
    fn numbers_that_would_wrap_in_sql_are_refused_by_the_parser() {
        for args in [
            &["purge", "--older-than-days", "4294967295"][..],
            &["purge", "--older-than-days", "36501"],
            &["purge", "--older-than-days", "0"],
            &["purge", "--older-than-days=-1"],
            &["list", "--since-minutes", "4294967295"],
            &["list", "--since-minutes", "0"],
            &["list", "--limit", "4294967295"],
            &["replay", "--since-minutes", "2147483648"],
        ] {
            let err = parse(args).expect_err("out of range");
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{args:?}"
            );
        }
        let ok = parse(&["purge", "--older-than-days", "36500"]).unwrap();
        assert!(matches!(
            ok.action,
            DlqAction::Purge {
                older_than_days: 36500,
                dry_run: false
            }
        ));
        parse(&["list", "--since-minutes", "5256000", "--limit", "100000"]).unwrap();
    }

    fn replay_target(args: &[&str]) -> Result<(), String> {
        match parse(args).expect("parses").action {
            DlqAction::Replay {
                ids, filter, all, ..
            } => check_target(&ids, &filter, all),
            other => panic!("not a replay: {other:?}"),
        }
    }

    #[test]
    fn a_replay_names_its_letters_or_says_all() {
        assert!(replay_target(&["replay"]).unwrap_err().contains("--all"));
        assert!(replay_target(&["replay", "--dry-run", "--limit", "5"]).is_err());
        assert!(replay_target(&["replay", "--include-replayed"]).is_err());
        replay_target(&["replay", "--all"]).unwrap();
        replay_target(&["replay", "--reason", "malformed"]).unwrap();
        replay_target(&["replay", "42"]).unwrap();
        assert!(parse(&["replay", "42", "--all"]).is_err());
        let dry = parse(&["purge", "--older-than-days", "30", "--dry-run"]).unwrap();
        assert!(matches!(dry.action, DlqAction::Purge { dry_run: true, .. }));
    }
}
