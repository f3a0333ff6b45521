//! `wxnotify-sandbox bench --scenario shared-rate`: one app's rate shared by three worker processes.
//!
//! The fake WeChat answers after 100 ms, the app is limited to 2,000 sends/s, and three
//! `wxnotify worker` children lease their permits from the one `rate_limits` row:
//!
//! - **churn**: 30,000 jobs, all three consuming; when a third of the jobs are sent one worker
//!   is killed with SIGKILL and a fourth is started. The rate reached as a share of the limit,
//!   and the busiest one-second window (after the first) against the limit;
//! - **one busy**: 30,000 jobs on the transactional lane, one worker consuming it and two on the
//!   bulk lane, which has no jobs: the idle two must take no share of the rate;
//! - the limiter's cost in both: lease statements per second (the `rate_limits.leases` counter,
//!   one per `rate_lease()` call that committed) and, for context, every transaction committed
//!   on the scratch database per second (`pg_stat_database.xact_commit`: the ledger's too);
//! - the workers' CPU per job, summed over the children from `/proc` (the killed one read just
//!   before the kill).

use std::time::{Duration, Instant};

use anyhow::Context;

use super::{busiest_window, cpu_seconds, publish_backlog, terminate};
use crate::mock_wechat::{MockConfig, MockWechat};
use crate::scratch::{Scratch, seed_mapping};
use wxnotify_core::config::Settings;

/// Jobs per phase.
const JOBS: u64 = 30_000;
/// The app's limit.
const RATE: u32 = 2_000;
/// The fake's answer time.
const LATENCY: Duration = Duration::from_millis(100);

/// The figures of one phase.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Phase {
    /// Jobs drained.
    pub jobs: u64,
    /// Seconds from the first to the last accepted send.
    pub drain_seconds: f64,
    /// Sends per second as a share of the limit, percent.
    pub percent_of_limit: f64,
    /// Sends in the busiest one-second window after the first second.
    pub max_window: u64,
    /// That window against the limit, percent (+1.5 = 1.5 % over).
    pub max_window_over_limit_percent: f64,
    /// Lease statements (`rate_lease()` calls) per second of the drain, all workers together.
    pub lease_statements_per_second: f64,
    /// Permits one lease statement brought, on average.
    pub permits_per_lease: f64,
    /// Transactions committed on the scratch database per second (the ledger's included).
    pub xact_commits_per_second: f64,
    /// CPU of all the worker children per job, microseconds.
    pub worker_cpu_us_per_job: f64,
    /// Jobs WeChat accepted more than once.
    pub duplicate_sends: u64,
}

/// The figures of one run (or the medians of several: `summary`).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SharedRateResult {
    /// Always `shared_rate`.
    pub scenario: &'static str,
    /// The app's limit, sends per second.
    pub rate_limit: u32,
    /// Three workers consuming, one killed and one started mid-run.
    pub churn: Phase,
    /// Three workers, only one of which receives jobs.
    pub one_busy: Phase,
    /// Whether this is the median of several runs (the busiest windows: the worst run).
    pub summary: bool,
}

/// Runs the scenario `runs` times; prints each run and, with several, the medians.
pub async fn run(base: &Settings, runs: u32, prefetch: u16, json: bool) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for _ in 0..runs {
        let churn = phase(base, prefetch, true).await?;
        let one_busy = phase(base, prefetch, false).await?;
        let r = SharedRateResult {
            scenario: "shared_rate",
            rate_limit: RATE,
            churn,
            one_busy,
            summary: false,
        };
        if !json {
            print(&r);
        }
        results.push(r);
    }
    if runs > 1 {
        let s = SharedRateResult {
            churn: median_phase(results.iter().map(|r| r.churn).collect()),
            one_busy: median_phase(results.iter().map(|r| r.one_busy).collect()),
            summary: true,
            ..results[0]
        };
        if !json {
            println!("median of {runs} runs (busiest windows: the worst):");
            print(&s);
        }
        results.push(s);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(())
}

/// One phase on a scratch database and queue prefix of its own.
async fn phase(base: &Settings, prefetch: u16, churn: bool) -> anyhow::Result<Phase> {
    let cfg = MockConfig {
        followers: JOBS,
        no_unionid_every: 0,
        unsubscribed_every: 0,
        latency: LATENCY,
        max_recorded_sends: JOBS as usize * 2,
        ..MockConfig::default()
    };
    let mock = MockWechat::start(cfg.clone()).await?;
    let scratch = Scratch::create(base, "bench", &mock, RATE).await?;
    let result = measure(&scratch, &mock, &cfg, prefetch, churn).await;
    scratch.remove().await;
    mock.shutdown().await;
    result
}

async fn measure(
    scratch: &Scratch,
    mock: &MockWechat,
    cfg: &MockConfig,
    prefetch: u16,
    churn: bool,
) -> anyhow::Result<Phase> {
    let name = if churn { "churn" } else { "one busy" };
    eprintln!("bench shared-rate ({name}): seeding {JOBS} people, publishing {JOBS} jobs");
    seed_mapping(&scratch.pool, cfg.followers, cfg).await?;
    publish_backlog(scratch, JOBS, cfg.followers).await?;
    // Churn: three on the jobs lane. One busy: one on the jobs lane, two on the empty bulk lane.
    let lanes = if churn {
        ["jobs", "jobs", "jobs"]
    } else {
        ["jobs", "bulk", "bulk"]
    };
    let mut workers = Vec::new();
    for lane in lanes {
        workers.push(spawn(&scratch.settings, prefetch, lane)?);
    }
    let deadline = Instant::now() + Duration::from_secs(60 + JOBS / 500);
    while mock.stats().sends_accepted == 0 {
        anyhow::ensure!(Instant::now() < deadline, "the workers sent nothing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (commits_at_start, leases_at_start) = db_counters(scratch).await?;
    let mut cpu = -workers
        .iter()
        .map(|w| cpu_seconds(w.id().unwrap_or(0)))
        .sum::<anyhow::Result<f64>>()?;
    let mut churned = !churn;
    loop {
        let sent = mock.stats().sends_accepted;
        if sent >= JOBS {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the workers did not drain {JOBS} jobs in time ({sent} sent)"
        );
        if !churned && sent >= JOBS / 3 {
            churned = true;
            let victim = &mut workers[0];
            let pid = victim.id().context("the worker has a pid")?;
            cpu += cpu_seconds(pid)?;
            victim.start_kill()?;
            victim.wait().await?;
            workers.remove(0);
            let newcomer = spawn(&scratch.settings, prefetch, "jobs")?;
            cpu -= cpu_seconds(newcomer.id().unwrap_or(0)).unwrap_or(0.0);
            workers.push(newcomer);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for w in &workers {
        cpu += cpu_seconds(w.id().context("the worker has a pid")?)?;
    }
    let (commits, leases) = db_counters(scratch).await?;
    let permits: i64 =
        sqlx::query_scalar("SELECT COALESCE(sum(permits), 0)::bigint FROM rate_limits")
            .fetch_one(&scratch.pool)
            .await?;
    for w in &mut workers {
        terminate(w).await;
    }
    let sends = mock.sends();
    let mut times: Vec<u64> = sends.iter().map(|s| s.accepted_at_ms).collect();
    times.sort_unstable();
    let drain_seconds =
        (times.last().copied().unwrap_or(0) - times.first().copied().unwrap_or(0)) as f64 / 1000.0;
    let mut per_job: std::collections::HashMap<Option<String>, u64> = Default::default();
    for send in sends {
        *per_job.entry(send.client_msg_id).or_default() += 1;
    }
    let max_window = busiest_window(&times);
    let seconds = drain_seconds.max(0.001);
    Ok(Phase {
        jobs: JOBS,
        drain_seconds,
        percent_of_limit: JOBS as f64 / seconds / f64::from(RATE) * 100.0,
        max_window,
        max_window_over_limit_percent: (max_window as f64 / f64::from(RATE) - 1.0) * 100.0,
        lease_statements_per_second: (leases - leases_at_start) as f64 / seconds,
        permits_per_lease: permits as f64 / leases.max(1) as f64,
        xact_commits_per_second: (commits - commits_at_start) as f64 / seconds,
        worker_cpu_us_per_job: cpu * 1e6 / JOBS as f64,
        duplicate_sends: per_job.values().filter(|n| **n > 1).count() as u64,
    })
}

/// Transactions committed on the scratch database, and lease statements so far.
async fn db_counters(scratch: &Scratch) -> anyhow::Result<(i64, i64)> {
    let commits: i64 =
        sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
            .bind(&scratch.db_name)
            .fetch_one(&scratch.pool)
            .await?;
    let leases: i64 =
        sqlx::query_scalar("SELECT COALESCE(sum(leases), 0)::bigint FROM rate_limits")
            .fetch_one(&scratch.pool)
            .await?;
    Ok((commits, leases))
}

fn spawn(settings: &Settings, prefetch: u16, lane: &str) -> anyhow::Result<tokio::process::Child> {
    Ok(super::worker_command(settings, prefetch, Some(lane))?.spawn()?)
}

/// The median of each figure; the busiest window of the worst run.
fn median_phase(phases: Vec<Phase>) -> Phase {
    use super::median;
    let of = |f: fn(&Phase) -> f64| median(phases.iter().map(f).collect());
    let max_window = phases.iter().map(|p| p.max_window).max().unwrap_or(0);
    Phase {
        jobs: phases[0].jobs,
        drain_seconds: of(|p| p.drain_seconds),
        percent_of_limit: of(|p| p.percent_of_limit),
        max_window,
        max_window_over_limit_percent: (max_window as f64 / f64::from(RATE) - 1.0) * 100.0,
        lease_statements_per_second: of(|p| p.lease_statements_per_second),
        permits_per_lease: of(|p| p.permits_per_lease),
        xact_commits_per_second: of(|p| p.xact_commits_per_second),
        worker_cpu_us_per_job: of(|p| p.worker_cpu_us_per_job),
        duplicate_sends: phases.iter().map(|p| p.duplicate_sends).max().unwrap_or(0),
    }
}

fn print(r: &SharedRateResult) {
    println!(
        "SharedRate: {} jobs per phase, limit {}/s",
        r.churn.jobs, r.rate_limit
    );
    for (name, p) in [
        (
            "three workers, one killed (SIGKILL) and one started mid-run",
            &r.churn,
        ),
        ("three workers, one with jobs", &r.one_busy),
    ] {
        println!("  {name}:");
        println!(
            "    rate           {:.1}% of the limit ({:.1} s); busiest 1-s window {} ({:+.1}%)",
            p.percent_of_limit, p.drain_seconds, p.max_window, p.max_window_over_limit_percent
        );
        println!(
            "    limiter cost   {:.0} lease statements/s ({:.1} permits each); {:.0} commits/s on the database in all",
            p.lease_statements_per_second, p.permits_per_lease, p.xact_commits_per_second
        );
        println!(
            "    worker CPU     {:.1} µs per job (all workers); {} jobs sent twice",
            p.worker_cpu_us_per_job, p.duplicate_sends
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(cpu: f64, window: u64) -> Phase {
        Phase {
            jobs: 10,
            drain_seconds: 1.0,
            percent_of_limit: cpu,
            max_window: window,
            max_window_over_limit_percent: 0.0,
            lease_statements_per_second: 1.0,
            permits_per_lease: 1.0,
            xact_commits_per_second: 1.0,
            worker_cpu_us_per_job: cpu,
            duplicate_sends: 0,
        }
    }

    #[test]
    fn the_median_phase_takes_the_worst_window() {
        let m = median_phase(vec![
            phase(90.0, 2010),
            phase(99.0, 2050),
            phase(95.0, 2000),
        ]);
        assert_eq!(m.worker_cpu_us_per_job, 95.0);
        assert_eq!(m.max_window, 2050);
        assert!((m.max_window_over_limit_percent - 2.5).abs() < 1e-9);
    }
}
