//! The arguments of `wxnotify dlq` and its subcommands, and the filter they share with the
//! admin API ([`DeadLetterQuery`]).

use chrono::{DateTime, Utc};

use wxnotify_services::dlq::DeadLetterQuery;
use wxnotify_worker::DeadReason;

/// Arguments of `wxnotify dlq`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify dlq list --reason retries_exhausted --since 1h\n  wxnotify dlq list --errcode 43101 --template TPL_ORDER --json\n  wxnotify dlq stats --since 24h\n  wxnotify dlq show 42\n  wxnotify dlq replay --reason retries_exhausted --since 2h --dry-run\n  wxnotify dlq replay 42 43\n  wxnotify dlq replay --reason outcome_unknown --include-outcome-unknown\n  wxnotify dlq purge --older-than-days 30 --dry-run\n\nThe filter flags (--reason, --app, --errcode, --template, --campaign, --text, --since, --until)\nare the admin API's and the console's, for list, stats, replay and purge alike."
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
        after_help = "Examples:\n  wxnotify dlq list\n  wxnotify dlq list --reason not_following --app default --since 60m\n  wxnotify dlq list --errcode 43101 --campaign 0193…\n  wxnotify dlq list --text 'user block' --since 2026-12-01T00:00:00Z --until 2026-12-02T00:00:00Z\n  wxnotify dlq list --limit 1000 --json | jq '.[].job_id'"
    )]
    List(FilterArgs),
    /// Counts of the matching dead letters by reason, by WeChat errcode and by hour (UTC).
    #[command(
        after_help = "Examples:\n  wxnotify dlq stats\n  wxnotify dlq stats --since 24h --app default\n  wxnotify dlq stats --campaign 0193… --json"
    )]
    Stats(FilterArgs),
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
        after_help = "Examples:\n  wxnotify dlq replay 42 43\n  wxnotify dlq replay --reason retries_exhausted --since 2h --dry-run\n  wxnotify dlq replay --errcode -1 --since 2h --dry-run --json\n  wxnotify dlq replay --reason retries_exhausted --since 2h --limit 5000\n  wxnotify dlq replay --reason outcome_unknown --include-outcome-unknown\n  wxnotify dlq replay --all --limit 1000\n\nGive ids, a filter or --all: without them nothing is replayed (exit 2). An id that is no dead\nletter is an error naming it (exit 1) and nothing is replayed.\nWith a filter, at most --limit letters (newest first) are replayed; the summary says how many matched.\n--dry-run changes nothing and lists what a real run would replay: id, job id and reason.\noutcome_unknown letters may have reached the person already: they are left out (and counted)\nunless --include-outcome-unknown chooses them."
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
        /// Change nothing; list the letters a real run would replay.
        #[arg(long)]
        dry_run: bool,
        /// Replay outcome_unknown letters too, knowing some of them may have reached the person
        /// already (a replay sends those a second time).
        #[arg(long)]
        include_outcome_unknown: bool,
    },
    /// Delete dead letters, replayed or not: by ids, by filter, or older than some days.
    #[command(
        after_help = "Examples:\n  wxnotify dlq purge --older-than-days 30 --dry-run\n  wxnotify dlq purge --older-than-days 30\n  wxnotify dlq purge --reason malformed --app default --dry-run --json\n  wxnotify dlq purge 42 43\n\nGive ids, a filter, --older-than-days or --all: without them nothing is deleted (exit 2).\nAn id that is no dead letter is an error naming it (exit 1) and nothing is deleted.\n--dry-run deletes nothing and lists what a real run would delete: id, job id and reason\n(with --json: {\"dry_run\":true,\"count\",\"first_ids\",\"letters\"})."
    )]
    Purge {
        /// Dead letter ids; or use the filter flags, --older-than-days or --all.
        ids: Vec<i64>,
        /// Which dead letters, when no ids are given (replayed ones are always included).
        #[command(flatten)]
        filter: FilterArgs,
        /// Only dead letters older than this many days (1 to 36500).
        #[arg(long, conflicts_with = "ids",
              value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DAYS)))]
        older_than_days: Option<u32>,
        /// Every dead letter: the one way to purge without ids or a filter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Delete nothing; list the letters a real run would delete.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which dead letters: the admin API's filter.
#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// Only this reason (malformed, not_following, retries_exhausted, outcome_unknown, …).
    #[arg(long, value_parser = parse_reason)]
    pub reason: Option<String>,
    /// Only this app.
    #[arg(long)]
    pub app: Option<String>,
    /// Only this WeChat errcode (e.g. 43101; -1 for WeChat's system busy).
    #[arg(long, allow_hyphen_values = true)]
    pub errcode: Option<i64>,
    /// Only jobs of this template id.
    #[arg(long)]
    pub template: Option<String>,
    /// Only jobs of this campaign id.
    #[arg(long)]
    pub campaign: Option<uuid::Uuid>,
    /// Only letters whose job, raw message or WeChat message contains this text (any case).
    #[arg(long)]
    pub text: Option<String>,
    /// Only letters that died at or after this instant: RFC 3339 (2026-12-01T08:00:00Z) or an
    /// age such as 90m, 2h, 7d.
    #[arg(long, value_parser = parse_instant, conflicts_with = "since_minutes")]
    pub since: Option<DateTime<Utc>>,
    /// Only letters that died before this instant: RFC 3339 or an age such as 30m.
    #[arg(long, value_parser = parse_instant)]
    pub until: Option<DateTime<Utc>>,
    /// Only dead letters younger than this many minutes (1 to 5256000, ten years); the same as
    /// `--since <MINUTES>m`.
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

impl FilterArgs {
    /// The admin API's query for these flags, at `now`.
    pub fn query(&self, now: DateTime<Utc>) -> DeadLetterQuery {
        DeadLetterQuery {
            app: self.app.clone(),
            reason: self.reason.clone(),
            errcode: self.errcode,
            template: self.template.clone(),
            campaign: self.campaign.map(|c| c.to_string()),
            since: self.since.or_else(|| {
                self.since_minutes
                    .map(|m| now - chrono::Duration::minutes(i64::from(m)))
            }),
            until: self.until,
            text: self.text.clone().filter(|t| !t.is_empty()),
            include_replayed: self.include_replayed,
            max_id: None,
        }
    }
}

/// Refuses an action that names no letters: no ids, no narrowing flag and no `--all`.
pub fn check_target(
    ids: &[i64],
    q: &DeadLetterQuery,
    all: bool,
    older_than: bool,
) -> Result<(), String> {
    if ids.is_empty() && !all && !older_than && !q.narrows() {
        return Err("no dead letters named: give ids, a filter (--reason, --app, --errcode, --template, --campaign, --text, --since, --until), or --all to mean every open letter".into());
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

/// An instant: RFC 3339, or an age before now (`90m`, `2h`, `7d`; at most ten years).
pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let bad = || {
        format!(
            "{s:?} is neither an RFC 3339 instant (2026-12-01T08:00:00Z) nor an age (90m, 2h, 7d)"
        )
    };
    let (split, _) = s.char_indices().last().ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let minutes = match unit {
        "m" => n,
        "h" => n.checked_mul(60).ok_or_else(bad)?,
        "d" => n.checked_mul(24 * 60).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if !(1..=i64::from(MAX_MINUTES)).contains(&minutes) {
        return Err(format!("{s:?}: an age of 1 minute to ten years"));
    }
    Ok(Utc::now() - chrono::Duration::minutes(minutes))
}
