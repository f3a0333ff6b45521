//! The sending part of `wxnotify-sandbox bench --scenario campaign`: a snapshotted campaign sent by a
//! `wxnotify worker` child process (its dispatcher drives the campaign) against the fake WeChat
//! at 100 ms latency and an app limit of 2,000/s, while the bench publishes a steady 100
//! transactional jobs/s. Phases, in order:
//!
//! 1. **baseline**: the transactional jobs alone, the campaign still a draft;
//! 2. **campaign**: the campaign started; after a ramp-up, a measured window of
//!    `--send-seconds`: the campaign's send rate as a share of what the transactional lane
//!    leaves of the limit, and the transactional jobs' publish → WeChat answer p99 beside the
//!    baseline's;
//! 3. **pause** → time until the fake sees no new campaign send; **resume**; **cancel** → time
//!    until no new campaign send, then the campaign's jobs left on the lane (and in the
//!    paused jobs' retry tier) are waited for and counted `cancelled`.
//!
//! The worker's peak RSS (it runs the dispatcher too) comes from `/proc`. Times come from the
//! fake's record of accepted sends (Unix milliseconds; the fake answers right after it records
//! the send), read once at the end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::mock_wechat::{self, MockWechat};
use crate::scratch::Scratch;
use wxnotify_core::domain::{Job, OpenId, Recipient, TemplateData};
use wxnotify_core::queue::Lane;
use wxnotify_services::campaigns::model::Action;
use wxnotify_services::campaigns::store;

/// Transactional jobs published per second in every phase.
pub const TRANSACTIONAL_PER_SECOND: u64 = 100;
/// The fake WeChat's latency in this scenario.
pub const LATENCY: Duration = Duration::from_millis(100);
/// The app's rate limit in this scenario.
pub const RATE: u32 = 2_000;
/// Seconds after the first campaign send before the measured window opens.
const RAMP_UP_SECONDS: u64 = 3;
/// Seconds the pause and the resume are each watched.
const OBSERVE_SECONDS: u64 = 5;

/// How long each phase lasts.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// Seconds of transactional jobs alone.
    pub baseline_seconds: u64,
    /// Seconds of the measured campaign window.
    pub send_seconds: u64,
}

impl Phases {
    /// How many sends the fake must remember for the whole run (with a margin).
    pub fn sends_to_record(&self) -> usize {
        let seconds = self.baseline_seconds + self.send_seconds + 30;
        (seconds * (u64::from(RATE) + TRANSACTIONAL_PER_SECOND)) as usize
    }
}

/// The sending figures.
#[derive(Debug, Clone, Serialize)]
pub struct SendFigures {
    /// The app's limit, sends/s.
    pub rate_limit: u32,
    /// The fake's latency, ms.
    pub latency_ms: u64,
    /// Seconds of the measured campaign window.
    pub window_seconds: f64,
    /// Campaign sends per second in the window.
    pub campaign_per_second: f64,
    /// Transactional sends per second in the window.
    pub transactional_per_second: f64,
    /// What the transactional lane leaves of the limit (limit − transactional rate), sends/s.
    pub left_by_transactional: f64,
    /// Campaign rate as a percentage of that.
    pub campaign_percent_of_left: f64,
    /// Transactional jobs published in the baseline phase (after its first second).
    pub baseline_jobs: usize,
    /// Their publish → WeChat answer p99, ms (jobs that were sent).
    pub baseline_p99_ms: f64,
    /// Transactional jobs published during the measured window.
    pub during_jobs: usize,
    /// Their publish → WeChat answer p99, ms.
    pub during_p99_ms: f64,
    /// During − baseline p99, ms.
    pub p99_increase_ms: f64,
    /// Transactional jobs of the two phases never sent (should be 0).
    pub transactional_unsent: usize,
    /// Seconds from the pause until the last campaign send the fake saw while paused.
    pub pause_seconds: f64,
    /// Campaign sends while paused, after the first 2 s (should be 0).
    pub sends_paused_after_2s: usize,
    /// Seconds from the resume until the first campaign send after it (none: -1).
    pub resume_seconds: f64,
    /// Seconds from the cancel until the last campaign send after it.
    pub cancel_seconds: f64,
    /// Campaign jobs dispatched in all (the cursor).
    pub dispatched: i64,
    /// Of them, sent.
    pub sent: i64,
    /// Recorded `cancelled` (the jobs left on the lane and in the pause's retry tier).
    pub cancelled: i64,
    /// Dead.
    pub dead: i64,
    /// Dispatched and in no final state when the bench stopped waiting (should be 0).
    pub unsettled: i64,
    /// Campaign jobs the fake accepted more than once (should be 0).
    pub sent_twice: usize,
    /// The worker's (with its dispatcher) peak resident set, MiB.
    pub worker_peak_rss_mib: f64,
}

/// Runs the sending phases on `campaign` (a snapshotted draft in `scratch`).
pub async fn measure(
    scratch: &Scratch,
    mock: &MockWechat,
    campaign: Uuid,
    people: u64,
    phases: Phases,
) -> anyhow::Result<SendFigures> {
    let mut worker = spawn_worker(scratch)?;
    let pid = worker.id().context("the worker has a pid")?;
    let result = run_phases(scratch, mock, campaign, people, phases, &mut worker).await;
    let rss = super::peak_rss_mib(pid).unwrap_or(0.0);
    super::terminate(&mut worker).await;
    let mut figures = result?;
    figures.worker_peak_rss_mib = rss;
    Ok(figures)
}

async fn run_phases(
    scratch: &Scratch,
    mock: &MockWechat,
    campaign: Uuid,
    people: u64,
    phases: Phases,
    worker: &mut tokio::process::Child,
) -> anyhow::Result<SendFigures> {
    // The worker is up when a first transactional job comes through.
    let published: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let stop = CancellationToken::new();
    let publisher = tokio::spawn(publish_steadily(
        scratch.publisher.clone(),
        people,
        published.clone(),
        stop.clone(),
    ));
    let ready = wait_for(worker, Duration::from_secs(60), || {
        mock.stats().sends_accepted > 0
    })
    .await;
    let outcome = async {
        ready.context("the worker sent nothing within 60 s")?;
        eprintln!(
            "bench campaign: baseline, {TRANSACTIONAL_PER_SECOND} transactional jobs/s for {} s",
            phases.baseline_seconds
        );
        let baseline_from = now_ms();
        tokio::time::sleep(Duration::from_secs(phases.baseline_seconds)).await;
        let baseline_to = now_ms();
        let started_at = now_ms();
        store::apply(&scratch.pool, campaign, Action::Start, "bench").await?;
        let before = mock.stats().sends_accepted;
        // The campaign's first sends: more than the transactional lane makes on its own.
        wait_for(worker, Duration::from_secs(60), || {
            mock.stats().sends_accepted > before + 500
        })
        .await
        .context("the campaign did not start sending within 60 s")?;
        tokio::time::sleep(Duration::from_secs(RAMP_UP_SECONDS)).await;
        eprintln!(
            "bench campaign: sending, measured for {} s",
            phases.send_seconds
        );
        let window_from = now_ms();
        tokio::time::sleep(Duration::from_secs(phases.send_seconds)).await;
        let window_to = now_ms();
        eprintln!("bench campaign: pause, resume, cancel");
        store::apply(&scratch.pool, campaign, Action::Pause, "bench").await?;
        let paused_at = now_ms();
        tokio::time::sleep(Duration::from_secs(OBSERVE_SECONDS)).await;
        store::apply(&scratch.pool, campaign, Action::Resume, "bench").await?;
        let resumed_at = now_ms();
        tokio::time::sleep(Duration::from_secs(OBSERVE_SECONDS)).await;
        store::apply(&scratch.pool, campaign, Action::Cancel, "bench").await?;
        let cancelled_at = now_ms();
        // Jobs that waited out the pause in a retry tier come back and are recorded cancelled.
        let deadline = Duration::from_secs(wxnotify_worker::gate::PAUSED_JOB_WAIT.as_secs() + 60);
        let settle_started = std::time::Instant::now();
        loop {
            let (dispatched, counts) = ledger_counts(scratch, campaign).await?;
            let finished: i64 = counts.values().sum();
            if finished >= dispatched || settle_started.elapsed() > deadline {
                break;
            }
            if let Some(status) = worker.try_wait()? {
                anyhow::bail!("the worker exited early: {status}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        anyhow::Ok(Marks {
            baseline: (baseline_from + 1000, baseline_to),
            started_at,
            window: (window_from, window_to),
            paused_at,
            resumed_at,
            cancelled_at,
        })
    }
    .await;
    stop.cancel();
    publisher.await.ok();
    let marks = outcome?;
    let (dispatched, counts) = ledger_counts(scratch, campaign).await?;
    let count = |s: &str| counts.get(s).copied().unwrap_or(0);
    let published = published.lock().expect("published lock").clone();
    Ok(figures(
        &mock.sends(),
        &published,
        &marks,
        Settled {
            dispatched,
            sent: count("sent"),
            cancelled: count("cancelled"),
            dead: count("dead"),
        },
    ))
}

/// When each phase happened, Unix ms.
struct Marks {
    baseline: (u64, u64),
    #[allow(dead_code)]
    started_at: u64,
    window: (u64, u64),
    paused_at: u64,
    resumed_at: u64,
    cancelled_at: u64,
}

/// The campaign's jobs by final state, from the ledger.
struct Settled {
    dispatched: i64,
    sent: i64,
    cancelled: i64,
    dead: i64,
}

/// Works the figures out of the fake's record of sends and the publish times.
fn figures(
    sends: &[mock_wechat::AcceptedSend],
    published: &HashMap<String, u64>,
    m: &Marks,
    settled: Settled,
) -> SendFigures {
    let mut answered: HashMap<&str, u64> = HashMap::new();
    let mut campaign_sends: Vec<u64> = Vec::new();
    let mut campaign_ids: HashMap<&str, usize> = HashMap::new();
    for s in sends {
        let Some(id) = s.client_msg_id.as_deref() else {
            continue;
        };
        if published.contains_key(id) {
            answered.entry(id).or_insert(s.accepted_at_ms);
        } else {
            campaign_sends.push(s.accepted_at_ms);
            *campaign_ids.entry(id).or_default() += 1;
        }
    }
    let in_range = |t: u64, (from, to): (u64, u64)| t >= from && t < to;
    let window_s = (m.window.1 - m.window.0) as f64 / 1000.0;
    let campaign_in_window = campaign_sends
        .iter()
        .filter(|t| in_range(**t, m.window))
        .count();
    let tx_in_window = answered
        .values()
        .filter(|t| in_range(**t, m.window))
        .count();
    let campaign_per_second = campaign_in_window as f64 / window_s.max(0.001);
    let transactional_per_second = tx_in_window as f64 / window_s.max(0.001);
    let left = f64::from(RATE) - transactional_per_second;
    let latencies = |range: (u64, u64)| {
        let mut jobs = 0;
        let mut unsent = 0;
        let mut ms: Vec<u64> = Vec::new();
        for (id, at) in published {
            if !in_range(*at, range) {
                continue;
            }
            jobs += 1;
            match answered.get(id.as_str()) {
                Some(done) => ms.push(done.saturating_sub(*at)),
                None => unsent += 1,
            }
        }
        (jobs, unsent, p99(&mut ms))
    };
    let (baseline_jobs, baseline_unsent, baseline_p99_ms) = latencies(m.baseline);
    let (during_jobs, during_unsent, during_p99_ms) = latencies(m.window);
    let last_in = |from: u64, to: u64| {
        campaign_sends
            .iter()
            .filter(|t| **t >= from && **t < to)
            .max()
            .map_or(0.0, |t| (t - from) as f64 / 1000.0)
    };
    let pause_seconds = last_in(m.paused_at, m.resumed_at);
    let sends_paused_after_2s = campaign_sends
        .iter()
        .filter(|t| **t >= m.paused_at + 2000 && **t < m.resumed_at)
        .count();
    let resume_seconds = campaign_sends
        .iter()
        .filter(|t| **t >= m.resumed_at)
        .min()
        .map_or(-1.0, |t| (t - m.resumed_at) as f64 / 1000.0);
    let cancel_seconds = last_in(m.cancelled_at, u64::MAX);
    SendFigures {
        rate_limit: RATE,
        latency_ms: LATENCY.as_millis() as u64,
        window_seconds: window_s,
        campaign_per_second,
        transactional_per_second,
        left_by_transactional: left,
        campaign_percent_of_left: campaign_per_second / left * 100.0,
        baseline_jobs,
        baseline_p99_ms,
        during_jobs,
        during_p99_ms,
        p99_increase_ms: during_p99_ms - baseline_p99_ms,
        transactional_unsent: baseline_unsent + during_unsent,
        pause_seconds,
        sends_paused_after_2s,
        resume_seconds,
        cancel_seconds,
        dispatched: settled.dispatched,
        sent: settled.sent,
        cancelled: settled.cancelled,
        dead: settled.dead,
        unsettled: settled.dispatched - settled.sent - settled.cancelled - settled.dead,
        sent_twice: campaign_ids.values().filter(|n| **n > 1).count(),
        worker_peak_rss_mib: 0.0,
    }
}

/// The 99th percentile of `ms` (0 when empty).
fn p99(ms: &mut [u64]) -> f64 {
    if ms.is_empty() {
        return 0.0;
    }
    ms.sort_unstable();
    let i = ((ms.len() as f64 * 0.99).ceil() as usize).saturating_sub(1);
    ms[i.min(ms.len() - 1)] as f64
}

/// The campaign's cursor and its jobs by final state in the ledger.
async fn ledger_counts(
    scratch: &Scratch,
    campaign: Uuid,
) -> anyhow::Result<(i64, HashMap<String, i64>)> {
    let dispatched: i64 = sqlx::query_scalar("SELECT cursor FROM campaigns WHERE id = $1")
        .bind(campaign)
        .fetch_one(&scratch.pool)
        .await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state, count(*) FROM deliveries
         WHERE campaign_id = $1 AND state IN ('sent', 'dead', 'cancelled') GROUP BY state",
    )
    .bind(campaign)
    .fetch_all(&scratch.pool)
    .await?;
    Ok((dispatched, rows.into_iter().collect()))
}

/// Publishes [`TRANSACTIONAL_PER_SECOND`] jobs a second until `stop`, noting each job's
/// publish time (Unix ms, just before the publish).
async fn publish_steadily(
    publisher: wxnotify_core::queue::Publisher,
    people: u64,
    published: Arc<Mutex<HashMap<String, u64>>>,
    stop: CancellationToken,
) {
    let mut tick =
        tokio::time::interval(Duration::from_micros(1_000_000 / TRANSACTIONAL_PER_SECOND));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let data = [("thing1", "订单已发货"), ("time2", "2026-11-25 10:00")];
    let data = TemplateData::from_pairs(&data).expect("valid");
    let mut k: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // People 10m+1 have a unionid and follow the OA in the fake's default population.
        let person = (k * 10 + 1) % people.max(2);
        k += 1;
        let job = Job::new(
            Recipient::MpOpenid(OpenId::parse(mock_wechat::mp_openid(person)).expect("valid")),
            "TPL_ORDER_SHIPPED".parse().expect("valid"),
            data.clone(),
        );
        let at = now_ms();
        let publisher = publisher.clone();
        let published = published.clone();
        // Each publish on its own task, so a slow confirm never delays the next one.
        tokio::spawn(async move {
            let ok = publisher
                .publish_batch(std::slice::from_ref(&job), Lane::Jobs)
                .await
                .into_iter()
                .all(|r| r.is_ok());
            if ok {
                published
                    .lock()
                    .expect("published lock")
                    .insert(job.id.as_str().to_owned(), at);
            }
        });
    }
}

/// Waits until `done` or `limit`; an error when the worker exits or time runs out.
async fn wait_for(
    worker: &mut tokio::process::Child,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        if let Some(status) = worker.try_wait()? {
            anyhow::bail!("the worker exited early: {status}");
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `wxnotify worker` on both lanes with its campaign dispatcher (this same binary).
fn spawn_worker(scratch: &Scratch) -> anyhow::Result<tokio::process::Child> {
    Ok(super::worker_command(&scratch.settings, 512, None)?.spawn()?)
}

#[cfg(test)]
mod tests {
    use super::p99;

    #[test]
    fn the_p99_is_the_value_below_which_99_percent_lie() {
        let mut ms: Vec<u64> = (1..=200).collect();
        assert_eq!(p99(&mut ms), 198.0);
        assert_eq!(p99(&mut []), 0.0);
    }
}
