//! Replaying dead letters: re-open the ledger row, publish the job (same id) with a confirm, mark
//! the dead letter replayed. A failed publish closes the row again.
//!
//! A letter that died `outcome_unknown` may have reached the person already (WeChat may have
//! accepted the send whose answer was lost): it is replayed only when the caller chooses so
//! explicitly ([`ReplayOptions::include_outcome_unknown`]); otherwise it is left out and
//! counted, with why.

use sqlx::PgPool;

use super::query::{self, DeadLetterQuery};
use super::store::{self, DeadLetterRow};
use wxnotify_core::config::Settings;
use wxnotify_core::domain::Job;
use wxnotify_core::queue::{FailoverOptions, FailoverPublisher, Lane, Topology};

/// The reason of letters that may have reached the person already.
pub const OUTCOME_UNKNOWN: &str = "outcome_unknown";

/// What every surface says about replaying `outcome_unknown` letters.
pub const OUTCOME_UNKNOWN_WARNING: &str = "outcome_unknown letters died after a send whose answer was lost: WeChat may have accepted it, so some of them may have reached the person already, and a replay sends those a second time";

/// Why an `outcome_unknown` letter was left out of a replay.
pub const OUTCOME_UNKNOWN_LEFT_OUT: &str = "outcome_unknown: it may have reached the person already; left out unless chosen explicitly (CLI --include-outcome-unknown, API \"include_outcome_unknown\": true, console: the box on the confirmation page)";

/// Most letters a report lists with their job id and reason.
pub const MAX_LISTED: usize = 1_000;

/// How a replay runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Change nothing; answer what a real run would touch.
    pub dry_run: bool,
    /// Replay `outcome_unknown` letters too (some may have reached the person already).
    pub include_outcome_unknown: bool,
}

/// One letter a replay touched (or, in a dry run, would touch).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Touched {
    /// The dead letter's id.
    pub id: i64,
    /// Its job id, when the message had one.
    pub job_id: Option<String>,
    /// Why it died.
    pub reason: String,
}

/// What a replay did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ReplayReport {
    /// Dead letter ids published again.
    pub replayed: Vec<i64>,
    /// The first [`MAX_LISTED`] of them with their job id and reason.
    pub letters: Vec<Touched>,
    /// `outcome_unknown` letters left out because they were not chosen explicitly (also in
    /// `skipped`, with why).
    pub outcome_unknown_skipped: u64,
    /// `outcome_unknown` letters replayed (or that would be) because they were chosen.
    pub outcome_unknown_included: u64,
    /// Dead letters that cannot be replayed (malformed, already replayed), with why.
    pub skipped: Vec<(i64, String)>,
    /// Dead letters whose publish failed, with the error.
    pub failed: Vec<(i64, String)>,
}

impl ReplayReport {
    /// One line for a terminal.
    pub fn summary(&self, dry_run: bool) -> String {
        let verb = if dry_run { "would replay" } else { "replayed" };
        let mut s = format!(
            "{verb} {}, skipped {}, failed {}",
            self.replayed.len(),
            self.skipped.len(),
            self.failed.len()
        );
        if self.outcome_unknown_skipped > 0 {
            s.push_str(&format!(
                "\n{} outcome_unknown letters left out: {OUTCOME_UNKNOWN_WARNING}; pass --include-outcome-unknown to replay them anyway",
                self.outcome_unknown_skipped
            ));
        }
        if self.outcome_unknown_included > 0 {
            s.push_str(&format!(
                "\nwarning: {} outcome_unknown letters {}: {OUTCOME_UNKNOWN_WARNING}",
                self.outcome_unknown_included,
                if dry_run {
                    "would be included"
                } else {
                    "were included"
                }
            ));
        }
        for (id, why) in self
            .skipped
            .iter()
            .filter(|(_, why)| why != OUTCOME_UNKNOWN_LEFT_OUT)
            .chain(&self.failed)
            .take(20)
        {
            s.push_str(&format!("\n  {id}: {why}"));
        }
        s
    }

    /// A warning for people when `outcome_unknown` letters are involved, either way.
    pub fn outcome_unknown_warning(&self) -> Option<String> {
        match (self.outcome_unknown_skipped, self.outcome_unknown_included) {
            (0, 0) => None,
            (skipped, 0) => Some(format!(
                "{skipped} outcome_unknown letters were left out: {OUTCOME_UNKNOWN_WARNING}. Replay them only by choosing so explicitly."
            )),
            (_, included) => Some(format!(
                "{included} outcome_unknown letters are included: {OUTCOME_UNKNOWN_WARNING}."
            )),
        }
    }
}

/// Replays `rows`.
pub async fn replay(
    settings: &Settings,
    pool: &PgPool,
    rows: Vec<DeadLetterRow>,
    options: ReplayOptions,
) -> anyhow::Result<ReplayReport> {
    let mut report = ReplayReport::default();
    let mut replayer = None;
    replay_rows(settings, pool, rows, options, &mut replayer, &mut report).await?;
    if let Some(r) = replayer {
        r.close().await;
    }
    Ok(report)
}

/// Replays every letter matching `q` (pinned to the letters that match now: ones that die
/// meanwhile are not included), a page at a time over one broker connection.
pub async fn replay_query(
    settings: &Settings,
    pool: &PgPool,
    q: &DeadLetterQuery,
    options: ReplayOptions,
) -> anyhow::Result<ReplayReport> {
    let mut q = q.clone();
    if q.max_id.is_none() {
        let (_, max_id) = query::count(pool, &q).await?;
        let Some(max_id) = max_id else {
            return Ok(ReplayReport::default());
        };
        q.max_id = Some(max_id);
    }
    let mut report = ReplayReport::default();
    let mut replayer = None;
    let mut after = None;
    let result = async {
        loop {
            let page = query::page(pool, &q, after, 500).await?;
            replay_rows(
                settings,
                pool,
                page.letters,
                options,
                &mut replayer,
                &mut report,
            )
            .await?;
            match page.next_after {
                Some(next) => after = Some(next),
                None => return anyhow::Ok(()),
            }
        }
    }
    .await;
    if let Some(r) = replayer {
        r.close().await;
    }
    result.map(|()| report)
}

/// A publisher of its own over the nodes of `AMQP_URL`, opened at the first letter that needs
/// it: a node lost during a replay costs the letter in flight a second publish on the next node.
struct Replayer {
    publisher: FailoverPublisher,
}

impl Replayer {
    async fn open(settings: &Settings) -> anyhow::Result<Self> {
        let publisher = FailoverPublisher::new(
            settings.amqp_url.clone(),
            "wxnotify dlq replay",
            Topology::new(settings.queue_prefix.clone()),
            FailoverOptions::default(),
        );
        publisher.connect_now().await?;
        Ok(Replayer { publisher })
    }

    async fn close(self) {
        self.publisher.close().await;
    }
}

/// The one place that decides and does the replay of some rows, adding to `report`.
async fn replay_rows(
    settings: &Settings,
    pool: &PgPool,
    rows: Vec<DeadLetterRow>,
    options: ReplayOptions,
    replayer: &mut Option<Replayer>,
    report: &mut ReplayReport,
) -> anyhow::Result<()> {
    let mut todo = Vec::new();
    for row in rows {
        let unknown = row.reason == OUTCOME_UNKNOWN && row.replayed_at.is_none();
        if unknown && !options.include_outcome_unknown {
            report.outcome_unknown_skipped += 1;
            report
                .skipped
                .push((row.id, OUTCOME_UNKNOWN_LEFT_OUT.to_owned()));
            continue;
        }
        match replayable(&row) {
            Ok(job) => {
                if unknown {
                    report.outcome_unknown_included += 1;
                }
                todo.push((row, job));
            }
            Err(why) => report.skipped.push((row.id, why)),
        }
    }
    if options.dry_run || todo.is_empty() {
        for (row, _) in &todo {
            report.touched(row);
        }
        return Ok(());
    }
    if replayer.is_none() {
        *replayer = Some(Replayer::open(settings).await?);
    }
    let publisher = &replayer.as_ref().expect("opened above").publisher;
    for (row, job) in todo {
        let lane = if job.campaign_id.is_some() {
            Lane::Bulk
        } else {
            Lane::Jobs
        };
        crate::ledger::replay::reopen(pool, &job).await?;
        match publisher.publish(&job, lane).await {
            Ok(()) => {
                store::mark_replayed(pool, row.id).await?;
                report.touched(&row);
            }
            Err(e) => {
                crate::ledger::replay::close_again(pool, &job, &row.reason).await?;
                report.failed.push((row.id, e.to_string()));
            }
        }
    }
    Ok(())
}

impl ReplayReport {
    /// Notes `row` as replayed (or, in a dry run, as one that would be).
    fn touched(&mut self, row: &DeadLetterRow) {
        self.replayed.push(row.id);
        if self.letters.len() < MAX_LISTED {
            self.letters.push(Touched {
                id: row.id,
                job_id: row.job_id.clone(),
                reason: row.reason.clone(),
            });
        }
    }
}

fn replayable(row: &DeadLetterRow) -> Result<Job, String> {
    if row.replayed_at.is_some() {
        return Err("already replayed".into());
    }
    let job = row
        .job
        .as_ref()
        .ok_or("a malformed message has no job to replay; fix the producer")?;
    let bytes = serde_json::to_vec(job).map_err(|e| e.to_string())?;
    Job::from_json(&bytes).map_err(|e| format!("the stored job no longer validates: {e}"))
}
