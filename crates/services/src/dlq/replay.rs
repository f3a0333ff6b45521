//! Replaying dead letters: re-open the ledger row, publish the job (same id) with a confirm, mark
//! the dead letter replayed. A failed publish closes the row again.

use sqlx::PgPool;

use super::query::{self, DeadLetterQuery};
use super::store::{self, DeadLetterRow};
use wxnotify_core::config::Settings;
use wxnotify_core::domain::Job;
use wxnotify_core::queue::{FailoverOptions, FailoverPublisher, Lane, Topology};

/// What a replay did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ReplayReport {
    /// Dead letter ids published again.
    pub replayed: Vec<i64>,
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
        for (id, why) in self.skipped.iter().chain(&self.failed).take(20) {
            s.push_str(&format!("\n  {id}: {why}"));
        }
        s
    }
}

/// Replays `rows`.
pub async fn replay(
    settings: &Settings,
    pool: &PgPool,
    rows: Vec<DeadLetterRow>,
    dry_run: bool,
) -> anyhow::Result<ReplayReport> {
    let mut report = ReplayReport::default();
    let mut replayer = None;
    replay_rows(settings, pool, rows, dry_run, &mut replayer, &mut report).await?;
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
    dry_run: bool,
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
                dry_run,
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
    dry_run: bool,
    replayer: &mut Option<Replayer>,
    report: &mut ReplayReport,
) -> anyhow::Result<()> {
    let mut todo = Vec::new();
    for row in rows {
        match replayable(&row) {
            Ok(job) => todo.push((row, job)),
            Err(why) => report.skipped.push((row.id, why)),
        }
    }
    if dry_run || todo.is_empty() {
        report.replayed.extend(todo.iter().map(|(r, _)| r.id));
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
                report.replayed.push(row.id);
            }
            Err(e) => {
                crate::ledger::replay::close_again(pool, &job, &row.reason).await?;
                report.failed.push((row.id, e.to_string()));
            }
        }
    }
    Ok(())
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
