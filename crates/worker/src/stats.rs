//! Counters of what a worker did, for the demo's and the benchmark's summaries (Prometheus
//! metrics are emitted beside them through the `metrics` facade).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use wxnotify_services::ledger::outcome::Outcome;

/// Live counters; shared by every task of a worker.
pub struct WorkerStats {
    sent: AtomicU64,
    duplicate: AtomicU64,
    retried: AtomicU64,
    paused: AtomicU64,
    busy: AtomicU64,
    held: AtomicU64,
    cancelled: AtomicU64,
    dead: Mutex<BTreeMap<String, u64>>,
    /// WeChat call latency, microseconds.
    send_latency: Mutex<Histogram<u64>>,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            sent: AtomicU64::new(0),
            duplicate: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            paused: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            held: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            dead: Mutex::default(),
            send_latency: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
            ),
        }
    }
}

/// A copy of the counters at one instant.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StatsSnapshot {
    /// Accepted by WeChat.
    pub sent: u64,
    /// Arrived again after being sent or dead, or WeChat answered that an identical message
    /// went out within 60 seconds (40241); not sent again.
    pub duplicate: u64,
    /// Transient failures scheduled for another attempt.
    pub retried: u64,
    /// Deferred because the app was paused (quota used up, account blocked, by hand).
    pub paused: u64,
    /// Waited because another delivery of the same job id held a live claim.
    pub busy: u64,
    /// Held by WeChat for its content review (40252); the review reconciliation ends them.
    pub held: u64,
    /// Jobs of cancelled campaigns, recorded and not sent.
    pub cancelled: u64,
    /// Dead letters by reason.
    pub dead: BTreeMap<String, u64>,
    /// WeChat call latency percentiles (p50, p90, p99, max), milliseconds.
    pub send_latency_ms: [f64; 4],
}

impl StatsSnapshot {
    /// Jobs this worker is done with: sent, duplicate, dead, or held for WeChat's review.
    pub fn finished(&self) -> u64 {
        self.sent + self.duplicate + self.held + self.dead.values().sum::<u64>()
    }
}

impl WorkerStats {
    /// Counts one settled outcome of a job of `app` (the metric's `app` label: name a
    /// configured app, `unconfigured` otherwise, so the labels stay bounded).
    pub fn count(&self, app: &str, outcome: &Outcome) {
        let counter = match outcome {
            Outcome::Sent { .. } => &self.sent,
            Outcome::Duplicate | Outcome::RepeatedContent { .. } => &self.duplicate,
            Outcome::HeldForReview { .. } => &self.held,
            Outcome::Retry { .. } => &self.retried,
            Outcome::Paused { .. } => &self.paused,
            Outcome::Busy { .. } => &self.busy,
            Outcome::Cancelled => &self.cancelled,
            Outcome::Dead { reason, .. } => {
                *self
                    .dead
                    .lock()
                    .expect("stats lock")
                    .entry(reason.to_string())
                    .or_default() += 1;
                metrics::counter!("wxnotify_jobs_total", "app" => app.to_owned(), "outcome" => "dead", "reason" => reason.as_str())
                    .increment(1);
                return;
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("wxnotify_jobs_total", "app" => app.to_owned(), "outcome" => outcome.label())
            .increment(1);
    }

    /// Records the duration of one WeChat send call.
    pub fn record_send_latency(&self, d: Duration) {
        let micros = (d.as_micros() as u64).clamp(1, 60_000_000);
        let _ = self.send_latency.lock().expect("stats lock").record(micros);
        metrics::histogram!("wxnotify_send_seconds").record(d.as_secs_f64());
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let h = self.send_latency.lock().expect("stats lock");
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        StatsSnapshot {
            sent: self.sent.load(Ordering::Relaxed),
            duplicate: self.duplicate.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            paused: self.paused.load(Ordering::Relaxed),
            busy: self.busy.load(Ordering::Relaxed),
            held: self.held.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            dead: self.dead.lock().expect("stats lock").clone(),
            send_latency_ms: [ms(0.5), ms(0.9), ms(0.99), h.max() as f64 / 1000.0],
        }
    }
}
