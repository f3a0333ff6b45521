//! Publishing a stream of NDJSON jobs: every line is parsed on its own (a bad line never stops
//! the good ones), good jobs are published in batches with confirms, and the summary names
//! each refused line and why.

use indicatif::ProgressBar;
use serde::Serialize;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::publisher::{PublishError, Publisher};
use super::topology::Lane;
use crate::domain::Job;
use crate::domain::job::{JobError, MAX_JOB_BYTES};

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
    publisher: &Publisher,
    lane: Lane,
    input: R,
    batch_size: usize,
    progress: &ProgressBar,
) -> Result<EnqueueSummary, EnqueueAborted> {
    publish_ndjson_checked(publisher, lane, input, batch_size, progress, None).await
}

/// Like [`publish_ndjson`], and every job is first checked against its template in `catalog`
/// (`crate::templates::check_job`): a refused job is a rejection naming the keys at fault.
pub async fn publish_ndjson_checked<R: AsyncBufRead + Unpin>(
    publisher: &Publisher,
    lane: Lane,
    mut input: R,
    batch_size: usize,
    progress: &ProgressBar,
    catalog: Option<&crate::templates::Catalog>,
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
        let parsed = parse_line(&buf, line_len).and_then(|job| match (job, catalog) {
            (Some(job), Some(catalog)) => crate::templates::check_job(catalog, &job)
                .map(|_| Some(job))
                .map_err(|refusal| refusal.to_string()),
            (job, _) => Ok(job),
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

/// One line as a job: `Ok(None)` for a blank line, `Err(reason)` for a bad one.
fn parse_line(buf: &[u8], line_len: usize) -> Result<Option<Job>, String> {
    if line_len > MAX_JOB_BYTES {
        return Err(JobError::TooLarge(line_len).to_string());
    }
    let line = buf.strip_suffix(b"\r").unwrap_or(buf);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    Job::from_json(line).map(Some).map_err(|e| e.to_string())
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
        publisher: &Publisher,
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
                Err(PublishError::Broker(err)) => {
                    broker_error.get_or_insert((*line, PublishError::Broker(err)));
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

/// Reads one line into `buf` (without its `\n`), keeping at most `cap + 1` bytes of it so a
/// huge line cannot exhaust memory. Returns the line's full length, or `None` at the end.
async fn read_line_capped<R: AsyncBufRead + Unpin>(
    input: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<Option<usize>> {
    buf.clear();
    let mut total = 0usize;
    let mut started = false;
    loop {
        let chunk = input.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(started.then_some(total));
        }
        started = true;
        let newline = chunk.iter().position(|b| *b == b'\n');
        let part = &chunk[..newline.unwrap_or(chunk.len())];
        let room = (cap + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        total += part.len();
        let consumed = part.len() + usize::from(newline.is_some());
        input.consume(consumed);
        if newline.is_some() {
            return Ok(Some(total));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], cap: usize) -> Vec<(usize, Vec<u8>)> {
        // A tiny buffer, so lines span several reads.
        let mut reader = tokio::io::BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(len) = read_line_capped(&mut reader, &mut buf, cap).await.unwrap() {
            out.push((len, buf.clone()));
        }
        out
    }

    #[tokio::test]
    async fn lines_are_split_and_long_ones_capped_but_measured() {
        let out = lines(b"ab\n\ncdefghijkl\nlast", 5).await;
        assert_eq!(
            out,
            vec![
                (2, b"ab".to_vec()),
                (0, vec![]),
                (10, b"cdefgh".to_vec()),
                (4, b"last".to_vec()),
            ]
        );
        assert!(lines(b"", 5).await.is_empty());
        assert_eq!(lines(b"x\n", 5).await, vec![(1, b"x".to_vec())]);
    }

    #[test]
    fn blank_lines_are_skipped_and_bad_ones_explained() {
        assert!(matches!(parse_line(b"  \r", 3), Ok(None)));
        let err = parse_line(b"{", 1).unwrap_err();
        assert!(err.contains("not a valid job"), "{err}");
        let err = parse_line(b"", MAX_JOB_BYTES + 10).unwrap_err();
        assert!(err.contains(&format!("{}", MAX_JOB_BYTES + 10)), "{err}");
    }
}

/// Property tests of the NDJSON reader: any bytes, in any chunking, give lines or clear
/// rejections, never a panic, and no line buffer past the cap.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Reads every line of `input` (delivered `chunk` bytes at a time) like `publish_ndjson`.
    fn read_all(input: &[u8], chunk: usize) -> Vec<Result<Option<Job>, String>> {
        let reader = tokio::io::BufReader::with_capacity(chunk.max(1), input);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let mut reader = reader;
            let mut buf = Vec::new();
            let mut out = Vec::new();
            while let Some(len) = read_line_capped(&mut reader, &mut buf, MAX_JOB_BYTES)
                .await
                .expect("reading a slice cannot fail")
            {
                assert!(
                    buf.len() <= MAX_JOB_BYTES + 1,
                    "buffer grew to {}",
                    buf.len()
                );
                out.push(parse_line(&buf, len));
            }
            out
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_give_lines_or_rejections(
            input in proptest::collection::vec(any::<u8>(), 0..4096),
            chunk in 1usize..64,
        ) {
            let lines = read_all(&input, chunk);
            let newlines = input.iter().filter(|b| **b == b'\n').count();
            prop_assert!(lines.len() == newlines || lines.len() == newlines + 1);
            for line in lines {
                if let Err(reason) = line {
                    prop_assert!(!reason.is_empty());
                }
            }
        }

        #[test]
        fn an_overlong_line_is_rejected_and_the_next_one_still_read(
            extra in 1usize..20_000,
            chunk in 1usize..8192,
        ) {
            let mut input = vec![b'x'; MAX_JOB_BYTES + extra];
            input.extend_from_slice(b"\n\n{}\n");
            let lines = read_all(&input, chunk);
            prop_assert_eq!(lines.len(), 3);
            prop_assert!(lines[0].as_ref().unwrap_err().contains("at most"));
            prop_assert!(matches!(lines[1], Ok(None)));
            prop_assert!(lines[2].is_err());
        }
    }
}
