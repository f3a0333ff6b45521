//! The per-app rate shared by several worker processes (`crates/worker/src/rate_limit.rs`): every
//! `Limits` here has a pool of its own, as a separate process would; they meet only in Postgres.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;
use wxnotify_core::config::{AppConfig, Settings};
use wxnotify_core::domain::{Job, OpenId, Recipient};
use wxnotify_core::queue::Lane;
use wxnotify_sandbox::mock_wechat::{self, MockConfig};
use wxnotify_worker::WorkerConfig;
use wxnotify_worker::rate_limit::Limits;

use crate::support::TestDb;
use crate::system::System;

fn apps(rate: u32) -> Vec<AppConfig> {
    let vars: HashMap<&str, String> = HashMap::from([
        ("WXNOTIFY_OA_APPID", mock_wechat::MOCK_OA_APPID.to_string()),
        (
            "WXNOTIFY_OA_SECRET",
            mock_wechat::MOCK_OA_SECRET.to_string(),
        ),
        ("WXNOTIFY_RATE_PER_SECOND", rate.to_string()),
    ]);
    Settings::from_lookup(|k| vars.get(k).cloned())
        .expect("settings")
        .apps
}

/// A "process": its own pool and limiter.
async fn process(db: &TestDb, apps: &[AppConfig]) -> Arc<Limits> {
    Arc::new(Limits::new(apps, db.another_pool(4).await))
}

async fn db_with(apps: &[AppConfig]) -> TestDb {
    let db = TestDb::new().await;
    wxnotify_core::db::register_apps(&db.pool, apps)
        .await
        .unwrap();
    db
}

/// `senders` tasks that each take permits on `lane` until `until`, recording when.
fn load(
    limits: &Arc<Limits>,
    app: &AppConfig,
    lane: Lane,
    senders: usize,
    until: Instant,
    log: &Arc<Mutex<Vec<Instant>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..senders)
        .map(|_| {
            let (limits, log, name) = (limits.clone(), log.clone(), app.name.clone());
            tokio::spawn(async move {
                let limiter = limits.app(&name).unwrap();
                loop {
                    tokio::select! {
                        _ = limiter.acquire(lane) => {}
                        _ = tokio::time::sleep_until(until) => return,
                    }
                    let now = Instant::now();
                    if now >= until {
                        return;
                    }
                    log.lock().unwrap().push(now);
                }
            })
        })
        .collect()
}

/// A limiter's counters, for failure messages.
fn counters(limits: &Limits, app: &AppConfig) -> String {
    let c = limits.app(&app.name).unwrap().counters();
    let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    format!(
        "leases {} granted {} spent {} expired {} errors {}",
        get(&c.leases),
        get(&c.granted),
        get(&c.spent),
        get(&c.expired),
        get(&c.lease_errors)
    )
}

/// Throughput floor of these tests. Every permit is accounted for, but the shared 2-core
/// machine the tests run on stalls processes for tens of milliseconds under load (load averages
/// of 15-20 were seen), and a stalled process drops the permits it comes to late (it never
/// spends them on top of later ones): the floor leaves room for that, while staying above what a
/// head-count split would give the busy one of two workers (1/2). The rate itself is measured
/// by `wxnotify-sandbox bench` (docs/benchmarks.md).
const FLOOR: f64 = 0.6;

/// The most permits in any one-second window.
fn busiest_second(times: &[Instant]) -> usize {
    let mut t = times.to_vec();
    t.sort();
    let mut best = 0;
    let mut j = 0;
    for i in 0..t.len() {
        while j < t.len() && t[j] < t[i] + Duration::from_secs(1) {
            j += 1;
        }
        best = best.max(j - i);
    }
    best
}

fn in_span(times: &[Instant], from: Instant, to: Instant) -> usize {
    times.iter().filter(|t| **t >= from && **t < to).count()
}

async fn limiters_never_exceed_the_rate(processes: usize) {
    let rate = 400;
    let apps = apps(rate);
    let db = db_with(&apps).await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let until = Instant::now() + Duration::from_secs(3);
    let mut all = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..processes {
        let limits = process(&db, &apps).await;
        tasks.extend(load(&limits, &apps[0], Lane::Jobs, 50, until, &log));
        all.push(limits);
    }
    for t in tasks {
        t.await.unwrap();
    }
    let times = log.lock().unwrap().clone();
    let burst = all[0].app(&apps[0].name).unwrap().params().burst_us
        / all[0].app(&apps[0].name).unwrap().params().interval_us;
    let busiest = busiest_second(&times);
    let expired: u64 = all
        .iter()
        .map(|l| {
            l.app(&apps[0].name)
                .unwrap()
                .counters()
                .expired
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    assert!(
        busiest as f64 <= rate as f64 * 1.02 + 2.0,
        "{busiest} permits in one second over {processes} processes, rate {rate} burst {burst}, {expired} expired"
    );
    assert!(
        times.len() as f64 >= rate as f64 * 3.0 * FLOOR,
        "{} permits in 3 s at {rate}/s: {:?}",
        times.len(),
        all.iter()
            .map(|l| counters(l, &apps[0]))
            .collect::<Vec<_>>()
    );
    for l in &all {
        assert!(
            l.app(&apps[0].name)
                .unwrap()
                .counters()
                .granted
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0,
            "every busy process got permits"
        );
    }
}

#[tokio::test]
async fn two_limiters_never_exceed_the_rate() {
    limiters_never_exceed_the_rate(2).await;
}

#[tokio::test]
async fn three_limiters_never_exceed_the_rate() {
    limiters_never_exceed_the_rate(3).await;
}

#[tokio::test]
async fn an_idle_worker_takes_no_share() {
    let rate = 400;
    let apps = apps(rate);
    let db = db_with(&apps).await;
    let busy = process(&db, &apps).await;
    let idle = process(&db, &apps).await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let until = start + Duration::from_secs(2);
    for t in load(&busy, &apps[0], Lane::Jobs, 50, until, &log) {
        t.await.unwrap();
    }
    let times = log.lock().unwrap().clone();
    let idle_leases = idle
        .app(&apps[0].name)
        .unwrap()
        .counters()
        .leases
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(idle_leases, 0, "the idle process leased nothing");
    // After the first 100 ms, the busy one has (nearly) the whole rate, not half of it.
    let steady = in_span(&times, start + Duration::from_millis(100), until);
    assert!(
        steady as f64 >= rate as f64 * 1.9 * FLOOR,
        "{steady} permits in 1.9 s at {rate}/s: {}",
        counters(&busy, &apps[0])
    );
}

#[tokio::test]
async fn a_worker_killed_while_holding_a_lease_costs_at_most_its_lease() {
    let rate = 400;
    let apps = apps(rate);
    let db = db_with(&apps).await;
    let doomed = process(&db, &apps).await;
    let survivor = process(&db, &apps).await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let until = start + Duration::from_secs(3);
    let doomed_tasks = load(&doomed, &apps[0], Lane::Jobs, 50, until, &log);
    let survivor_tasks = load(&survivor, &apps[0], Lane::Jobs, 50, until, &log);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The kill: its senders and its pacer vanish with whatever it leased and had not spent.
    let app = doomed.app(&apps[0].name).unwrap();
    let holding = app
        .counters()
        .granted
        .load(std::sync::atomic::Ordering::Relaxed)
        - app
            .counters()
            .spent
            .load(std::sync::atomic::Ordering::Relaxed)
        - app
            .counters()
            .expired
            .load(std::sync::atomic::Ordering::Relaxed)
        - app
            .counters()
            .unwanted
            .load(std::sync::atomic::Ordering::Relaxed);
    for t in &doomed_tasks {
        t.abort();
    }
    drop(doomed);
    let killed = Instant::now();
    for t in survivor_tasks {
        t.await.unwrap();
    }
    let times = log.lock().unwrap().clone();
    let params = *survivor.app(&apps[0].name).unwrap().params();
    // Its senders are transactional: a transactional lease reaches the furthest.
    let lease_max = (params.burst_us + params.ahead_us(true)) / params.interval_us;
    assert!(
        holding as i64 <= lease_max,
        "it held {holding} > {lease_max}"
    );
    let busiest = busiest_second(&times);
    assert!(
        busiest as f64 <= rate as f64 * 1.02 + 2.0,
        "{busiest} in one second"
    );
    // The survivor takes the whole rate within one lease horizon plus a tick.
    let after = in_span(&times, killed + Duration::from_millis(100), until);
    let span = (until - killed - Duration::from_millis(100)).as_secs_f64();
    assert!(
        after as f64 >= rate as f64 * span * FLOOR,
        "{after} permits in {span:.2} s after the kill at {rate}/s: {}",
        counters(&survivor, &apps[0])
    );
}

#[tokio::test]
async fn transactional_before_bulk_across_two_processes() {
    let rate = 400;
    let apps = apps(rate);
    let db = db_with(&apps).await;
    let bulk_process = process(&db, &apps).await;
    let tx_process = process(&db, &apps).await;
    let bulk_log = Arc::new(Mutex::new(Vec::new()));
    let tx_log = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let until = start + Duration::from_secs(3);
    // Bulk alone for a second, then transactional demand above the rate in another process.
    let bulk = load(&bulk_process, &apps[0], Lane::Bulk, 50, until, &bulk_log);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tx_from = Instant::now();
    let tx = load(&tx_process, &apps[0], Lane::Jobs, 50, until, &tx_log);
    for t in bulk.into_iter().chain(tx) {
        t.await.unwrap();
    }
    let (bulk_times, tx_times) = (
        bulk_log.lock().unwrap().clone(),
        tx_log.lock().unwrap().clone(),
    );
    let alone = in_span(&bulk_times, start, tx_from);
    let alone_span = (tx_from - start).as_secs_f64();
    assert!(
        alone as f64 >= rate as f64 * alone_span * FLOOR,
        "alone, bulk had the rate: {alone} in {alone_span:.2} s"
    );
    let settle = tx_from + Duration::from_millis(100);
    let span = (until - settle).as_secs_f64();
    let tx_after = in_span(&tx_times, settle, until);
    let bulk_after = in_span(&bulk_times, settle, until);
    assert!(
        tx_after as f64 >= rate as f64 * span * FLOOR,
        "transactional got {tx_after} in {span:.2} s at {rate}/s (bulk {bulk_after}): {}",
        counters(&tx_process, &apps[0])
    );
    assert!(
        bulk_after as f64 <= rate as f64 * span * 0.05,
        "bulk took {bulk_after} permits while transactional sends waited"
    );
    let mut all = bulk_times.clone();
    all.extend(tx_times);
    let busiest = busiest_second(&all);
    assert!(
        busiest as f64 <= rate as f64 * 1.02 + 2.0,
        "{busiest} in one second"
    );
    let usage = tx_process.lane_usage(&apps[0].name).await.unwrap().unwrap();
    assert!(
        usage.transactional_per_second > rate as f64 * FLOOR * 0.9,
        "{usage:?}"
    );
    assert!(
        usage.bulk_headroom_per_second() < rate as f64 * 0.2,
        "{usage:?}"
    );
}

#[tokio::test]
async fn a_trickle_of_transactional_sends_leaves_bulk_the_rest_of_the_rate() {
    let rate = 400;
    let apps = apps(rate);
    let db = db_with(&apps).await;
    let bulk_process = process(&db, &apps).await;
    let tx_process = process(&db, &apps).await;
    let bulk_log = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let until = start + Duration::from_secs(3);
    let bulk = load(&bulk_process, &apps[0], Lane::Bulk, 50, until, &bulk_log);
    // Twenty transactional sends a second in the other process, each timed from its wish to
    // send to its permit.
    let limiter_of = tx_process.clone();
    let name = apps[0].name.clone();
    let trickle = tokio::spawn(async move {
        let limiter = limiter_of.app(&name).unwrap();
        let mut waits = Vec::new();
        tokio::time::sleep(Duration::from_millis(300)).await;
        while Instant::now() + Duration::from_millis(100) < until {
            let asked = Instant::now();
            limiter.acquire(Lane::Jobs).await;
            waits.push(asked.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        waits
    });
    for t in bulk {
        t.await.unwrap();
    }
    let waits = trickle.await.unwrap();
    let from = start + Duration::from_millis(300);
    let span = (until - from).as_secs_f64();
    let bulk_after = in_span(&bulk_log.lock().unwrap(), from, until);
    let trickle_rate = waits.len() as f64 / span;
    assert!(waits.len() >= 20, "{} transactional sends", waits.len());
    assert!(
        bulk_after as f64 >= (rate as f64 - trickle_rate) * span * FLOOR,
        "bulk got {bulk_after} in {span:.2} s beside {trickle_rate:.0} transactional sends/s at {rate}/s: {}",
        counters(&bulk_process, &apps[0])
    );
    // A transactional send waits behind the bulk permits already leased, no more.
    let mut sorted = waits.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    assert!(
        median < Duration::from_millis(150),
        "transactional sends waited {median:?} (median) beside bulk"
    );
}

#[tokio::test]
async fn postgres_unreachable_for_the_limiter_sends_nothing_unmetered() {
    let rate = 400;
    let apps = apps(rate);
    let db = db_with(&apps).await;
    // A process whose Postgres goes away mid-run (its pool closes: every lease fails).
    let pool: PgPool = db.another_pool(4).await;
    let limits = Arc::new(Limits::new(&apps, pool.clone()));
    let log = Arc::new(Mutex::new(Vec::new()));
    let until = Instant::now() + Duration::from_secs(2);
    let tasks = load(&limits, &apps[0], Lane::Jobs, 50, until, &log);
    tokio::time::sleep(Duration::from_millis(500)).await;
    pool.close().await;
    let gone = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    let times = log.lock().unwrap().clone();
    let app = limits.app(&apps[0].name).unwrap();
    let params = *app.params();
    let lease_max = ((params.burst_us + params.ahead_us(true)) / params.interval_us) as usize;
    let after = in_span(&times, gone, until);
    assert!(
        after <= lease_max,
        "{after} permits after Postgres went away (at most the {lease_max} already leased)"
    );
    assert!(
        app.counters()
            .lease_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "leases failed"
    );
    assert!(
        in_span(&times, gone - Duration::from_millis(400), gone) > 0,
        "it sent before"
    );

    // A process that never reaches Postgres sends nothing at all.
    let dead_pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap();
    let cut_off = Arc::new(Limits::new(&apps, dead_pool));
    let limiter = cut_off.app(&apps[0].name).unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(1), limiter.acquire(Lane::Jobs)).await;
    assert!(waited.is_err(), "a permit without Postgres");
}

/// A job for person `i` of the fake (one with a unionid who follows: not every 10th).
fn job(i: u64) -> Job {
    let person = i + i / 9;
    crate::worker::job(Recipient::MpOpenid(
        OpenId::parse(mock_wechat::mp_openid(person)).unwrap(),
    ))
}

/// Workers of one system (each with its own pool, as processes would be): the sends counted at
/// the fake WeChat, per second, never exceed the app's limit.
async fn workers_never_exceed_the_rate_at_the_fake(workers: usize) {
    let rate = 100;
    let jobs_n = 500u64;
    let sys = System::new(
        MockConfig {
            followers: jobs_n * 2,
            latency: Duration::from_millis(20),
            ..MockConfig::default()
        },
        rate,
    )
    .await;
    sys.seed_people(jobs_n * 2).await;
    let running: Vec<_> = (0..workers)
        .map(|_| {
            // A prefetch well below the jobs, so every worker gets some.
            let mut config = WorkerConfig::default();
            config.consumer.prefetch = 50;
            sys.start_worker(config)
        })
        .collect();
    let jobs: Vec<Job> = (0..jobs_n).map(job).collect();
    sys.publish(&jobs).await;
    sys.wait_finished(jobs_n as i64, Duration::from_secs(60))
        .await;
    let mut sent_by = Vec::new();
    for w in running {
        sent_by.push(w.stop().await.sent);
    }
    let mut times: Vec<u64> = sys.mock.sends().iter().map(|s| s.accepted_at_ms).collect();
    times.sort_unstable();
    assert_eq!(times.len() as u64, jobs_n, "every job was sent once");
    let busiest = wxnotify_sandbox::bench::busiest_window(&times);
    assert!(
        busiest as f64 <= rate as f64 * 1.02 + 2.0,
        "{busiest} sends in one second at the fake, limit {rate} ({workers} workers: {sent_by:?})"
    );
    let span = (times[times.len() - 1] - times[0]) as f64 / 1000.0;
    // Only that the workers got through: in one test process on this loaded machine the whole
    // pipeline (claims, sends, records of several workers and the fake) does not keep up with
    // the rate at times; the rate is measured by `wxnotify bench`.
    assert!(
        jobs_n as f64 / span >= rate as f64 * 0.3,
        "{jobs_n} sends took {span} s at {rate}/s"
    );
    assert!(
        sent_by.iter().all(|s| *s > 0),
        "every worker sent: {sent_by:?}"
    );
}

#[tokio::test]
async fn two_workers_never_exceed_the_rate_at_the_fake() {
    workers_never_exceed_the_rate_at_the_fake(2).await;
}

#[tokio::test]
async fn three_workers_never_exceed_the_rate_at_the_fake() {
    workers_never_exceed_the_rate_at_the_fake(3).await;
}
