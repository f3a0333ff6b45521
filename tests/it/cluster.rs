//! RabbitMQ with several nodes in `AMQP_URL`: the worker connects to the first that answers.

use std::time::Duration;

use wxnotify_app::Application;
use wxnotify_core::domain::{Job, OpenId, Recipient};
use wxnotify_sandbox::mock_wechat;
use wxnotify_worker::WorkerConfig;

use crate::support::amqp_url;
use crate::system::{System, test_topology};

#[tokio::test]
async fn a_dead_first_node_in_amqp_url_the_worker_uses_the_second() {
    let sys = System::seeded(40).await;
    // Nothing listens on port 1: the first node is dead; the second is the test broker.
    let mut settings = sys.settings.clone();
    settings.amqp_url = format!("amqp://guest:guest@127.0.0.1:1/%2f,{}", amqp_url()).into();
    let mut config = WorkerConfig::default();
    config.consumer.topology = test_topology();
    let worker = Application::new(settings.clone(), sys.db.pool.clone())
        .worker(config)
        .expect("worker");
    let stats = worker.stats();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { worker.run(shutdown).await }
    });
    let jobs: Vec<Job> = (0..20)
        .map(|i| {
            crate::worker::job(Recipient::MpOpenid(
                OpenId::parse(mock_wechat::mp_openid(i)).unwrap(),
            ))
        })
        .collect();
    sys.publish(&jobs).await;
    sys.wait_finished(20, Duration::from_secs(30)).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the worker stops")
        .unwrap();
    let sent = stats.snapshot().sent;
    assert!(sent > 0, "the worker consumed through the second node");
    assert_eq!(sys.finished().await, 20);
}

/// Runs `scripts/rabbitmq-cluster.sh` with `args`; its standard output.
async fn cluster(args: &[&str]) -> String {
    let script = format!("{}/scripts/rabbitmq-cluster.sh", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(script)
        .args(args)
        .output()
        .await
        .expect("scripts/rabbitmq-cluster.sh runs");
    assert!(
        out.status.success(),
        "rabbitmq-cluster.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The three-node run: quorum queues on all three nodes, the node leading the jobs queue is
/// stopped mid-run; nothing is lost, nothing is dead-lettered, the drain goes on.
/// Run it with `scripts/rabbitmq-cluster.sh start` first (starting three nodes takes longer than
/// a test should): `WXNOTIFY_CLUSTER_AMQP_URL="$(scripts/rabbitmq-cluster.sh url)" cargo nextest
/// run --run-ignored only -E 'test(/loses_the_jobs_queue_leader/)'`.
#[tokio::test]
#[ignore = "needs the three-node cluster of scripts/rabbitmq-cluster.sh (docs/deployment.md)"]
async fn a_cluster_that_loses_the_jobs_queue_leader_loses_nothing() {
    use std::time::Instant;
    let url = std::env::var("WXNOTIFY_CLUSTER_AMQP_URL")
        .expect("WXNOTIFY_CLUSTER_AMQP_URL names the cluster's nodes (rabbitmq-cluster.sh url)");
    let jobs_n: u64 = 3000;
    let rate = 500;
    let queues = wxnotify_core::queue::TopologyOptions::default();
    let sys = System::new_on(
        mock_wechat::MockConfig {
            followers: jobs_n * 2,
            latency: Duration::from_millis(20),
            ..mock_wechat::MockConfig::default()
        },
        rate,
        url,
        queues.clone(),
    )
    .await;
    sys.seed_people(jobs_n * 2).await;
    let jobs_queue = format!("{}.jobs", sys.settings.queue_prefix);
    let members = cluster(&["members", &jobs_queue]).await;
    assert!(
        ["wxr1@", "wxr2@", "wxr3@"]
            .iter()
            .all(|n| members.contains(n)),
        "the jobs queue is replicated on the three nodes: {members}"
    );
    let mut config = WorkerConfig::default();
    config.consumer.topology = queues;
    let worker = Application::new(sys.settings.clone(), sys.db.pool.clone())
        .worker(config)
        .expect("worker");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { worker.run(shutdown).await }
    });
    let jobs: Vec<Job> = (0..jobs_n)
        .map(|i| {
            crate::worker::job(Recipient::MpOpenid(
                OpenId::parse(mock_wechat::mp_openid(i + i / 9)).unwrap(),
            ))
        })
        .collect();
    // The leader does not move before a failure: look it up first (the CLI is slow to start).
    let leader = cluster(&["leader", &jobs_queue]).await;
    assert!(leader.starts_with("wxr"), "a leader: {leader:?}");
    let started = Instant::now();
    sys.publish(&jobs).await;
    while sys.finished().await < jobs_n as i64 / 4 {
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = sys.finished().await;
    let stop = Instant::now();
    cluster(&["stop-node", &leader]).await;
    let stopped_in = stop.elapsed();
    let at_stopped = sys.finished().await;
    // The drain goes on: the next 100 jobs finish within seconds of the node's stop.
    while sys.finished().await < at_stopped + 100 {
        assert!(
            stop.elapsed() < Duration::from_secs(60),
            "the drain did not resume after stopping {leader}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resumed_in = stop.elapsed() - stopped_in;
    sys.wait_finished(jobs_n as i64, Duration::from_secs(120))
        .await;
    let total = started.elapsed();
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    cluster(&["start-node", &leader]).await;
    let states = sys.states().await;
    assert_eq!(
        states.get("sent").copied(),
        Some(jobs_n as i64),
        "{states:?}"
    );
    assert!(
        sys.dead_reasons().await.is_empty(),
        "{:?}",
        sys.dead_reasons().await
    );
    eprintln!(
        "figures: {jobs_n} jobs at {rate}/s; stopped {leader} (leader of {jobs_queue}) after {before} \
         finished ({at_stopped} when `rabbitmqctl stop` returned, {stopped_in:.1?} later); 100 more \
         finished {resumed_in:.1?} after that; all sent in {total:.1?}; dead letters 0"
    );
}
