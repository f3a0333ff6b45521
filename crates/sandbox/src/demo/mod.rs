//! `wxnotify-sandbox demo`: the main job, end to end, on a fresh machine.
//!
//! It makes a scratch database and queue prefix (on the servers of `DATABASE_URL` and
//! `AMQP_URL`), starts the fake WeChat and the HTTP API in-process, and then does what production
//! does: syncs the OA's followers, logs Mini Program users in through `POST
//! /v1/miniprogram/login`, takes unfollow events on `/wechat/callback`, publishes thousands of
//! jobs — including ones for people who unfollowed, who have no unionid, with unknown templates or
//! missing fields, expired, malformed and duplicated ones — with faults injected (system busy,
//! HTTP 503, answers lost after WeChat accepted the send, latency, the token invalidated
//! mid-run), runs the worker until every job has its outcome, delivers some receipts, checks the
//! books against what the fake WeChat saw, prints a summary and removes what it made.
//!
//! With `--serve` ([`serve`]) it leaves the whole system running instead, for a person to use.

mod campaign;
pub(crate) mod jobs;
pub(crate) mod populate;
pub mod serve;

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::mock_wechat::{
    Endpoint, Fault, FaultPlan, FaultRule, MockConfig, MockStats, MockWechat,
};
use crate::scratch::Scratch;
use wxnotify_app::Application;
use wxnotify_core::config::Settings;
use wxnotify_worker::{StatsSnapshot, Worker, WorkerConfig};

/// What `wxnotify-sandbox demo` runs (its flags are in [`crate::cli::demo`]).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How many jobs to publish (1% more are published twice, as duplicates).
    pub jobs: u64,
    /// How many people the fake WeChat knows.
    pub people: u64,
    /// Template sends per second allowed for the demo app.
    pub rate: u32,
    /// Latency the fake WeChat adds to every call, in milliseconds.
    pub latency_ms: u64,
    /// Followers who get the demo's campaign (on the bulk lane, beside the jobs); 0: none.
    pub campaign: u64,
    /// Print the summary as JSON on stdout (no progress bars).
    pub json: bool,
}

/// What the demo saw; printed as text or JSON.
#[derive(Debug, serde::Serialize)]
pub struct DemoReport {
    /// Messages published (jobs, duplicates and malformed ones).
    pub published: u64,
    /// Outcomes counted by the worker.
    pub worker: StatsSnapshot,
    /// Followers synced.
    pub followers: u64,
    /// Followers without unionid.
    pub followers_without_unionid: u64,
    /// Mini Program logins through the HTTP API.
    pub logins: u64,
    /// Of which notifiable (a subscribed follower with their unionid is known).
    pub notifiable: u64,
    /// Unfollow events taken on the callback.
    pub unfollow_events: u64,
    /// Seconds from the first publish until every job had its outcome.
    pub seconds: f64,
    /// Jobs finished per second.
    pub jobs_per_second: f64,
    /// What the fake WeChat accepted (template messages).
    pub wechat_accepted: u64,
    /// Subscribe messages the fake WeChat accepted.
    pub wechat_subscribe_accepted: u64,
    /// One-time subscribe grants the people gave before the jobs.
    pub subscribe_grants: u64,
    /// Resends WeChat dropped thanks to `client_msg_id`.
    pub wechat_dropped_duplicates: u64,
    /// Access tokens the fake minted (1 + refreshes).
    pub tokens_minted: u64,
    /// Delivery receipts (TEMPLATESENDJOBFINISH) pushed and stored on the ledger.
    pub receipts_stored: u64,
    /// Jobs whose recorded state is not what must have become of them (at most 20 shown).
    pub mismatches: Vec<String>,
    /// The campaign sent beside the jobs, as `campaign status --json` shows it.
    pub campaign: Option<wxnotify_services::campaigns::Status>,
    /// Every job ended in exactly the state it must have (checked job by job), nothing is left
    /// in flight, and the ledger's totals match what WeChat accepted.
    pub consistent: bool,
}

/// Runs the demo with the Postgres and RabbitMQ of the environment's settings and prints its
/// report; `Ok(false)` when the books do not match.
pub async fn run(args: DemoOptions) -> anyhow::Result<bool> {
    let report = report(&args, &Settings::from_env()?).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(report.consistent)
}

/// Runs the demo on the Postgres server and RabbitMQ of `base` (in a database and queues of
/// its own, removed at the end) and answers what it saw.
pub async fn report(args: &DemoOptions, base: &Settings) -> anyhow::Result<DemoReport> {
    let mock_config = MockConfig {
        followers: args.people,
        unsubscribed_every: 15,
        latency: Duration::from_millis(args.latency_ms),
        max_recorded_sends: (args.jobs as usize * 2).max(10_000),
        ..MockConfig::default()
    };
    let mock = MockWechat::start(mock_config.clone()).await?;
    let scratch = Scratch::create(base, "demo", &mock, args.rate).await?;
    let bars = MultiProgress::with_draw_target(if args.json {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    let result = demo(args, &scratch, &mock, &mock_config, &bars).await;
    scratch.remove().await;
    mock.shutdown().await;
    result
}

async fn demo(
    args: &DemoOptions,
    scratch: &Scratch,
    mock: &MockWechat,
    mock_config: &MockConfig,
    bars: &MultiProgress,
) -> anyhow::Result<DemoReport> {
    let settings = &scratch.settings;
    say(
        bars,
        &format!(
            "fake WeChat on {}; database {}; queues {}.*",
            mock.base_url(),
            scratch.db_name,
            scratch.topology.prefix()
        ),
    );
    let api = populate::Api::start(settings, &scratch.pool).await?;
    let synced = populate::sync(settings, &scratch.pool, bars).await?;
    let logins = populate::logins(&api, mock, args.people, bars).await?;
    let unfollowed = populate::unfollow(&api, mock, mock_config, args.people).await?;

    let mut config = WorkerConfig::default();
    config.retry.min_delay = Duration::from_millis(500);
    config.retry.max_delay = Duration::from_secs(5);
    let worker = Arc::new(Application::new(settings.clone(), scratch.pool.clone()).worker(config)?);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (worker, shutdown) = (worker.clone(), shutdown.clone());
        async move { worker.run(shutdown).await }
    });

    mock.set_faults(FaultPlan {
        rules: vec![
            FaultRule::new(Fault::Errcode(-1))
                .on(Endpoint::TemplateSend)
                .probability(0.03),
            FaultRule::new(Fault::AcceptThenDrop)
                .on(Endpoint::TemplateSend)
                .probability(0.005),
            FaultRule::new(Fault::HttpStatus(503))
                .on(Endpoint::TemplateSend)
                .probability(0.005),
        ],
    });
    let started = Instant::now();
    let campaign = match args.campaign {
        0 => None,
        n => Some(campaign::start(scratch, n, 200).await?),
    };
    let plan = jobs::plan(args.jobs, args.people, mock_config, &unfollowed);
    let grants = populate::grants(settings, mock, &scratch.pool, &plan.grants).await?;
    let published = jobs::publish(&scratch.publisher, &scratch.topology, &plan, bars).await?;
    // Each reachable recipient of the campaign ends sent or dead too.
    let expected = plan.expected_outcomes() + campaign.as_ref().map_or(0, |c| c.reachable);
    let snapshot = drain(&worker, mock, expected, bars).await?;
    let seconds = started.elapsed().as_secs_f64();
    let campaign = match campaign {
        Some(c) => Some(c.finish(&scratch.pool).await?),
        None => None,
    };
    shutdown.cancel();
    running.await?;
    mock.clear_faults();
    let receipts_stored = populate::receipts(&api, mock, &scratch.pool, 200).await?;
    // Read again: some of the receipts may be the campaign's.
    let campaign = match campaign {
        Some(c) => Some(wxnotify_services::campaigns::status(&scratch.pool, c.id).await?),
        None => None,
    };
    api.stop().await;
    let wechat = mock.stats();
    let totals_match = check_books(&scratch.pool, &snapshot, &wechat, expected).await?;
    let mismatches = check_each_job(&scratch.pool, &plan).await?;
    let consistent = totals_match && mismatches.is_empty();
    Ok(DemoReport {
        published,
        jobs_per_second: snapshot.finished() as f64 / seconds,
        worker: snapshot,
        followers: synced.followers,
        followers_without_unionid: synced.without_unionid,
        logins: logins.0,
        notifiable: logins.1,
        unfollow_events: unfollowed.len() as u64,
        seconds,
        wechat_accepted: wechat.sends_accepted,
        wechat_subscribe_accepted: wechat.subscribe_sends_accepted,
        subscribe_grants: grants,
        wechat_dropped_duplicates: wechat.duplicate_sends_dropped,
        tokens_minted: wechat.tokens_minted_by(Endpoint::StableToken),
        receipts_stored,
        mismatches,
        consistent: consistent
            && campaign
                .as_ref()
                .is_none_or(|c| c.finished() == c.reachable && c.state.is_final()),
        campaign,
    })
}

/// Each job's state on the ledger against what must have become of it (worked out from the
/// fake's people, not from the worker): the jobs that differ, at most 20, as
/// `job id: expected X, ledger says Y`. Malformed messages are counted in the dead letters; the
/// campaign's jobs are checked by its own status.
async fn check_each_job(pool: &PgPool, plan: &jobs::Plan) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT job_id, state, dead_reason FROM deliveries WHERE campaign_id IS NULL",
    )
    .fetch_all(pool)
    .await?;
    let ledger: std::collections::HashMap<String, String> = rows
        .into_iter()
        .map(|(id, state, reason)| (id, reason.unwrap_or(state)))
        .collect();
    let mut mismatches: Vec<String> = plan
        .expected
        .iter()
        .filter(|(id, want)| {
            let got = ledger.get(*id).map(String::as_str);
            !want.split('|').any(|w| Some(w) == got)
        })
        .map(|(id, want)| {
            let got = ledger.get(id).map(String::as_str).unwrap_or("nothing");
            format!("{id}: expected {want}, ledger says {got}")
        })
        .collect();
    let extra = ledger.len().saturating_sub(plan.expected.len());
    if extra > 0 {
        mismatches.push(format!("{extra} ledger rows for jobs never published"));
    }
    let malformed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dead_letters WHERE reason = 'malformed'")
            .fetch_one(pool)
            .await?;
    if malformed as u64 != plan.malformed {
        mismatches.push(format!(
            "{} malformed messages published, {malformed} malformed dead letters",
            plan.malformed
        ));
    }
    mismatches.sort();
    mismatches.truncate(20);
    Ok(mismatches)
}

/// Waits until the worker has an outcome for every published message, invalidating the access
/// token once on the way.
async fn drain(
    worker: &Worker,
    mock: &MockWechat,
    expected: u64,
    bars: &MultiProgress,
) -> anyhow::Result<StatsSnapshot> {
    let progress = bars.add(bar(expected, "outcomes"));
    let mut invalidated = false;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let s = worker.stats().snapshot();
        progress.set_position(s.finished());
        progress.set_message(format!(
            "sent {} · retries {} · dead {}",
            s.sent,
            s.retried,
            s.dead.values().sum::<u64>()
        ));
        if !invalidated && s.sent > expected / 3 {
            mock.invalidate_tokens();
            invalidated = true;
            say(
                bars,
                "WeChat invalidated the access token mid-run (40001): expect one refresh",
            );
        }
        if s.finished() >= expected {
            progress.finish_and_clear();
            return Ok(s);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the demo did not finish in 10 minutes: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every job in exactly one final state, nothing left in flight, and WeChat accepted exactly
/// what the ledger says was sent, channel by channel; every subscribe message spent one grant
/// in wxnotify's count.
async fn check_books(
    pool: &PgPool,
    s: &StatsSnapshot,
    wechat: &MockStats,
    expected: u64,
) -> anyhow::Result<bool> {
    let (sent, subscribed, open): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'sent'),
                count(*) FILTER (WHERE state = 'sent' AND channel = 'mp_subscribe'),
                count(*) FILTER (WHERE state IN ('sending', 'retrying')) FROM deliveries",
    )
    .fetch_one(pool)
    .await?;
    let grants_used: i64 =
        sqlx::query_scalar("SELECT COALESCE(sum(used), 0)::bigint FROM mp_grants")
            .fetch_one(pool)
            .await?;
    let dead_letters: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(pool)
        .await?;
    Ok(open == 0
        && sent as u64 == s.sent
        && wechat.sends_accepted + wechat.subscribe_sends_accepted == s.sent
        && wechat.subscribe_sends_accepted == subscribed as u64
        && grants_used == subscribed
        && dead_letters as u64 == s.dead.values().sum::<u64>()
        && s.finished() == expected)
}

fn bar(len: u64, what: &'static str) -> ProgressBar {
    let style =
        wxnotify_core::progress::style("{prefix:>10} [{bar:30}] {pos}/{len} {rate:>12} {msg}")
            .progress_chars("=> ");
    ProgressBar::new(len).with_style(style).with_prefix(what)
}

fn say(bars: &MultiProgress, line: &str) {
    if !bars.is_hidden() {
        let _ = bars.println(line);
    }
}

fn print_report(r: &DemoReport) {
    let w = &r.worker;
    println!();
    if r.consistent {
        println!(
            "wxnotify-sandbox demo: {} messages published; each job ended in the state it must have (checked one by one), and the books match WeChat's",
            r.published
        );
    } else {
        println!(
            "wxnotify-sandbox demo: {} messages published — THE BOOKS DO NOT MATCH (see below)",
            r.published
        );
        for m in &r.mismatches {
            println!("  mismatch: {m}");
        }
    }
    println!(
        "  followers synced      {} ({} without unionid: not joinable to Mini Program users)",
        r.followers, r.followers_without_unionid
    );
    println!(
        "  Mini Program logins   {} ({} notifiable)",
        r.logins, r.notifiable
    );
    println!(
        "  unfollow events       {} taken on the OA callback",
        r.unfollow_events
    );
    println!("  sent                  {}", w.sent);
    println!("  duplicates (not sent) {}", w.duplicate);
    println!(
        "  retried attempts      {} (system busy, HTTP 503, answers lost after WeChat accepted)",
        w.retried
    );
    println!("  dead                  {}", w.dead.values().sum::<u64>());
    for (reason, n) in &w.dead {
        println!("    {reason:<20} {n}");
    }
    println!(
        "  time                  {:.1} s, {:.0} jobs/s",
        r.seconds, r.jobs_per_second
    );
    let [p50, p90, p99, max] = w.send_latency_ms;
    println!(
        "  WeChat call latency   p50 {p50:.1} ms, p90 {p90:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
    );
    println!(
        "  WeChat's view         {} accepted, {} resends dropped by client_msg_id, {} access tokens minted",
        r.wechat_accepted, r.wechat_dropped_duplicates, r.tokens_minted
    );
    println!(
        "  subscribe messages    {} accepted by WeChat for people who do not follow the OA, spending {} of {} grants",
        r.wechat_subscribe_accepted, r.wechat_subscribe_accepted, r.subscribe_grants
    );
    println!(
        "  delivery receipts     {} pushed to /wechat/callback and stored",
        r.receipts_stored
    );
    if let Some(c) = &r.campaign {
        println!("  {}", c.line());
    }
}
