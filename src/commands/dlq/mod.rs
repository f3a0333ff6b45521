//! `wxnotify dlq list|stats|show|replay|purge`: the admin API's filter and actions from a
//! terminal.

use std::process::ExitCode;
use wxnotify_app::Application;

use anyhow::Context;
use sqlx::PgPool;

use wxnotify_core::config::Settings;
use wxnotify_services::dlq::{
    DeadLetterQuery, DeadLetterRow, ReplayOptions, Touched, query, replay, store,
};

mod args;
mod print;

use self::args::check_target;
pub use self::args::{DlqAction, DlqArgs, FilterArgs};

/// How many ids a summary lists.
pub const FIRST_IDS: usize = 20;

/// Runs `wxnotify dlq`.
pub async fn run(args: DlqArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    let pool = Application::connect(settings.clone(), 2).await?.pool;
    let now = chrono::Utc::now();
    match args.action {
        DlqAction::List(filter) => {
            let q = filter.query(now);
            let rows = query::newest(&pool, &q, filter.limit).await?;
            let (matching, _) = query::count(&pool, &q).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print::table(&rows);
                if matching > rows.len() as i64 {
                    println!(
                        "showing {} of {matching} matching dead letters (newest first; raise --limit or narrow the filter)",
                        rows.len()
                    );
                }
            }
        }
        DlqAction::Stats(filter) => {
            let q = filter.query(now);
            let (total, _) = query::count(&pool, &q).await?;
            let groups = query::groups(&pool, &q).await?;
            if args.json {
                let shown = serde_json::json!({
                    "total": total,
                    "filter": q,
                    "by_reason": groups.by_reason,
                    "by_errcode": groups.by_errcode,
                    "by_hour": groups.by_hour,
                });
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                print::stats(total, &groups);
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
            include_outcome_unknown,
        } => {
            let q = filter.query(now);
            if let Err(e) = check_target(&ids, &q, all, false) {
                eprintln!("wxnotify dlq replay: {e}");
                return Ok(ExitCode::from(super::EXIT_CONFIG));
            }
            let rows = match letters(&pool, &ids, &q, filter.limit, "replay").await? {
                Ok(rows) => rows,
                Err(code) => return Ok(code),
            };
            let matched = rows.len();
            let options = ReplayOptions {
                dry_run,
                include_outcome_unknown,
            };
            let report = replay::replay(&settings, &pool, rows, options).await?;
            if args.json {
                let first: Vec<i64> = report.replayed.iter().take(FIRST_IDS).copied().collect();
                let shown = serde_json::json!({
                    "dry_run": dry_run,
                    "matched": matched,
                    "count": report.replayed.len(),
                    "first_ids": first,
                    "replayed": report.replayed,
                    "letters": report.letters,
                    "skipped": report.skipped,
                    "failed": report.failed,
                    "outcome_unknown_skipped": report.outcome_unknown_skipped,
                    "outcome_unknown_included": report.outcome_unknown_included,
                    "warning": report.outcome_unknown_warning(),
                });
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                println!("{}", report.summary(dry_run));
                if dry_run {
                    print::touched(&report.letters, report.replayed.len());
                }
            }
            if !report.failed.is_empty() {
                return Ok(ExitCode::from(super::EXIT_FAILURE));
            }
        }
        DlqAction::Purge {
            ids,
            filter,
            older_than_days,
            all,
            dry_run,
        } => {
            let mut q = filter.query(now);
            // A purge is for any letter, replayed or not.
            q.include_replayed = true;
            if let Some(days) = older_than_days {
                let cut = now - chrono::Duration::days(i64::from(days));
                q.until = Some(q.until.map_or(cut, |u| u.min(cut)));
            }
            if let Err(e) = check_target(&ids, &q, all, older_than_days.is_some()) {
                eprintln!("wxnotify dlq purge: {e}");
                return Ok(ExitCode::from(super::EXIT_CONFIG));
            }
            return purge(&pool, &ids, q, filter.limit, dry_run, args.json).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The letters an action on `ids` (or else on `q`, newest first, at most `limit`) touches.
/// Ids that are no dead letter are an error naming them, with nothing done (exit 1).
async fn letters(
    pool: &PgPool,
    ids: &[i64],
    q: &DeadLetterQuery,
    limit: u32,
    verb: &str,
) -> anyhow::Result<Result<Vec<DeadLetterRow>, ExitCode>> {
    if ids.is_empty() {
        let mut q = q.clone();
        let (matching, max_id) = query::count(pool, &q).await?;
        q.max_id = Some(max_id.unwrap_or(0));
        let rows = query::newest(pool, &q, limit).await?;
        if matching > rows.len() as i64 {
            eprintln!(
                "{matching} dead letters match; this run takes the newest {} (--limit)",
                rows.len()
            );
        }
        return Ok(Ok(rows));
    }
    let rows = store::by_ids(pool, ids).await?;
    let unknown = unknown_ids(ids, &rows);
    if !unknown.is_empty() {
        eprintln!(
            "wxnotify dlq {verb}: no dead letter {} (see `wxnotify dlq list`); nothing was done",
            ids_line(&unknown)
        );
        return Ok(Err(ExitCode::from(super::EXIT_FAILURE)));
    }
    Ok(Ok(rows))
}

/// The ids of `ids` that no row of `rows` has, in the order given, once each.
fn unknown_ids(ids: &[i64], rows: &[DeadLetterRow]) -> Vec<i64> {
    let mut unknown: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| !rows.iter().any(|r| r.id == *id))
        .collect();
    let mut seen = std::collections::HashSet::new();
    unknown.retain(|id| seen.insert(*id));
    unknown
}

/// `dlq purge`: by ids, or every letter of `q` (pinned to those that match now).
async fn purge(
    pool: &PgPool,
    ids: &[i64],
    q: DeadLetterQuery,
    limit: u32,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (count, listed, deleted) = if ids.is_empty() {
        let (count, max_id) = query::count(pool, &q).await?;
        let q = DeadLetterQuery {
            max_id: Some(max_id.unwrap_or(0)),
            ..q
        };
        let listed = query::newest(pool, &q, limit).await?;
        let deleted = if dry_run {
            0
        } else {
            query::purge(pool, &q).await?
        };
        (count, listed, deleted)
    } else {
        let rows = match letters(pool, ids, &q, limit, "purge").await? {
            Ok(rows) => rows,
            Err(code) => return Ok(code),
        };
        let found: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let deleted = if dry_run {
            0
        } else {
            query::purge_ids(pool, &found).await?
        };
        (rows.len() as i64, rows, deleted)
    };
    let letters: Vec<Touched> = listed
        .iter()
        .map(|r| Touched {
            id: r.id,
            job_id: r.job_id.clone(),
            reason: r.reason.clone(),
        })
        .collect();
    if json {
        let first: Vec<i64> = letters.iter().take(FIRST_IDS).map(|l| l.id).collect();
        let shown = if dry_run {
            serde_json::json!({ "dry_run": true, "count": count, "first_ids": first, "letters": letters })
        } else {
            serde_json::json!({ "dry_run": false, "deleted": deleted, "first_ids": first, "letters": letters })
        };
        println!("{}", serde_json::to_string_pretty(&shown)?);
    } else if dry_run {
        println!("would delete {count} dead letters (nothing deleted)");
        print::touched(&letters, count.max(0) as usize);
    } else {
        println!("deleted {deleted} dead letters");
    }
    Ok(ExitCode::SUCCESS)
}

/// The first [`FIRST_IDS`] ids, comma-separated.
fn ids_line(ids: &[i64]) -> String {
    let shown: Vec<String> = ids.iter().take(FIRST_IDS).map(i64::to_string).collect();
    let more = if ids.len() > FIRST_IDS { ", …" } else { "" };
    format!("{}{more}", shown.join(", "))
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
                older_than_days: Some(36500),
                dry_run: false,
                ..
            }
        ));
        parse(&["list", "--since-minutes", "5256000", "--limit", "100000"]).unwrap();
    }

    fn replay_target(args: &[&str]) -> Result<(), String> {
        match parse(args).expect("parses").action {
            DlqAction::Replay {
                ids, filter, all, ..
            } => check_target(&ids, &filter.query(chrono::Utc::now()), all, false),
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
        replay_target(&["replay", "--errcode", "-1"]).unwrap();
        replay_target(&["replay", "--text", "busy"]).unwrap();
        replay_target(&["replay", "--since", "2h"]).unwrap();
    }

    #[test]
    fn the_filter_flags_are_the_admin_apis_query() {
        let now: chrono::DateTime<chrono::Utc> = "2026-12-07T12:00:00Z".parse().unwrap();
        let a = parse(&[
            "list",
            "--errcode",
            "-1",
            "--template",
            "TPL",
            "--campaign",
            "0193a0f0-0000-7000-8000-000000000000",
            "--text",
            "busy",
            "--since-minutes",
            "90",
            "--until",
            "2026-12-07T11:00:00Z",
        ])
        .unwrap();
        let DlqAction::List(f) = a.action else {
            panic!("a list")
        };
        let q = f.query(now);
        assert_eq!(q.errcode, Some(-1));
        assert_eq!(q.template.as_deref(), Some("TPL"));
        assert_eq!(
            q.campaign.as_deref(),
            Some("0193a0f0-0000-7000-8000-000000000000")
        );
        assert_eq!(q.text.as_deref(), Some("busy"));
        assert_eq!(q.since, Some("2026-12-07T10:30:00Z".parse().unwrap()));
        assert_eq!(q.until, Some("2026-12-07T11:00:00Z".parse().unwrap()));
        assert!(parse(&["list", "--since", "yesterday"]).is_err());
        assert!(parse(&["list", "--since", "2h", "--since-minutes", "5"]).is_err());
        let age = args::parse_instant("2h").unwrap();
        let off = chrono::Utc::now() - age - chrono::Duration::hours(2);
        assert!(off.num_seconds().abs() < 5, "{off}");
    }
}
