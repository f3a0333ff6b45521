//! `wxnotify-sandbox bench`: end-to-end figures of the delivery pipeline on this machine.
//!
//! Everything runs here: RabbitMQ, Postgres, the fake WeChat (in this process) and the worker
//! (a child process, `wxnotify worker`, so its CPU time and peak RSS are its own, read from
//! `/proc`). Each scenario makes a scratch database and queue prefix, seeds the mapping,
//! publishes a backlog of good jobs, starts the worker and times the drain:
//!
//! - `throughput`: the fake answers at once and the rate limit is out of the way: jobs/s end to
//!   end, worker CPU µs per job, worker peak RSS;
//! - `rate`: the fake answers after 100 ms and the app is limited to 2,000 sends/s: the rate
//!   reached as a share of the limit, and the busiest one-second window after the first;
//! - `backlog`: like `throughput` with a large backlog (`--backlog 1000000`): RSS stays flat.
//!
//! With `--mix`, each run of `throughput` is an all-OA drain followed by a mixed-channel drain of
//! the same size ([`mix`]: half OA, a third subscribe messages, the rest `no_channel`), and the
//! crash scenario runs under the mix.

pub mod api;
pub mod campaign_sends;
pub mod campaigns;
pub mod followers;
pub mod mix;

mod shared_rate;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::mock_wechat::{self, Endpoint, Fault, FaultPlan, FaultRule, MockConfig, MockWechat};
use crate::scratch::{Scratch, seed_mapping};
use wxnotify_core::config::Settings;
use wxnotify_core::domain::{Job, OpenId, Recipient, TemplateData};
use wxnotify_core::queue::Lane;

pub mod crash;

/// What `wxnotify-sandbox bench` runs (its flags are in [`crate::cli::bench`]).
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Which scenario to run (`all` = throughput and rate).
    pub scenario: Scenario,
    /// Jobs in the throughput scenario.
    pub jobs: u64,
    /// Jobs in the backlog scenario.
    pub backlog: u64,
    /// Unacked jobs per lane for the worker.
    pub prefetch: u16,
    /// Runs of each scenario; with more than one, a summary follows: the median of each figure,
    /// the worst busiest window and peak RSS (these machines are noisy: quote medians).
    pub runs: u32,
    /// Recipients in the campaign scenario.
    pub recipients: u64,
    /// Scenario `campaign`: seconds of measured sending (0: the snapshot only).
    pub send_seconds: u64,
    /// Print the results as JSON.
    pub json: bool,
    /// Scenario `api`: batches of 1,000 jobs to post.
    pub api_batches: usize,
    /// Scenario `api`: seconds of single POSTs at 500 requests/s.
    pub api_seconds: u64,
    /// Scenario `crash` (`crates/sandbox/src/bench/crash.rs`).
    pub crash: crash::CrashArgs,
    /// Scenarios `throughput` and `crash`: the mixed-channel workload ([`mix`]); `throughput`
    /// runs it after an all-OA drain of the same size, run by run.
    pub mix: bool,
}

/// A benchmark scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// throughput, then rate.
    All,
    /// 0 ms WeChat latency, no effective rate limit.
    Throughput,
    /// 100 ms WeChat latency, 2,000 sends/s limit.
    Rate,
    /// A large backlog at 0 ms latency.
    Backlog,
    /// 5,000 jobs drained under WeChat faults (2 % errcode -1, 1 % HTTP 502, 1 % dropped
    /// connections, 1 % answers lost after WeChat accepted), after the same drain without faults
    /// (`clean`): time to 99 % of the jobs done, and duplicate sends.
    Faults,
    /// The faults scenario's drain without faults (run by `faults` first).
    Clean,
    /// The producer API: batches of 1,000 and single POSTs at 500/s (`crates/sandbox/src/bench/api.rs`).
    Api,
    /// A campaign: its audience snapshot (`--recipients`, default 1,000,000), then sending
    /// beside 100 transactional jobs/s, pause, resume, cancel (`--send-seconds`).
    Campaign,
    /// 20,000 jobs under the faults scenario's faults with the worker killed -9 five times,
    /// twice: WeChat's usual `client_msg_id` window, then none (`crates/sandbox/src/bench/crash.rs`).
    Crash,
    /// One app's 2,000/s shared by three worker processes (`crates/sandbox/src/bench/shared_rate.rs`).
    SharedRate,
}

/// The figures of one scenario.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    /// Which.
    pub scenario: Scenario,
    /// Jobs drained.
    pub jobs: u64,
    /// Jobs published per second (the backlog, before the worker starts).
    pub publish_per_second: f64,
    /// Seconds from the first to the last accepted send.
    pub drain_seconds: f64,
    /// Jobs per second end to end.
    pub jobs_per_second: f64,
    /// The configured rate limit.
    pub rate_limit: u32,
    /// Sends in the busiest one-second window after the first second.
    pub max_window: u64,
    /// The worker's CPU time per job, microseconds.
    pub worker_cpu_us_per_job: f64,
    /// The worker's peak resident set, MiB.
    pub worker_peak_rss_mib: f64,
    /// Seconds from the first accepted send until 99 % of the jobs were accepted.
    pub p99_done_seconds: f64,
    /// Jobs WeChat accepted more than once (a person got them twice).
    pub duplicate_sends: u64,
    /// Resends WeChat dropped by their `client_msg_id`.
    pub resends_dropped: u64,
    /// Whether this sums up several runs (medians; the worst busiest window and peak RSS).
    pub summary: bool,
    /// Whether this was the mixed-channel workload (`--mix`; its busiest window is not
    /// measured: 0).
    pub mixed: bool,
    /// Subscribe messages the fake WeChat accepted (the mixed workload).
    pub subscribe_sends: u64,
    /// Jobs that died `no_channel` (the mixed workload).
    pub no_channel: u64,
}

/// Runs the benchmark scenarios of `args` and prints their figures.
pub async fn run(args: BenchOptions) -> anyhow::Result<ExitCode> {
    let base = Settings::from_env()?;
    if args.scenario == Scenario::Api {
        return crate::bench::api::run(&base, args.api_batches, args.api_seconds, args.json).await;
    }
    if args.scenario == Scenario::SharedRate {
        shared_rate::run(&base, args.runs, args.prefetch, args.json).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.scenario == Scenario::Campaign {
        return crate::bench::campaigns::run(&base, args.recipients, args.send_seconds, args.json)
            .await;
    }
    if args.scenario == Scenario::Crash {
        return crash::run(&base, &args.crash, args.prefetch, args.mix, args.json).await;
    }
    let scenarios: &[Scenario] = match args.scenario {
        Scenario::All => &[Scenario::Throughput, Scenario::Rate],
        Scenario::Faults | Scenario::Clean => &[Scenario::Clean, Scenario::Faults],
        one => std::slice::from_ref(match one {
            Scenario::Throughput => &Scenario::Throughput,
            Scenario::Rate => &Scenario::Rate,
            _ => &Scenario::Backlog,
        }),
    };
    let mut results = Vec::new();
    for scenario in scenarios {
        // With `--mix`, the throughput scenario alternates an all-OA and a mixed drain.
        let workloads: &[bool] = if args.mix && *scenario == Scenario::Throughput {
            &[false, true]
        } else {
            &[false]
        };
        let mut runs: Vec<Vec<BenchResult>> = vec![Vec::new(); workloads.len()];
        for _ in 0..args.runs {
            for (w, mixed) in workloads.iter().enumerate() {
                let result = run_scenario(&base, &args, *scenario, *mixed).await?;
                if !args.json {
                    print_result(&result);
                }
                runs[w].push(result);
            }
        }
        let mut summaries = Vec::new();
        for runs in &mut runs {
            if args.runs > 1 {
                let summary = summary_of(runs);
                if !args.json {
                    println!(
                        "median of {} runs (busiest window, peak RSS: the worst):",
                        runs.len()
                    );
                    print_result(&summary);
                }
                summaries.push(summary.clone());
                runs.push(summary);
            } else {
                summaries.push(runs[0].clone());
            }
        }
        if let [all_oa, mixed] = summaries.as_slice()
            && !args.json
        {
            println!(
                "mixed against all-OA: {:+.1} % jobs/s, {:+.1} % worker CPU per job (goal: within 10 %)",
                (mixed.jobs_per_second / all_oa.jobs_per_second - 1.0) * 100.0,
                (mixed.worker_cpu_us_per_job / all_oa.worker_cpu_us_per_job - 1.0) * 100.0
            );
        }
        results.extend(runs.into_iter().flatten());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// The median of `values` (the mean of the middle two when their number is even).
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The median of each figure over `runs` (of one scenario), marked `summary: true`; for the two
/// ceilings (busiest window, peak RSS) the worst run instead.
fn summary_of(runs: &[BenchResult]) -> BenchResult {
    let of = |f: fn(&BenchResult) -> f64| median(runs.iter().map(f).collect());
    BenchResult {
        scenario: runs[0].scenario,
        jobs: runs[0].jobs,
        publish_per_second: of(|r| r.publish_per_second),
        drain_seconds: of(|r| r.drain_seconds),
        jobs_per_second: of(|r| r.jobs_per_second),
        rate_limit: runs[0].rate_limit,
        max_window: runs.iter().map(|r| r.max_window).max().unwrap_or(0),
        worker_cpu_us_per_job: of(|r| r.worker_cpu_us_per_job),
        worker_peak_rss_mib: runs
            .iter()
            .map(|r| r.worker_peak_rss_mib)
            .fold(0.0, f64::max),
        p99_done_seconds: of(|r| r.p99_done_seconds),
        duplicate_sends: runs.iter().map(|r| r.duplicate_sends).max().unwrap_or(0),
        resends_dropped: runs.iter().map(|r| r.resends_dropped).max().unwrap_or(0),
        summary: true,
        mixed: runs[0].mixed,
        subscribe_sends: of(|r| r.subscribe_sends as f64) as u64,
        no_channel: of(|r| r.no_channel as f64) as u64,
    }
}

async fn run_scenario(
    base: &Settings,
    args: &BenchOptions,
    scenario: Scenario,
    mixed: bool,
) -> anyhow::Result<BenchResult> {
    let (jobs, latency, rate) = match scenario {
        Scenario::Rate => (30_000, Duration::from_millis(100), 2_000),
        Scenario::Backlog => (args.backlog, Duration::ZERO, 1_000_000),
        Scenario::Faults | Scenario::Clean => (5_000, Duration::ZERO, 1_000_000),
        _ => (args.jobs, Duration::ZERO, 1_000_000),
    };
    // The mix sends one job to each person (each grant holder holds one grant).
    let people = if mixed { jobs } else { jobs.min(100_000) };
    let cfg = MockConfig {
        followers: people,
        no_unionid_every: 0,
        unsubscribed_every: 0,
        latency,
        max_recorded_sends: jobs as usize,
        ..MockConfig::default()
    };
    let mock = MockWechat::start(cfg.clone()).await?;
    if scenario == Scenario::Faults {
        mock.set_faults(fault_mix());
    }
    let scratch = Scratch::create(base, "bench", &mock, rate).await?;
    let result = if mixed {
        measure_mixed(&scratch, &mock, &cfg, args, jobs).await
    } else {
        measure(&scratch, &mock, &cfg, args, scenario, jobs, rate).await
    };
    scratch.remove().await;
    mock.shutdown().await;
    result
}

async fn measure(
    scratch: &Scratch,
    mock: &MockWechat,
    cfg: &MockConfig,
    args: &BenchOptions,
    scenario: Scenario,
    jobs: u64,
    rate: u32,
) -> anyhow::Result<BenchResult> {
    eprintln!(
        "bench {scenario:?}: seeding {} people, publishing {jobs} jobs",
        cfg.followers
    );
    seed_mapping(&scratch.pool, cfg.followers, cfg).await?;
    let started = Instant::now();
    publish_backlog(scratch, jobs, cfg.followers).await?;
    let publish_per_second = jobs as f64 / started.elapsed().as_secs_f64();
    let mut worker = spawn_worker(&scratch.settings, args.prefetch)?;
    let pid = worker.id().context("the worker has a pid")?;
    let deadline = Instant::now() + Duration::from_secs(60 + jobs / 500);
    // CPU is counted from the first send on, so start-up (migrations, connections) is left out.
    let (cpu_at_start, sent_at_start) = loop {
        let sent = mock.stats().sends_accepted;
        if sent > 0 {
            break (cpu_seconds(pid)?, sent);
        }
        anyhow::ensure!(Instant::now() < deadline, "the worker sent nothing");
        if let Some(status) = worker.try_wait()? {
            anyhow::bail!("the worker exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    while (mock.stats().sends_accepted as usize) < jobs as usize {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the worker did not drain {jobs} jobs in time"
        );
        if let Some(status) = worker.try_wait()? {
            anyhow::bail!("the worker exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = cpu_seconds(pid)? - cpu_at_start;
    let rss = peak_rss_mib(pid)?;
    terminate(&mut worker).await;
    let mut times: Vec<u64> = mock.sends().iter().map(|s| s.accepted_at_ms).collect();
    times.sort_unstable();
    let drain_seconds =
        (times.last().copied().unwrap_or(0) - times.first().copied().unwrap_or(0)) as f64 / 1000.0;
    let p99 = times
        .get(((jobs as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0);
    let p99_done_seconds = (p99 - times.first().copied().unwrap_or(0)) as f64 / 1000.0;
    let mut per_job: std::collections::HashMap<Option<String>, u64> = Default::default();
    for send in mock.sends() {
        *per_job.entry(send.client_msg_id).or_default() += 1;
    }
    let duplicate_sends = per_job.values().filter(|n| **n > 1).count() as u64;
    let resends_dropped = mock.stats().duplicate_sends_dropped;
    Ok(BenchResult {
        scenario,
        jobs,
        publish_per_second,
        drain_seconds,
        jobs_per_second: jobs as f64 / drain_seconds.max(0.001),
        rate_limit: rate,
        max_window: busiest_window(&times),
        worker_cpu_us_per_job: cpu * 1e6 / (jobs - sent_at_start).max(1) as f64,
        worker_peak_rss_mib: rss,
        p99_done_seconds,
        duplicate_sends,
        resends_dropped,
        summary: false,
        mixed: false,
        subscribe_sends: 0,
        no_channel: 0,
    })
}

/// The throughput scenario's drain under the mix ([`mix`]): from the first accepted send until
/// every job ended (sent by either channel, or dead `no_channel`), as the ledger recorded it.
async fn measure_mixed(
    scratch: &Scratch,
    mock: &MockWechat,
    cfg: &MockConfig,
    args: &BenchOptions,
    jobs: u64,
) -> anyhow::Result<BenchResult> {
    eprintln!(
        "bench throughput (mixed): seeding {jobs} people and their grants, publishing {jobs} jobs"
    );
    seed_mapping(&scratch.pool, cfg.followers, cfg).await?;
    let counts = mix::prepare(scratch, mock, jobs).await?;
    let started = Instant::now();
    mix::publish(scratch, jobs).await?;
    let publish_per_second = jobs as f64 / started.elapsed().as_secs_f64();
    let mut worker = spawn_worker(&scratch.settings, args.prefetch)?;
    let pid = worker.id().context("the worker has a pid")?;
    let deadline = Instant::now() + Duration::from_secs(60 + jobs / 500);
    let accepted = || {
        let s = mock.stats();
        s.sends_accepted + s.subscribe_sends_accepted
    };
    let (cpu_at_start, sent_at_start) = loop {
        let sent = accepted();
        if sent > 0 {
            break (cpu_seconds(pid)?, sent);
        }
        anyhow::ensure!(Instant::now() < deadline, "the worker sent nothing");
        if let Some(status) = worker.try_wait()? {
            anyhow::bail!("the worker exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let last_ms = loop {
        if accepted() >= counts.sends() {
            let (done, last_ms) = mix::finished(&scratch.pool).await?;
            if done >= jobs as i64 {
                break last_ms;
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the worker did not finish {jobs} jobs in time"
        );
        if let Some(status) = worker.try_wait()? {
            anyhow::bail!("the worker exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cpu = cpu_seconds(pid)? - cpu_at_start;
    let rss = peak_rss_mib(pid)?;
    terminate(&mut worker).await;
    let first_ms = mock
        .sends()
        .iter()
        .map(|s| s.accepted_at_ms)
        .min()
        .unwrap_or(0);
    let drain_seconds = last_ms.saturating_sub(first_ms) as f64 / 1000.0;
    let p99_ms: f64 = sqlx::query_scalar(
        "SELECT (extract(epoch FROM t) * 1000)::float8 FROM (
           SELECT sent_at AS t FROM deliveries WHERE state = 'sent'
           UNION ALL SELECT created_at FROM dead_letters) e
         ORDER BY t OFFSET $1 LIMIT 1",
    )
    .bind(((jobs as f64 * 0.99).ceil() as i64 - 1).max(0))
    .fetch_one(&scratch.pool)
    .await?;
    let no_channel: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dead_letters WHERE reason = 'no_channel'")
            .fetch_one(&scratch.pool)
            .await?;
    let mut per_job: std::collections::HashMap<Option<String>, u64> = Default::default();
    for send in mock.sends() {
        *per_job.entry(send.client_msg_id).or_default() += 1;
    }
    let stats = mock.stats();
    Ok(BenchResult {
        scenario: Scenario::Throughput,
        jobs,
        publish_per_second,
        drain_seconds,
        jobs_per_second: jobs as f64 / drain_seconds.max(0.001),
        rate_limit: 1_000_000,
        max_window: 0,
        worker_cpu_us_per_job: cpu * 1e6 / (jobs - sent_at_start).max(1) as f64,
        worker_peak_rss_mib: rss,
        p99_done_seconds: (p99_ms as u64).saturating_sub(first_ms) as f64 / 1000.0,
        duplicate_sends: per_job.values().filter(|n| **n > 1).count() as u64,
        resends_dropped: stats.duplicate_sends_dropped,
        summary: false,
        mixed: true,
        subscribe_sends: stats.subscribe_sends_accepted,
        no_channel: no_channel as u64,
    })
}

/// The faults scenario's WeChat: 2 % errcode -1, 1 % HTTP 502, 1 % dropped connections and
/// 1 % answers lost after the send was accepted, on template sends.
pub(crate) fn fault_mix() -> FaultPlan {
    let on_sends = |fault, p| {
        FaultRule::new(fault)
            .on(Endpoint::TemplateSend)
            .probability(p)
    };
    FaultPlan {
        rules: vec![
            on_sends(Fault::Errcode(-1), 0.02),
            on_sends(Fault::HttpStatus(502), 0.01),
            on_sends(Fault::DropConnection, 0.01),
            on_sends(Fault::AcceptThenDrop, 0.01),
        ],
    }
}

pub(super) async fn publish_backlog(
    scratch: &Scratch,
    jobs: u64,
    people: u64,
) -> anyhow::Result<()> {
    let mut batch = Vec::with_capacity(1000);
    for k in 0..jobs {
        batch.push(bench_job(k % people));
        if batch.len() == 1000 || k + 1 == jobs {
            for r in scratch.publisher.publish_batch(&batch, Lane::Jobs).await {
                r?;
            }
            batch.clear();
        }
    }
    Ok(())
}

pub(crate) fn bench_job(person: u64) -> Job {
    let data = [("thing1", "订单已发货"), ("time2", "2026-11-25 10:00")];
    Job::new(
        Recipient::MpOpenid(OpenId::parse(mock_wechat::mp_openid(person)).expect("valid")),
        "TPL_ORDER_SHIPPED".parse().expect("valid"),
        TemplateData::from_pairs(&data).expect("valid"),
    )
}

fn spawn_worker(settings: &Settings, prefetch: u16) -> anyhow::Result<tokio::process::Child> {
    Ok(worker_command(settings, prefetch, Some("jobs"))?.spawn()?)
}

/// `wxnotify worker` (the service's binary, beside this one) for `settings`' first app, on `lane` (both lanes and the
/// campaign dispatcher when `None`), not yet spawned.
pub(crate) fn worker_command(
    settings: &Settings,
    prefetch: u16,
    lane: Option<&str>,
) -> anyhow::Result<tokio::process::Command> {
    let exe = service_binary()?;
    let app = &settings.apps[0];
    let mut command = tokio::process::Command::new(exe);
    command
        .arg("worker")
        .args(["--prefetch", &prefetch.to_string()]);
    if let Some(lane) = lane {
        command.args(["--lane", lane]);
    }
    command
        .env("DATABASE_URL", settings.database_url.expose_secret())
        .env("AMQP_URL", settings.amqp_url.expose_secret())
        .env("WECHAT_API_BASE", settings.wechat_api_base.as_str())
        .env("WXNOTIFY_QUEUE_PREFIX", &settings.queue_prefix)
        .env("WXNOTIFY_OA_APPID", app.oa_appid.as_str())
        .env("WXNOTIFY_OA_SECRET", app.oa_secret.expose_secret())
        .env("WXNOTIFY_RATE_PER_SECOND", app.rate_per_second.to_string())
        .envs(
            app.mp_appid
                .iter()
                .map(|id| ("WXNOTIFY_MP_APPID", id.as_str())),
        )
        .envs(
            app.mp_secret
                .iter()
                .map(|s| ("WXNOTIFY_MP_SECRET", s.expose_secret())),
        )
        .env(
            "RUST_LOG",
            std::env::var("WXNOTIFY_BENCH_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .kill_on_drop(true);
    Ok(command)
}

/// The `wxnotify` binary beside this one (`cargo build --release` builds both).
fn service_binary() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?.with_file_name("wxnotify");
    anyhow::ensure!(
        exe.is_file(),
        "{} is missing: the benchmarks run the service's own binary as their worker; build both \
         with `cargo build --release` (or `cargo build` for a debug run)",
        exe.display()
    );
    Ok(exe)
}

pub(crate) async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// User + system CPU seconds of a process (all its threads), from `/proc/PID/stat`.
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = procfs::process::Process::new(i32::try_from(pid)?)?.stat()?;
    Ok((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

/// Peak resident set (VmHWM) of a process, MiB.
pub(crate) fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = procfs::process::Process::new(i32::try_from(pid)?)?.status()?;
    let kib = status.vmhwm.context("no VmHWM in /proc status")?;
    Ok(kib as f64 / 1024.0)
}

/// The most sends in any one-second window that starts one second or more after the first send.
pub fn busiest_window(sorted_ms: &[u64]) -> u64 {
    let Some(first) = sorted_ms.first() else {
        return 0;
    };
    let mut best = 0;
    let mut end = 0;
    for (start, t) in sorted_ms.iter().enumerate() {
        if *t < first + 1000 {
            continue;
        }
        while end < sorted_ms.len() && sorted_ms[end] < t + 1000 {
            end += 1;
        }
        best = best.max((end - start) as u64);
    }
    best
}

fn print_result(r: &BenchResult) {
    if r.mixed {
        println!(
            "{:?} (mixed): {} jobs, {} subscribe messages, {} no_channel",
            r.scenario, r.jobs, r.subscribe_sends, r.no_channel
        );
    } else {
        println!("{:?}: {} jobs", r.scenario, r.jobs);
    }
    println!(
        "  published        {:.0} jobs/s (confirmed, before the worker starts)",
        r.publish_per_second
    );
    println!(
        "  drained          {:.1} s, {:.0} jobs/s end to end",
        r.drain_seconds, r.jobs_per_second
    );
    if r.rate_limit < 1_000_000 {
        println!(
            "  rate             {:.1}% of the {}/s limit; busiest 1-s window {} ({:+.1}%)",
            r.jobs_per_second / r.rate_limit as f64 * 100.0,
            r.rate_limit,
            r.max_window,
            (r.max_window as f64 / r.rate_limit as f64 - 1.0) * 100.0
        );
    }
    println!(
        "  worker CPU       {:.1} µs per job",
        r.worker_cpu_us_per_job
    );
    println!("  worker peak RSS  {:.1} MiB", r.worker_peak_rss_mib);
    println!(
        "  99 % done after  {:.2} s; {} jobs sent twice; {} resends dropped by client_msg_id",
        r.p99_done_seconds, r.duplicate_sends, r.resends_dropped
    );
}

#[cfg(test)]
mod tests {
    use super::{BenchResult, Scenario, busiest_window, summary_of};

    fn run(cpu: f64, window: u64, rss: f64) -> BenchResult {
        BenchResult {
            scenario: Scenario::Throughput,
            jobs: 10,
            publish_per_second: 1.0,
            drain_seconds: 1.0,
            jobs_per_second: cpu * 100.0,
            rate_limit: 1_000_000,
            max_window: window,
            worker_cpu_us_per_job: cpu,
            worker_peak_rss_mib: rss,
            p99_done_seconds: 1.0,
            duplicate_sends: 0,
            resends_dropped: 0,
            summary: false,
            mixed: false,
            subscribe_sends: 0,
            no_channel: 0,
        }
    }

    #[test]
    fn the_summary_takes_the_middle_run_and_the_worst_ceilings() {
        let m = summary_of(&[run(70.0, 3, 51.0), run(50.0, 9, 49.0), run(60.0, 1, 50.0)]);
        assert_eq!(m.worker_cpu_us_per_job, 60.0);
        assert_eq!(m.jobs_per_second, 6000.0);
        assert_eq!(m.max_window, 9);
        assert_eq!(m.worker_peak_rss_mib, 51.0);
        assert!(m.summary);
        let even = summary_of(&[run(70.0, 3, 50.0), run(50.0, 9, 50.0)]);
        assert_eq!(even.worker_cpu_us_per_job, 60.0);
    }

    #[test]
    fn the_busiest_window_skips_the_first_second() {
        let mut t: Vec<u64> = (0..100).map(|i| i * 5).collect(); // a burst in the first 0.5 s
        t.extend((0..20).map(|i| 2000 + i * 100)); // 10 per second later
        assert_eq!(busiest_window(&t), 10);
    }
}
