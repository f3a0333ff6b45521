//! The worker through shutdowns, crashes and lost connections, and two workers sharing a rate.

use std::process::Stdio;
use std::time::Duration;

use wxnotify_core::domain::{Job, OpenId, Recipient};
use wxnotify_sandbox::mock_wechat::{self, Endpoint, Fault, FaultPlan, FaultRule, MockConfig};
use wxnotify_worker::WorkerConfig;

use crate::system::System;
use crate::worker::job;

fn mp(i: u64) -> Recipient {
    Recipient::MpOpenid(OpenId::parse(mock_wechat::mp_openid(i)).unwrap())
}

/// Persons with a unionid who follow (not every 10th, not every 20th).
fn good_people(n: u64) -> impl Iterator<Item = u64> {
    (0..).filter(|i| (i + 1) % 10 != 0).take(n as usize)
}

#[tokio::test]
async fn graceful_shutdown_records_every_job_in_flight() {
    let config = MockConfig {
        followers: 300,
        latency: Duration::from_millis(300),
        ..MockConfig::default()
    };
    let sys = System::new(config, 10_000).await;
    sys.seed_people(300).await;
    let jobs: Vec<Job> = good_people(200).map(|i| job(mp(i))).collect();
    let mut wc = WorkerConfig::default();
    wc.consumer.prefetch = 50;
    let worker = sys.start_worker(wc);
    sys.publish(&jobs).await;
    // Wait until sends are in flight at the fake WeChat, then stop.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sys.mock.stats().calls_to(Endpoint::TemplateSend) < 10 {
        assert!(tokio::time::Instant::now() < deadline, "no sends started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.stop().await;
    let states = sys.states().await;
    assert_eq!(
        states.get("sending"),
        None,
        "no job is left half done: {states:?}"
    );
    let sent = *states.get("sent").unwrap_or(&0);
    assert!(sent > 0 && sent < 200, "stopped mid-run: {states:?}");
    assert_eq!(
        sys.mock.stats().sends_accepted as i64,
        sent,
        "every accepted send is recorded"
    );
    // The rest waited in the queue; a new worker finishes them.
    let worker = sys.start_worker(WorkerConfig::default());
    sys.wait_finished(200, Duration::from_secs(60)).await;
    worker.stop().await;
    assert_eq!(sys.mock.stats().sends_accepted, 200);
}

#[tokio::test]
async fn a_worker_killed_mid_run_loses_nothing_and_sends_nothing_twice() {
    let config = MockConfig {
        followers: 600,
        latency: Duration::from_millis(20),
        ..MockConfig::default()
    };
    let sys = System::new(config, 10_000).await;
    sys.seed_people(600).await;
    // Some answers are lost after WeChat accepted the send: the resend is dropped by client_msg_id.
    sys.mock.set_faults(FaultPlan {
        rules: vec![
            FaultRule::new(Fault::AcceptThenDrop)
                .on(Endpoint::TemplateSend)
                .probability(0.05),
        ],
    });
    let jobs: Vec<Job> = good_people(500).map(|i| job(mp(i))).collect();
    sys.publish(&jobs).await;
    let mut child = worker_process(&sys);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sys.mock.stats().sends_accepted < 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker process sent nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().await.expect("kill -9 the worker");
    let _ = child.wait().await;
    let mut child = worker_process(&sys);
    sys.wait_finished(500, Duration::from_secs(90)).await;
    let _ = child.kill().await;
    let states = sys.states().await;
    assert_eq!(states.get("sent"), Some(&500), "{states:?}");
    let stats = sys.mock.stats();
    assert_eq!(
        stats.sends_accepted, 500,
        "WeChat delivered each job once: {stats:?}"
    );
}

/// `wxnotify worker` as a child process on `sys` (prefetch 64, the test topology's delivery
/// limit), killed when dropped.
pub fn worker_process(sys: &System) -> tokio::process::Child {
    worker_command(sys)
        .spawn()
        .expect("the wxnotify binary runs")
}

/// The command of [`worker_process`], to change before spawning (e.g. to read its log).
pub fn worker_command(sys: &System) -> tokio::process::Command {
    use secrecy::ExposeSecret;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxnotify"));
    command
        .arg("worker")
        .args(["--prefetch", "64"])
        .env("DATABASE_URL", sys.db.url())
        .env("AMQP_URL", sys.settings.amqp_url.expose_secret())
        .env("WECHAT_API_BASE", sys.mock.base_url().to_string())
        .env("WXNOTIFY_QUEUE_PREFIX", sys.topology.prefix())
        .env("WXNOTIFY_OA_APPID", mock_wechat::MOCK_OA_APPID)
        .env("WXNOTIFY_OA_SECRET", mock_wechat::MOCK_OA_SECRET)
        .env("WXNOTIFY_RATE_PER_SECOND", "10000")
        .env("WXNOTIFY_DELIVERY_LIMIT", "3")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn the_worker_reconnects_when_rabbitmq_closes_its_connection() {
    let config = MockConfig {
        followers: 400,
        latency: Duration::from_millis(10),
        ..MockConfig::default()
    };
    // 40 sends a second: the 300 jobs take over 7 s, so the close (rabbitmqctl takes a second
    // or two) lands mid-run.
    let sys = System::new(config, 40).await;
    sys.seed_people(400).await;
    let jobs: Vec<Job> = good_people(300).map(|i| job(mp(i))).collect();
    let mut wc = WorkerConfig::default();
    wc.consumer.prefetch = 20;
    let worker = sys.start_worker(wc);
    sys.publish(&jobs).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sys.mock.stats().sends_accepted < 30 {
        assert!(tokio::time::Instant::now() < deadline, "nothing sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let closed = close_connections_named("wxnotify-worker", sys.topology.prefix()).await;
    assert!(closed >= 1, "found the worker's connection");
    let sent_at_close = sys.mock.stats().sends_accepted;
    assert!(
        sent_at_close < 300,
        "the connection was closed mid-run, not after the last send ({sent_at_close} sent)"
    );
    sys.wait_finished(300, Duration::from_secs(60)).await;
    // The sends after the close went through a new connection of the same worker.
    assert!(
        close_connections_named("wxnotify-worker", sys.topology.prefix()).await >= 1,
        "the worker reconnected"
    );
    worker.stop().await;
    assert_eq!(sys.states().await.get("sent"), Some(&300));
    assert_eq!(sys.mock.stats().sends_accepted, 300);
    assert!(
        sys.dead_reasons().await.is_empty(),
        "nothing dead because of the outage"
    );
}

/// Closes, with rabbitmqctl, the broker connections whose name contains `name` and `prefix`
/// (so parallel tests are not touched).
async fn close_connections_named(name: &str, prefix: &str) -> usize {
    let out = tokio::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "pid",
            "client_properties",
            "-q",
            "--no-table-headers",
        ])
        .output()
        .await
        .expect("rabbitmqctl runs");
    let listing = String::from_utf8_lossy(&out.stdout);
    let mut closed = 0;
    for line in listing
        .lines()
        .filter(|l| l.contains(name) && l.contains(prefix))
    {
        let pid = line.split('\t').next().unwrap().trim();
        let out = tokio::process::Command::new("rabbitmqctl")
            .args(["close_connection", pid, "test closes the connection"])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "rabbitmqctl close_connection {pid}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        closed += 1;
    }
    closed
}

#[tokio::test]
async fn two_workers_share_the_apps_rate_limit() {
    let rate = 100;
    let config = MockConfig {
        followers: 700,
        ..MockConfig::default()
    };
    let sys = System::new(config, rate).await;
    sys.seed_people(700).await;
    let jobs: Vec<Job> = good_people(400).map(|i| job(mp(i))).collect();
    let a = sys.start_worker(WorkerConfig::default());
    let b = sys.start_worker(WorkerConfig::default());
    // Both have heartbeated before the jobs arrive.
    tokio::time::sleep(wxnotify_worker::rate_limit::HEARTBEAT * 2).await;
    sys.publish(&jobs).await;
    sys.wait_finished(400, Duration::from_secs(60)).await;
    let (sa, sb) = (a.stop().await, b.stop().await);
    assert!(
        sa.sent > 50 && sb.sent > 50,
        "both workers sent: {} and {}",
        sa.sent,
        sb.sent
    );
    let mut times: Vec<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT sent_at FROM deliveries WHERE state = 'sent' ORDER BY sent_at")
            .fetch_all(&sys.db.pool)
            .await
            .unwrap();
    times.sort();
    let first = times[0];
    // Every one-second window after the first second holds at most the rate (+ the 1% burst and
    // scheduling slack).
    let max_window = times
        .iter()
        .filter(|t| **t >= first + chrono::Duration::seconds(1))
        .map(|t| {
            times
                .iter()
                .filter(|u| **u >= *t && **u < *t + chrono::Duration::seconds(1))
                .count()
        })
        .max()
        .unwrap();
    assert!(
        max_window as f64 <= rate as f64 * 1.1,
        "{max_window} sends in one second, limit {rate}"
    );
    let span = (*times.last().unwrap() - first).num_milliseconds() as f64 / 1000.0;
    assert!(
        span >= 400.0 / rate as f64 * 0.8,
        "400 sends at {rate}/s took only {span} s"
    );
}

#[tokio::test]
async fn a_postgres_outage_holds_jobs_and_loses_or_kills_none() {
    let config = MockConfig {
        followers: 300,
        latency: Duration::from_millis(10),
        ..MockConfig::default()
    };
    let sys = System::new(config, 10_000).await;
    sys.seed_people(300).await;
    let jobs: Vec<Job> = good_people(200).map(|i| job(mp(i))).collect();
    let mut wc = WorkerConfig::default();
    wc.consumer.prefetch = 20;
    let worker = sys.start_worker(wc);
    sys.publish(&jobs).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sys.mock.stats().sends_accepted < 20 {
        assert!(tokio::time::Instant::now() < deadline, "nothing sent");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // An outage of this test's database only: refuse new connections and cut the open ones.
    set_database_reachable(&sys.db.name, false).await;
    let before = sys.mock.stats().sends_accepted;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = sys.mock.stats().sends_accepted;
    assert!(
        during - before <= 20,
        "without Postgres no new job is claimed: {} sends during the outage, prefetch 20",
        during - before
    );
    set_database_reachable(&sys.db.name, true).await;
    sys.wait_finished(200, Duration::from_secs(60)).await;
    let stats = worker.stop().await;
    assert!(
        during < 200,
        "the outage happened mid-run ({during} sent before it ended)"
    );
    assert_eq!(sys.states().await.get("sent"), Some(&200));
    assert!(
        sys.dead_reasons().await.is_empty(),
        "nothing dead because of the outage"
    );
    assert_eq!(sys.mock.stats().sends_accepted, 200, "each job sent once");
    assert_eq!(stats.sent, 200, "{stats:?}");
}

async fn set_database_reachable(name: &str, reachable: bool) {
    use sqlx::{ConnectOptions, Connection};
    let server: sqlx::postgres::PgConnectOptions = crate::support::server_url().parse().unwrap();
    let mut admin = server.connect().await.unwrap();
    let allow = if reachable { "true" } else { "false" };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    if !reachable {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
            .bind(name)
            .execute(&mut admin)
            .await
            .unwrap();
    }
    admin.close().await.ok();
}
