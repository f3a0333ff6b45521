//! `wxnotify-sandbox bench --scenario crash`: the exactly-once promise measured across crashes.
//!
//! A backlog of `--crash-jobs` good jobs (20,000), plus ten job ids each published three times
//! back to back, is drained by a `wxnotify worker` child against the fake WeChat with the faults
//! scenario's fault mix (2 % errcode -1, 1 % HTTP 502, 1 % dropped connections, 1 % answers lost
//! after WeChat accepted). The worker is killed with SIGKILL `--kills` times (5) mid-run, each
//! time after another equal share of the sends, and started again at once. Two variants:
//!
//! - `window_10min`: the fake drops a resend with the same `client_msg_id` for its usual
//!   10 minutes; the worker's resend window is shortened (`--crash-resend-window-secs`, 10 s) so
//!   that retries of uncertain jobs outlast it: those must end `outcome_unknown`, and no job may
//!   be accepted twice.
//! - `no_window`: the fake's window is 0 (it never drops a resend) and the worker keeps its
//!   default resend window: a job accepted twice must be one the ledger marked uncertain
//!   (`deliveries.uncertain_since`).
//!
//! In both, each tripled job id must be accepted once (in `no_window`: unless the ledger marked
//! it uncertain), and every job must end in exactly one final state (sent, or dead with one dead
//! letter): nothing lost. A broken promise makes the command exit 1.
//!
//! With `--mix`, one variant instead, `mix`: `window_10min`'s settings with the mixed-channel
//! workload (one job per person, [`super::mix`]; no tripled ids) and the fault mix on subscribe
//! sends too. It checks, beside the above, the grants: none spent twice (`mp_grants.used <=
//! granted`), nobody sent two subscribe messages (the fake WeChat's count per person), and every
//! lost grant (used without a subscribe message at the fake) belongs to a job that ended
//! `outcome_unknown`.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::PgPool;

use crate::mock_wechat::{Endpoint, MockConfig, MockWechat};
use crate::scratch::{Scratch, seed_mapping};
use wxnotify_core::config::Settings;
use wxnotify_core::domain::Job;
use wxnotify_core::queue::Lane;

use super::mix::{self, GrantChecks, MixCounts};
use super::{bench_job, fault_mix, terminate, worker_command};

/// Job ids published three times back to back in each variant.
const TRIPLED: usize = 10;

/// Arguments of the `crash` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct CrashArgs {
    /// Scenario `crash`: distinct jobs drained in each variant (the tripled ids come on top).
    #[arg(long, default_value_t = 20_000)]
    pub crash_jobs: u64,
    /// Scenario `crash`: how many times the worker is killed with SIGKILL mid-run.
    #[arg(long, default_value_t = 5)]
    pub kills: u32,
    /// Scenario `crash`: the worker's resend window in the `window_10min` variant, seconds
    /// (far shorter than the fake's 10 minutes, and about as long as a killed worker's claims
    /// take to be taken over, so that some resends fall inside it and some outlast it).
    #[arg(long, default_value_t = 10)]
    pub crash_resend_window_secs: u64,
}

/// One variant's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CrashResult {
    /// `window_10min` or `no_window`.
    pub variant: &'static str,
    /// The fake's `client_msg_id` window, seconds.
    pub fake_window_secs: u64,
    /// The worker's resend window, seconds.
    pub resend_window_secs: u64,
    /// Distinct job ids published (the tripled ones included once).
    pub jobs: u64,
    /// Messages published (the tripled ids three times).
    pub messages: u64,
    /// SIGKILLs of the worker.
    pub kills: u32,
    /// Ledger rows by state.
    pub states: HashMap<String, i64>,
    /// Dead letters by reason.
    pub dead_by_reason: HashMap<String, i64>,
    /// Jobs the ledger marked uncertain (an answer that never came, a claim of a killed worker).
    pub uncertain: u64,
    /// Jobs the fake accepted more than once (a person got them twice).
    pub duplicate_sends: u64,
    /// Of those, jobs the ledger had not marked uncertain (a broken promise).
    pub duplicates_not_uncertain: u64,
    /// Resends the fake dropped by their `client_msg_id`.
    pub resends_dropped: u64,
    /// Tripled job ids accepted exactly once.
    pub tripled_sent_once: u64,
    /// Tripled job ids accepted more than once.
    pub tripled_sent_twice: u64,
    /// Seconds from the first accepted send until 99 % of the jobs ended (sent or dead).
    pub p99_done_seconds: f64,
    /// Seconds from the first accepted send until every job ended.
    pub all_done_seconds: f64,
    /// Jobs without a final state, or in more than one (sent with a dead letter, dead without
    /// one, or dead twice in the same life).
    pub lost_or_doubled: u64,
    /// The mixed workload's jobs by the people's reach (`mix` only).
    pub mix: Option<MixCounts>,
    /// The grants against the fake WeChat's subscribe messages (`mix` only).
    pub grants: Option<GrantChecks>,
    /// The promises this variant broke (empty: all kept).
    pub broken: Vec<String>,
}

/// Runs both variants; exit 1 when a promise is broken.
pub async fn run(
    base: &Settings,
    args: &CrashArgs,
    prefetch: u16,
    mixed: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let variants: &[(&'static str, u64, u64)] = if mixed {
        &[("mix", 600, args.crash_resend_window_secs)]
    } else {
        &[
            ("window_10min", 600, args.crash_resend_window_secs),
            ("no_window", 0, 480),
        ]
    };
    let mut results = Vec::new();
    for &(variant, fake_window, resend_window) in variants {
        let result = run_variant(base, args, prefetch, variant, fake_window, resend_window).await?;
        if !json {
            print_result(&result);
        }
        results.push(result);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    let broken = results.iter().any(|r| !r.broken.is_empty());
    Ok(if broken {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn run_variant(
    base: &Settings,
    args: &CrashArgs,
    prefetch: u16,
    variant: &'static str,
    fake_window: u64,
    resend_window: u64,
) -> anyhow::Result<CrashResult> {
    let jobs = args.crash_jobs.max(TRIPLED as u64 * 10);
    let mixed = variant == "mix";
    let cfg = MockConfig {
        // The mix sends one job to each person.
        followers: if mixed { jobs } else { jobs.min(100_000) },
        no_unionid_every: 0,
        unsubscribed_every: 0,
        latency: Duration::ZERO,
        client_msg_id_window: Duration::from_secs(fake_window),
        max_recorded_sends: (jobs * 2) as usize + 1_000,
        ..MockConfig::default()
    };
    let mock = MockWechat::start(cfg.clone()).await?;
    let mut faults = fault_mix();
    if mixed {
        let on_subscribe: Vec<_> = faults
            .rules
            .iter()
            .cloned()
            .map(|mut rule| {
                rule.endpoint = Some(Endpoint::SubscribeSend);
                rule
            })
            .collect();
        faults.rules.extend(on_subscribe);
    }
    mock.set_faults(faults);
    let scratch = Scratch::create(base, "crash", &mock, 1_000_000).await?;
    let result = drain(
        &scratch,
        &mock,
        &cfg,
        args,
        prefetch,
        variant,
        jobs,
        resend_window,
    )
    .await;
    scratch.remove().await;
    mock.shutdown().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn drain(
    scratch: &Scratch,
    mock: &MockWechat,
    cfg: &MockConfig,
    args: &CrashArgs,
    prefetch: u16,
    variant: &'static str,
    jobs: u64,
    resend_window: u64,
) -> anyhow::Result<CrashResult> {
    eprintln!(
        "bench crash {variant}: seeding {} people, publishing {jobs} jobs (+{TRIPLED} ids three times)",
        cfg.followers
    );
    seed_mapping(&scratch.pool, cfg.followers, cfg).await?;
    let mixed = variant == "mix";
    let (tripled, counts) = if mixed {
        let counts = mix::prepare(scratch, mock, jobs).await?;
        mix::publish(scratch, jobs).await?;
        (Vec::new(), Some(counts))
    } else {
        (publish(scratch, jobs, cfg.followers).await?, None)
    };
    // Sends the fake must accept at least (the kills are spread over them).
    let sends = counts.map_or(jobs, |c| c.sends());
    let fake_window = cfg.client_msg_id_window.as_secs();
    let total = jobs + tripled.len() as u64;
    let spawn = || -> anyhow::Result<tokio::process::Child> {
        let mut command = worker_command(&scratch.settings, prefetch, Some("jobs"))?;
        command.env("WXNOTIFY_RESEND_WINDOW_SECS", resend_window.to_string());
        if std::env::var_os("WXNOTIFY_BENCH_WORKER_LOG").is_none() {
            // Every `outcome_unknown` is a warning: thousands of lines in this scenario.
            command.env("RUST_LOG", "error");
        }
        Ok(command.spawn()?)
    };
    let mut worker = spawn()?;
    // Generous: a debug build on a busy machine drains ~50 jobs/s here.
    let deadline = Instant::now() + Duration::from_secs(300 + jobs / 20);
    let mut kills_done = 0u32;
    let mut first_send: Option<Instant> = None;
    let mut p99_at: Option<Instant> = None;
    let p99_target = (total as f64 * 0.99).ceil() as i64;
    let all_done = loop {
        let stats = mock.stats();
        let accepted = stats.sends_accepted + stats.subscribe_sends_accepted;
        if first_send.is_none() && accepted > 0 {
            first_send = Some(Instant::now());
        }
        // Kill k of n: after k/(n+1) of the sends were accepted.
        let next_kill = sends * u64::from(kills_done + 1) / u64::from(args.kills + 1);
        if kills_done < args.kills && accepted >= next_kill {
            worker.kill().await.context("killing the worker")?;
            kills_done += 1;
            eprintln!(
                "bench crash {variant}: kill -9 #{kills_done} after {accepted} accepted sends"
            );
            worker = spawn()?;
        }
        let done = finished(&scratch.pool).await?;
        if p99_at.is_none() && done >= p99_target {
            p99_at = Some(Instant::now());
        }
        if done >= total as i64 {
            break Instant::now();
        }
        if let Some(status) = worker.try_wait()? {
            anyhow::bail!("the worker exited by itself: {status}");
        }
        if Instant::now() > deadline {
            terminate(&mut worker).await;
            anyhow::bail!(
                "only {done} of {total} jobs ended in time: {:?}",
                states(&scratch.pool).await?
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    terminate(&mut worker).await;
    let since_first = |t: Option<Instant>| {
        t.zip(first_send)
            .map_or(0.0, |(t, f)| t.saturating_duration_since(f).as_secs_f64())
    };
    let p99_done_seconds = since_first(p99_at);
    let all_done_seconds = since_first(Some(all_done));

    let mut per_job: HashMap<String, u64> = HashMap::new();
    for send in mock.sends() {
        if let Some(id) = send.client_msg_id {
            *per_job.entry(id).or_default() += 1;
        }
    }
    let uncertain: HashSet<String> =
        sqlx::query_scalar("SELECT job_id FROM deliveries WHERE uncertain_since IS NOT NULL")
            .fetch_all(&scratch.pool)
            .await?
            .into_iter()
            .collect();
    let twice: Vec<&String> = per_job
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    let duplicates_not_uncertain = twice.iter().filter(|id| !uncertain.contains(**id)).count();
    let tripled_count = |id: &String| per_job.get(id).copied().unwrap_or(0);
    let tripled_sent_once = tripled.iter().filter(|id| tripled_count(id) == 1).count();
    let tripled_twice: Vec<&String> = tripled.iter().filter(|id| tripled_count(id) > 1).collect();
    let lost_or_doubled = lost_or_doubled(&scratch.pool, total).await?;

    let mut broken = Vec::new();
    if lost_or_doubled > 0 {
        broken.push(format!(
            "{lost_or_doubled} jobs lost or in more than one state"
        ));
    }
    if fake_window > 0 && !twice.is_empty() {
        broken.push(format!(
            "{} jobs accepted twice inside the fake's window",
            twice.len()
        ));
    }
    if duplicates_not_uncertain > 0 {
        broken.push(format!(
            "{duplicates_not_uncertain} jobs accepted twice that the ledger did not mark uncertain"
        ));
    }
    let tripled_broken = tripled_twice
        .iter()
        .filter(|id| fake_window > 0 || !uncertain.contains(**id))
        .count();
    if tripled_broken > 0 {
        broken.push(format!("{tripled_broken} tripled job ids sent twice"));
    }
    let grants = match counts {
        Some(_) => {
            let checks = mix::grant_checks(&scratch.pool, mock).await?;
            broken.extend(checks.broken());
            Some(checks)
        }
        None => None,
    };
    Ok(CrashResult {
        variant,
        fake_window_secs: fake_window,
        resend_window_secs: resend_window,
        jobs: total,
        messages: jobs + 3 * tripled.len() as u64,
        kills: kills_done,
        states: states(&scratch.pool).await?,
        dead_by_reason: dead_by_reason(&scratch.pool).await?,
        uncertain: uncertain.len() as u64,
        duplicate_sends: twice.len() as u64,
        duplicates_not_uncertain: duplicates_not_uncertain as u64,
        resends_dropped: mock.stats().duplicate_sends_dropped,
        tripled_sent_once: tripled_sent_once as u64,
        tripled_sent_twice: tripled_twice.len() as u64,
        p99_done_seconds,
        all_done_seconds,
        lost_or_doubled,
        mix: counts,
        grants,
        broken,
    })
}

/// Publishes `jobs` jobs, with [`TRIPLED`] more job ids spread among them, each published three
/// times back to back. Returns the tripled ids.
async fn publish(scratch: &Scratch, jobs: u64, people: u64) -> anyhow::Result<Vec<String>> {
    let every = jobs / TRIPLED as u64;
    let mut tripled = Vec::new();
    let mut batch: Vec<Job> = Vec::with_capacity(1_100);
    for k in 0..jobs {
        batch.push(bench_job(k % people));
        if k % every == every / 2 && tripled.len() < TRIPLED {
            let job = bench_job((k + 1) % people);
            tripled.push(job.id.as_str().to_owned());
            batch.extend([job.clone(), job.clone(), job]);
        }
        if batch.len() >= 1_000 || k + 1 == jobs {
            for r in scratch.publisher.publish_batch(&batch, Lane::Jobs).await {
                r?;
            }
            batch.clear();
        }
    }
    Ok(tripled)
}

/// Jobs in a final state: sent or dead.
async fn finished(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE state IN ('sent', 'dead')")
            .fetch_one(pool)
            .await?,
    )
}

async fn states(pool: &PgPool) -> anyhow::Result<HashMap<String, i64>> {
    Ok(
        sqlx::query_as::<_, (String, i64)>("SELECT state, count(*) FROM deliveries GROUP BY state")
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect(),
    )
}

async fn dead_by_reason(pool: &PgPool) -> anyhow::Result<HashMap<String, i64>> {
    Ok(sqlx::query_as::<_, (String, i64)>(
        "SELECT reason, count(*) FROM dead_letters GROUP BY reason",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect())
}

/// Jobs not in exactly one final state: missing from the ledger or not final (of `total`), sent
/// but dead-lettered, dead without a dead letter, or dead-lettered twice in one life.
async fn lost_or_doubled(pool: &PgPool, total: u64) -> anyhow::Result<u64> {
    let (final_rows, sent_and_dead, dead_without, dead_twice): (i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT
               (SELECT count(*) FROM deliveries WHERE state IN ('sent', 'dead')),
               (SELECT count(*) FROM deliveries d WHERE d.state = 'sent'
                  AND EXISTS (SELECT 1 FROM dead_letters l WHERE l.app = d.app AND l.job_id = d.job_id)),
               (SELECT count(*) FROM deliveries d WHERE d.state = 'dead'
                  AND NOT EXISTS (SELECT 1 FROM dead_letters l WHERE l.app = d.app AND l.job_id = d.job_id)),
               (SELECT count(*) FROM (SELECT job_id, life FROM dead_letters
                                      GROUP BY app, job_id, life HAVING count(*) > 1) t)",
        )
        .fetch_one(pool)
        .await?;
    let missing = (total as i64 - final_rows).max(0);
    Ok((missing + sent_and_dead + dead_without + dead_twice) as u64)
}

fn print_result(r: &CrashResult) {
    println!(
        "crash {}: {} jobs ({} messages), fake window {} s, resend window {} s, {} kill -9",
        r.variant, r.jobs, r.messages, r.fake_window_secs, r.resend_window_secs, r.kills
    );
    let mut states: Vec<_> = r.states.iter().collect();
    states.sort();
    println!("  ledger states      {states:?}");
    let mut dead: Vec<_> = r.dead_by_reason.iter().collect();
    dead.sort();
    println!("  dead by reason     {dead:?}");
    println!(
        "  sent twice         {} jobs ({} not marked uncertain; {} marked uncertain in all)",
        r.duplicate_sends, r.duplicates_not_uncertain, r.uncertain
    );
    println!(
        "  resends dropped    {} by client_msg_id",
        r.resends_dropped
    );
    if r.mix.is_none() {
        println!(
            "  tripled ids        {} of {TRIPLED} sent once, {} sent twice",
            r.tripled_sent_once, r.tripled_sent_twice
        );
    }
    println!(
        "  99 % done after    {:.2} s (all after {:.2} s)",
        r.p99_done_seconds, r.all_done_seconds
    );
    println!("  lost or doubled    {}", r.lost_or_doubled);
    if let (Some(counts), Some(g)) = (&r.mix, &r.grants) {
        println!(
            "  mix                {} OA, {} subscribe, {} no_channel (jobs by the people's reach)",
            counts.oa, counts.subscribe, counts.no_channel
        );
        println!(
            "  grants             {} given, {} used, {} spent twice; {} subscribe messages, {} people messaged twice",
            g.granted, g.used, g.overspent, g.subscribe_messages, g.people_messaged_twice
        );
        let mut unknown: Vec<_> = g.outcome_unknown_by_channel.iter().collect();
        unknown.sort();
        println!(
            "  lost grants        {} (used, no message at the fake), {} not outcome_unknown; outcome_unknown by channel {unknown:?}",
            g.lost_grants, g.lost_not_outcome_unknown
        );
    }
    if r.broken.is_empty() {
        println!("  promises           kept");
    } else {
        println!("  BROKEN             {}", r.broken.join("; "));
    }
}
