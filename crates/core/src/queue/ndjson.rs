//! Publishing a stream of NDJSON jobs: every line is parsed on its own (a bad line never stops
//! the good ones), good jobs are published in batches with confirms, and the summary names
//! each refused line and why.
//!
//! Reading and parsing one line at a time (capped, so a huge line cannot exhaust memory) is in
//! [`lines`].

use indicatif::ProgressBar;
use serde::Serialize;
use tokio::io::AsyncBufRead;

use super::failover::PublishJobs;
use super::publisher::PublishError;
use super::topology::Lane;
use crate::domain::Job;
use crate::domain::job::MAX_JOB_BYTES;

mod lines;

use lines::{parse_line, read_line_capped};

/// Jobs per batch when none is given: one confirm round trip per this many jobs.
pub const DEFAULT_BATCH_SIZE: usize = 1_000;

/// One line that was not enqueued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// 1-based line number in the input.
    pub line: u64,
    /// Why: the job's validation error, or the broker's refusal.
    pub reason: String,
}

/// What happened to the input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EnqueueSummary {
    /// Jobs the broker confirmed.
    pub accepted: u64,
    /// Lines refused, in input order.
    pub rejected: Vec<Rejection>,
    /// Ids of the accepted jobs; filled for a single job only (a file's ids would be huge).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub job_ids: Vec<String>,
}

/// The broker failed mid-way: what was done up to then, and from which line on nothing is
/// known to be enqueued.
#[derive(Debug, thiserror::Error)]
#[error(
    "publishing stopped at line {first_unconfirmed_line}: lines from there on may or may not be \
     enqueued (re-running is safe only for jobs that carry their own `id`)"
)]
pub struct EnqueueAborted {
    /// Accepted and rejected lines before the failure.
    pub summary: EnqueueSummary,
    /// The first line whose fate is unknown.
    pub first_unconfirmed_line: u64,
    /// The broker's error.
    #[source]
    pub error: PublishError,
}

/// Reads NDJSON jobs from `input` and publishes the valid ones to `lane` in batches of
/// `batch_size`, advancing `progress` by bytes read. Blank lines are skipped. Stops only when
/// the broker fails ([`EnqueueAborted`]); unroutable or nacked jobs are rejections.
pub async fn publish_ndjson<R: AsyncBufRead + Unpin>(
    publisher: &impl PublishJobs,
    lane: Lane,
    input: R,
    batch_size: usize,
    progress: &ProgressBar,
) -> Result<EnqueueSummary, EnqueueAborted> {
    publish_ndjson_checked(publisher, lane, input, batch_size, progress, |_| Ok(())).await
}

/// Like [`publish_ndjson`], and every job is first passed to `check` (e.g. the template check
/// of `wxnotify enqueue`): a job it refuses is a rejection with its reason.
pub async fn publish_ndjson_checked<R: AsyncBufRead + Unpin>(
    publisher: &impl PublishJobs,
    lane: Lane,
    mut input: R,
    batch_size: usize,
    progress: &ProgressBar,
    check: impl Fn(&Job) -> Result<(), String>,
) -> Result<EnqueueSummary, EnqueueAborted> {
    let mut summary = EnqueueSummary::default();
    let mut batch = Batch::default();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        let read = read_line_capped(&mut input, &mut buf, MAX_JOB_BYTES).await;
        let line_len = match read {
            Ok(Some(len)) => len,
            Ok(None) => break,
            Err(err) => {
                line_no += 1;
                summary.rejected.push(Rejection {
                    line: line_no,
                    reason: format!("cannot read the input: {err}"),
                });
                break;
            }
        };
        line_no += 1;
        progress.inc(line_len as u64 + 1);
        let parsed = parse_line(&buf, line_len).and_then(|job| match job {
            Some(job) => check(&job).map(|()| Some(job)),
            None => Ok(None),
        });
        match parsed {
            Ok(None) => {}
            Ok(Some(job)) => batch.push(line_no, job),
            Err(reason) => summary.rejected.push(Rejection {
                line: line_no,
                reason,
            }),
        }
        if batch.jobs.len() >= batch_size.max(1) {
            batch.flush(publisher, lane, &mut summary).await?;
            show(progress, &summary);
        }
    }
    batch.flush(publisher, lane, &mut summary).await?;
    summary.rejected.sort_by_key(|r| r.line);
    show(progress, &summary);
    Ok(summary)
}

fn show(progress: &ProgressBar, summary: &EnqueueSummary) {
    progress.set_message(format!(
        "accepted {}, rejected {}",
        summary.accepted,
        summary.rejected.len()
    ));
}

/// Jobs waiting to be published, with their line numbers.
#[derive(Default)]
struct Batch {
    lines: Vec<u64>,
    jobs: Vec<Job>,
}

impl Batch {
    fn push(&mut self, line: u64, job: Job) {
        self.lines.push(line);
        self.jobs.push(job);
    }

    /// Publishes and empties the batch, recording each job's fate in `summary`.
    async fn flush(
        &mut self,
        publisher: &impl PublishJobs,
        lane: Lane,
        summary: &mut EnqueueSummary,
    ) -> Result<(), EnqueueAborted> {
        if self.jobs.is_empty() {
            return Ok(());
        }
        let results = publisher.publish_batch(&self.jobs, lane).await;
        let mut broker_error = None;
        for (line, result) in self.lines.iter().zip(results) {
            match result {
                Ok(()) => summary.accepted += 1,
                Err(err @ (PublishError::Broker(_) | PublishError::NoBroker { .. })) => {
                    broker_error.get_or_insert((*line, err));
                }
                Err(err) => summary.rejected.push(Rejection {
                    line: *line,
                    reason: err.to_string(),
                }),
            }
        }
        self.lines.clear();
        self.jobs.clear();
        match broker_error {
            None => Ok(()),
            Some((line, error)) => Err(EnqueueAborted {
                summary: std::mem::take(summary),
                first_unconfirmed_line: line,
                error,
            }),
        }
    }
}
