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

/// The three-node run: quorum queues on all three nodes; one node stopped while `wxnotify
/// enqueue` publishes a file, another while the producer API's link publishes, and the node
/// leading the jobs queue killed -9 while two worker processes drain. Every job is sent exactly
/// once, as the fake WeChat counts them; nothing is dead; the drain finishes.
///
/// Start the cluster first (three nodes take longer to start than a test should):
/// `scripts/rabbitmq-cluster.sh start`, then
/// `WXNOTIFY_CLUSTER_AMQP_URL="$(scripts/rabbitmq-cluster.sh url)" cargo nextest run
/// --run-ignored only -E 'test(/cluster_that_loses_nodes/)' --no-capture` (docs/deployment.md).
#[tokio::test]
#[ignore = "needs the three-node cluster of scripts/rabbitmq-cluster.sh (docs/deployment.md)"]
async fn a_cluster_that_loses_nodes_loses_nothing_and_sends_nothing_twice() {
    use std::collections::HashMap;
    use std::time::Instant;
    let url = std::env::var("WXNOTIFY_CLUSTER_AMQP_URL")
        .expect("WXNOTIFY_CLUSTER_AMQP_URL names the cluster's nodes (rabbitmq-cluster.sh url)");
    let (file_jobs, api_jobs): (u64, u64) = (20_000, 2000);
    let total = file_jobs + api_jobs;
    let queues = wxnotify_core::queue::TopologyOptions::default();
    let sys = System::new_on(
        mock_wechat::MockConfig {
            followers: total * 2,
            latency: Duration::from_millis(5),
            max_recorded_sends: total as usize * 2,
            ..mock_wechat::MockConfig::default()
        },
        5000,
        url.clone(),
        queues.clone(),
    )
    .await;
    sys.seed_people(total * 2).await;
    let jobs_queue = format!("{}.jobs", sys.settings.queue_prefix);
    let members = cluster(&["members", &jobs_queue]).await;
    assert!(
        ["wxr1@", "wxr2@", "wxr3@"]
            .iter()
            .all(|n| members.contains(n)),
        "the jobs queue is replicated on the three nodes: {members}"
    );
    // Every tenth person of the fake has no unionid: job i goes to a person who can be reached.
    let job = |i: u64| {
        let mut job = crate::worker::job(Recipient::MpOpenid(
            OpenId::parse(mock_wechat::mp_openid(i + i / 9)).unwrap(),
        ));
        job.id = wxnotify_core::domain::JobId::parse(format!("cluster-{i}")).unwrap();
        job
    };

    // 1. `wxnotify enqueue` of a file; the first node (where it connects) stops meanwhile.
    let path = std::env::temp_dir().join(format!("{}.ndjson", sys.settings.queue_prefix));
    let lines: String = (0..file_jobs)
        .map(|i| String::from_utf8(job(i).to_json()).unwrap() + "\n")
        .collect();
    std::fs::write(&path, lines).unwrap();
    let enqueue = {
        use secrecy::ExposeSecret;
        tokio::process::Command::new(env!("CARGO_BIN_EXE_wxnotify"))
            .args(["enqueue", "--json", "--batch-size", "200", "--file"])
            .arg(&path)
            .env("DATABASE_URL", sys.db.url())
            .env("AMQP_URL", sys.settings.amqp_url.expose_secret())
            .env("WXNOTIFY_QUEUE_PREFIX", sys.topology.prefix())
            .env("WXNOTIFY_OA_APPID", mock_wechat::MOCK_OA_APPID)
            .env("WXNOTIFY_OA_SECRET", mock_wechat::MOCK_OA_SECRET)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output()
    };
    // `rabbitmqctl stop` takes a second or two to close the node's connections: the file is
    // long enough for the loss to come mid-file (the WARN below proves it did).
    let stop_first = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cluster(&["stop-node", "wxr1"]).await;
    };
    let (out, ()) = tokio::join!(enqueue, stop_first);
    let out = out.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "enqueue: {:?}\n{stderr}", out.status);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["accepted"], file_jobs, "{summary}");
    // The loss happened mid-file: `enqueue` (on wxr1, the first node of its URL) says so once.
    let lost = stderr
        .lines()
        .filter(|l| l.contains("RabbitMQ connection lost"))
        .collect::<Vec<_>>();
    assert_eq!(lost.len(), 1, "one WARN for the loss:\n{stderr}");
    assert!(lost[0].contains("127.0.0.1:5681"), "{stderr}");
    assert!(!stderr.contains("ERROR"), "{stderr}");
    cluster(&["start-node", "wxr1"]).await;

    // 2. The producer API's link: 200 requests of 10 jobs; the node it publishes to stops
    //    while they come in.
    let link = wxnotify_api::producer::link::BrokerLink::new(
        sys.settings.amqp_url.clone(),
        sys.topology.clone(),
        wxnotify_api::producer::link::ProducerOptions {
            connect_timeout: Duration::from_secs(15),
            ..Default::default()
        },
    );
    let request = |r: u64| {
        let link = &link;
        async move {
            tokio::time::sleep(Duration::from_millis(r.saturating_sub(1) * 20)).await;
            let jobs: Vec<Job> = (0..10).map(|k| job(file_jobs + r * 10 + k)).collect();
            let answer = link.publish(jobs).await;
            (answer, Instant::now())
        }
    };
    let (first, _) = request(0).await;
    let before = link.node().expect("connected by the first request");
    let node_name = |node: &str| {
        let port: u16 = node.rsplit(':').next().unwrap()[..4].parse().unwrap();
        format!("wxr{}", port - 5680)
    };
    let stopped = node_name(&before);
    let mut stop_began = None;
    let stop_link_node = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop_began = Some(Instant::now());
        cluster(&["stop-node", &stopped]).await;
    };
    let (answers, ()) = tokio::join!(
        futures::future::join_all((1..api_jobs / 10).map(request)),
        stop_link_node
    );
    let stop_began = stop_began.expect("the stop ran");
    let after_stop = answers.iter().filter(|(_, at)| *at > stop_began).count();
    for (answer, _) in std::iter::once((first, Instant::now())).chain(answers) {
        for result in answer.expect("a node answered") {
            result.expect("every job confirmed");
        }
    }
    let now = link.node().expect("connected");
    assert_ne!(now, before, "the link moved off the stopped node");
    assert!(
        after_stop > 0,
        "requests were answered after the node's stop began"
    );
    cluster(&["start-node", &stopped]).await;

    // 3. Two worker processes drain, connected to the node leading the jobs queue (first in
    //    their AMQP_URL); that node is killed -9 meanwhile.
    let leader = cluster(&["leader", &jobs_queue]).await;
    assert!(leader.starts_with("wxr"), "a leader: {leader:?}");
    let urls: Vec<&str> = url.split(',').collect();
    let port = 5680 + leader[3..].parse::<usize>().unwrap();
    let first = urls
        .iter()
        .position(|u| u.contains(&format!(":{port}/")))
        .expect("the leader's node is in the URL");
    let leader_first = urls[first..]
        .iter()
        .chain(&urls[..first])
        .copied()
        .collect::<Vec<_>>()
        .join(",");
    let worker = || {
        let mut command = crate::resilience::worker_command(&sys);
        command
            .env("AMQP_URL", &leader_first)
            .env("WXNOTIFY_DELIVERY_LIMIT", queues.delivery_limit.to_string())
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::piped());
        command.spawn().expect("a worker")
    };
    let (mut a, mut b) = (worker(), worker());
    let started = Instant::now();
    while (sys.mock.stats().sends_accepted as u64) < total / 4 {
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed_at_ms = now_ms();
    let sent_at_kill = sys.mock.stats().sends_accepted as u64;
    cluster(&["kill-node", &leader]).await;
    sys.wait_finished(total as i64, Duration::from_secs(180))
        .await;
    let drained = started.elapsed();
    for w in [&mut a, &mut b] {
        let pid = w.id().expect("running").to_string();
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await;
    }
    for w in [a, b] {
        let out = tokio::time::timeout(Duration::from_secs(30), w.wait_with_output())
            .await
            .expect("the worker stops")
            .unwrap();
        // Each worker was on the killed node and moved on: one WARN naming it.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lost = format!("127.0.0.1:{port}");
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("RabbitMQ connection lost") && l.contains(&lost)),
            "{stderr}"
        );
        assert!(!stderr.contains("ERROR"), "{stderr}");
    }
    cluster(&["start-node", &leader]).await;

    // Each job sent once, as the fake counts them.
    let sends = sys.mock.sends();
    let mut per_job: HashMap<String, u32> = HashMap::new();
    for send in &sends {
        *per_job
            .entry(send.client_msg_id.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let twice: Vec<_> = per_job.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    assert_eq!(per_job.len() as u64, total, "every job sent");
    assert_eq!(sys.states().await.get("sent").copied(), Some(total as i64));
    assert!(sys.dead_reasons().await.is_empty());
    // The kill hit the drain: jobs were left to send, and were sent after it.
    assert!(
        sent_at_kill < total,
        "{sent_at_kill} of {total} sent at the kill"
    );
    // The longest pause between two sends after the kill, and the time to the last send.
    let mut after: Vec<u64> = sends
        .iter()
        .map(|s| s.accepted_at_ms)
        .filter(|t| *t >= killed_at_ms)
        .collect();
    after.sort_unstable();
    let gap_ms = std::iter::once(killed_at_ms)
        .chain(after.iter().copied())
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    let finish_ms = after.last().map_or(0, |t| t - killed_at_ms);
    assert!(
        after.len() as u64 >= total - sent_at_kill,
        "the rest was sent after the kill: {} sends after, {sent_at_kill} before",
        after.len()
    );
    eprintln!(
        "figures: {total} jobs ({file_jobs} by enqueue through a stopped node, {api_jobs} by the \
         producer link through another); {leader} (leader of {jobs_queue}, the workers' node) \
         killed -9 after a quarter; longest pause between sends after the kill {gap_ms} ms; last \
         send {finish_ms} ms after the kill; drained in {drained:.1?}; each job sent once, none dead"
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
