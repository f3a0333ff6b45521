//! `wxnotify demo`: the main job, end to end, on a fresh machine.
//!
//! It makes its own database (on the server of `DATABASE_URL`) and queue prefix (on the broker of
//! `AMQP_URL`), starts the fake WeChat in-process, learns the followers (the real follower sync)
//! and logs Mini Program users in (the real jscode2session path), publishes thousands of jobs —
//! including ones for people who unfollowed, who have no unionid, with unknown templates or
//! missing fields, malformed ones and duplicates — with faults injected (system busy, dropped
//! answers, latency, the token invalidated mid-run), runs the worker until every job has its
//! outcome, checks the books against what the fake WeChat saw, prints a summary, and cleans up.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::delivery::{StatsSnapshot, Worker, WorkerConfig};
use crate::domain::{AppName, Job, JobId, OpenId, Recipient, TemplateData, UnionId};
use crate::queue::{Lane, Publisher, PublisherOptions, Topology, TopologyOptions};
use crate::wechat::mock::{self, Endpoint, Fault, FaultPlan, FaultRule, MockConfig, MockWechat};

/// Arguments of `wxnotify demo`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Needs PostgreSQL and RabbitMQ (DATABASE_URL, AMQP_URL; defaults: the local services).\nCreates a database and queues of its own and removes them at the end (unless --keep).")]
pub struct DemoArgs {
    /// How many jobs to publish.
    #[arg(long, default_value_t = 5000)]
    pub jobs: u64,
    /// How many people the fake WeChat knows.
    #[arg(long, default_value_t = 2000)]
    pub people: u64,
    /// Template sends per second allowed for the demo app.
    #[arg(long, default_value_t = 3000)]
    pub rate: u32,
    /// Latency the fake WeChat adds to every call, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub latency_ms: u64,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Keep the database and queues (prints their names).
    #[arg(long)]
    pub keep: bool,
}

/// What the demo saw; printed as text or JSON.
#[derive(Debug, serde::Serialize)]
pub struct DemoReport {
    /// Jobs published (including malformed and duplicate ones).
    pub published: u64,
    /// Outcomes counted by the worker.
    pub worker: StatsSnapshot,
    /// Followers synced / without unionid; Mini Program logins.
    pub followers: u64,
    /// Followers without unionid.
    pub followers_without_unionid: u64,
    /// Logins done.
    pub logins: u64,
    /// Seconds from the first publish until every job had its outcome.
    pub seconds: f64,
    /// Jobs finished per second.
    pub jobs_per_second: f64,
    /// What the fake WeChat accepted.
    pub wechat_accepted: u64,
    /// Resends WeChat dropped thanks to `client_msg_id`.
    pub wechat_dropped_duplicates: u64,
    /// Access tokens the fake minted (1 + refreshes).
    pub tokens_minted: u64,
    /// Whether every job ended in exactly one recorded state and the books match WeChat's.
    pub consistent: bool,
}

/// Runs `wxnotify demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let base = Settings::from_env()?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let db_name = format!("wxnotify_demo_{run_id}");
    let server: PgConnectOptions = base.database_url.expose_secret().parse().context("DATABASE_URL is not a Postgres URL")?;
    create_database(&server, &db_name).await?;
    let result = demo(&args, &base, &server, &db_name, &format!("wxnotify-demo-{run_id}")).await;
    if !args.keep {
        drop_database(&server, &db_name).await;
    } else {
        eprintln!("kept database {db_name}");
    }
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.consistent { ExitCode::SUCCESS } else { ExitCode::from(crate::cli::EXIT_FAILURE) })
}

async fn demo(args: &DemoArgs, base: &Settings, server: &PgConnectOptions, db_name: &str, prefix: &str) -> anyhow::Result<DemoReport> {
    let mock_config = MockConfig {
        followers: args.people,
        latency: Duration::from_millis(args.latency_ms),
        ..MockConfig::default()
    };
    let mock = MockWechat::start(mock_config.clone()).await?;
    let settings = demo_settings(base, &mock, server, db_name, prefix, args.rate)?;
    let pool = crate::db::connect(&settings.database_url, 24).await?;
    crate::db::migrate(&pool).await?;
    crate::db::register_apps(&pool, &settings.apps).await?;
    let bars = MultiProgress::with_draw_target(if args.json { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() });
    say(&bars, &format!("fake WeChat on {}; database {db_name}; queues {prefix}.*", mock.base_url()));

    let (followers, without_unionid) = populate::sync(&settings, &pool, &bars).await?;
    let logins = populate::logins(&settings, &pool, &mock, args.people, &bars).await?;

    let connection = std::sync::Arc::new(crate::queue::connect(&settings.amqp_url, "wxnotify-demo").await?);
    let topology = Topology::new(prefix);
    topology.declare(&connection.create_channel().await?, &TopologyOptions::default()).await?;
    let publisher = Publisher::new(connection.clone(), topology.clone(), PublisherOptions::default()).await?;

    let mut config = WorkerConfig::default();
    config.retry.min_delay = Duration::from_millis(500);
    config.retry.max_delay = Duration::from_secs(5);
    let worker = std::sync::Arc::new(Worker::new(&settings, pool.clone(), config)?);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (worker, shutdown) = (worker.clone(), shutdown.clone());
        async move { worker.run(shutdown).await }
    });

    mock.set_faults(FaultPlan {
        rules: vec![
            FaultRule::new(Fault::Errcode(-1)).on(Endpoint::TemplateSend).probability(0.03),
            FaultRule::new(Fault::AcceptThenDrop).on(Endpoint::TemplateSend).probability(0.005),
            FaultRule::new(Fault::HttpStatus(503)).on(Endpoint::TemplateSend).probability(0.005),
        ],
    });
    let started = Instant::now();
    let plan = jobs::plan(args.jobs, args.people, &mock_config);
    let published = jobs::publish(&publisher, &topology, &plan, &bars).await?;
    let expected = plan.expected_outcomes();
    let progress = bars.add(bar(expected, "outcomes"));
    let mut invalidated = false;
    loop {
        let s = worker.stats().snapshot();
        progress.set_position(s.finished());
        progress.set_message(format!("sent {} · retrying {} · dead {}", s.sent, s.retried, s.dead.values().sum::<u64>()));
        if !invalidated && s.sent > expected / 3 {
            mock.invalidate_tokens();
            invalidated = true;
            say(&bars, "WeChat invalidated the access token mid-run (40001): one refresh expected");
        }
        if s.finished() >= expected {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "the demo did not finish in 10 minutes: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    shutdown.cancel();
    running.await?;
    let snapshot = worker.stats().snapshot();
    let mock_stats = mock.stats();
    let consistent = check_books(&pool, &snapshot, &mock_stats, expected).await?;
    if let Ok(channel) = connection.create_channel().await {
        let _ = topology.delete(&channel).await;
    }
    let _ = connection.close(200, "demo over".into()).await;
    pool.close().await;
    mock.shutdown().await;
    Ok(DemoReport {
        published,
        jobs_per_second: snapshot.finished() as f64 / seconds,
        worker: snapshot,
        followers,
        followers_without_unionid: without_unionid,
        logins,
        seconds,
        wechat_accepted: mock_stats.sends_accepted,
        wechat_dropped_duplicates: mock_stats.duplicate_sends,
        tokens_minted: mock_stats.tokens_minted_by(Endpoint::StableToken),
        consistent,
    })
}

/// Every job in exactly one final state, nothing left in flight, and WeChat accepted exactly
/// what the ledger says was sent.
async fn check_books(pool: &PgPool, s: &StatsSnapshot, wechat: &mock::MockStats, expected: u64) -> anyhow::Result<bool> {
    let (sent, dead, open): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'sent'), count(*) FILTER (WHERE state = 'dead'),
                count(*) FILTER (WHERE state IN ('sending', 'retrying')) FROM deliveries",
    )
    .fetch_one(pool)
    .await?;
    let _ = dead;
    Ok(open == 0 && sent as u64 == s.sent && wechat.sends_accepted == s.sent && s.finished() == expected)
}

fn demo_settings(base: &Settings, mock: &MockWechat, server: &PgConnectOptions, db_name: &str, prefix: &str, rate: u32) -> anyhow::Result<Settings> {
    let url = server.clone().database(db_name).to_url_lossy().to_string();
    let amqp = base.amqp_url.expose_secret().to_owned();
    let base_url = mock.base_url().to_string();
    Ok(Settings::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "AMQP_URL" => Some(amqp.clone()),
        "WECHAT_API_BASE" => Some(base_url.clone()),
        "WXNOTIFY_QUEUE_PREFIX" => Some(prefix.to_owned()),
        "WXNOTIFY_OA_APPID" => Some(mock::MOCK_OA_APPID.into()),
        "WXNOTIFY_OA_SECRET" => Some(mock::MOCK_OA_SECRET.into()),
        "WXNOTIFY_MP_APPID" => Some(mock::MOCK_MP_APPID.into()),
        "WXNOTIFY_MP_SECRET" => Some(mock::MOCK_MP_SECRET.into()),
        "WXNOTIFY_RATE_PER_SECOND" => Some(rate.to_string()),
        _ => None,
    })?)
}

async fn create_database(server: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    let mut admin = server.clone().database("postgres").connect().await.context(
        "cannot reach Postgres: start it (see README) or set DATABASE_URL",
    )?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
    admin.close().await?;
    Ok(())
}

async fn drop_database(server: &PgConnectOptions, name: &str) {
    if let Ok(mut admin) = server.clone().database("postgres").connect().await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut admin)
            .await;
    }
}

fn bar(len: u64, what: &'static str) -> ProgressBar {
    let style = ProgressStyle::with_template("{spinner} {prefix:>10} [{bar:30}] {pos}/{len} {per_sec} {msg}")
        .expect("valid template")
        .progress_chars("=> ");
    ProgressBar::new(len).with_style(style).with_prefix(what)
}

fn say(bars: &MultiProgress, line: &str) {
    if bars.is_hidden() {
        return;
    }
    let _ = bars.println(line);
}

fn print_report(r: &DemoReport) {
    let w = &r.worker;
    println!();
    println!("wxnotify demo: {} jobs published, every one accounted for{}", r.published, if r.consistent { "" } else { " — NOT CONSISTENT, see above" });
    println!("  followers synced      {} ({} without unionid: their OA is not bound to the Open Platform for them)", r.followers, r.followers_without_unionid);
    println!("  Mini Program logins   {}", r.logins);
    println!("  sent                  {}", w.sent);
    println!("  duplicates (not sent) {}", w.duplicate);
    println!("  retried attempts      {} (system busy, HTTP 503, lost answers)", w.retried);
    println!("  dead                  {}", w.dead.values().sum::<u64>());
    for (reason, n) in &w.dead {
        println!("    {reason:<20} {n}");
    }
    println!("  time                  {:.1} s, {:.0} jobs/s", r.seconds, r.jobs_per_second);
    let [p50, p90, p99, max] = w.send_latency_ms;
    println!("  WeChat call latency   p50 {p50:.1} ms, p90 {p90:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");
    println!("  WeChat's view         {} accepted, {} resends dropped by client_msg_id, {} tokens minted", r.wechat_accepted, r.wechat_dropped_duplicates, r.tokens_minted);
}

mod populate;
mod jobs;
