//! The RabbitMQ topology, publishing with confirms, and `wxnotify enqueue` / `migrate`, against
//! the real broker. Every test has its own prefix, deleted at the end even when it fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use lapin::message::BasicGetMessage;
use lapin::options::{BasicGetOptions, BasicRejectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ExchangeKind};
use wxnotify_core::domain::Job;
use wxnotify_core::queue::{
    ATTEMPT_HEADER, Lane, PublishError, Publisher, PublisherOptions, Topology, TopologyError,
    TopologyOptions, publish_ndjson,
};

use crate::support::{TestDb, amqp_url, queue_prefix};

/// A test's own prefix on the broker, with a connection, a channel and a publisher. Dropping
/// it deletes every queue and exchange of the prefix.
struct Broker {
    topology: Topology,
    channel: Channel,
    publisher: Publisher,
}

impl Broker {
    /// A fresh prefix with its topology declared.
    async fn declared(opts: TopologyOptions) -> Broker {
        let broker = Broker::bare().await;
        broker
            .topology
            .declare(&broker.channel, &opts)
            .await
            .unwrap();
        broker
    }

    /// A fresh prefix with nothing declared.
    async fn bare() -> Broker {
        let topology = Topology::new(queue_prefix());
        let connection = Arc::new(connect().await);
        let channel = connection.create_channel().await.unwrap();
        let publisher = Publisher::new(
            connection.clone(),
            topology.clone(),
            PublisherOptions::default(),
        )
        .await
        .unwrap();
        Broker {
            topology,
            channel,
            publisher,
        }
    }

    /// Messages ready in `queue`.
    async fn count(&self, queue: &str) -> u32 {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let q = self
            .channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
            .unwrap();
        q.message_count()
    }

    /// Polls `queue` until it holds `n` messages or `within` passes.
    async fn wait_for_count(&self, queue: &str, n: u32, within: Duration) -> u32 {
        let deadline = Instant::now() + within;
        loop {
            let count = self.count(queue).await;
            if count == n || Instant::now() > deadline {
                return count;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `queue` with basic.get (manual ack) until a message comes or `within` passes.
    async fn get(&self, queue: &str, within: Duration) -> Option<BasicGetMessage> {
        let deadline = Instant::now() + within;
        loop {
            let msg = self
                .channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: false })
                .await
                .unwrap();
            if msg.is_some() || Instant::now() > deadline {
                return msg;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let topology = self.topology.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let connection = connect().await;
                let channel = connection.create_channel().await.unwrap();
                topology.delete(&channel).await.expect("clean-up");
                let _ = connection.close(200, "bye".into()).await;
            });
        })
        .join()
        .expect("deleting the test's queues");
    }
}

async fn connect() -> Connection {
    wxnotify_core::queue::connect(&amqp_url().into(), "wxnotify tests")
        .await
        .expect("the test broker runs (AMQP_URL)")
}

fn job(id: &str) -> Job {
    let json = format!(
        r#"{{"id":"{id}","to":{{"mp_openid":"oMP{id}"}},"template_id":"tpl","data":{{"thing1":"hello"}}}}"#
    );
    Job::from_json(json.as_bytes()).unwrap()
}

fn header<'a>(msg: &'a BasicGetMessage, name: &str) -> Option<&'a AMQPValue> {
    msg.delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(name))
}

fn as_int(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(v) => Some((*v).into()),
        AMQPValue::ShortInt(v) => Some((*v).into()),
        AMQPValue::LongInt(v) => Some((*v).into()),
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::ShortShortUInt(v) => Some((*v).into()),
        AMQPValue::ShortUInt(v) => Some((*v).into()),
        AMQPValue::LongUInt(v) => Some((*v).into()),
        _ => None,
    }
}

fn as_text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The `reason` of each entry of the `x-death` header.
fn death_reasons(msg: &BasicGetMessage) -> Vec<String> {
    let Some(AMQPValue::FieldArray(deaths)) = header(msg, "x-death") else {
        return vec![];
    };
    deaths
        .as_slice()
        .iter()
        .filter_map(|d| match d {
            AMQPValue::FieldTable(t) => t.inner().get("reason").and_then(as_text),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn declaring_the_topology_twice_is_fine() {
    let broker = Broker::declared(TopologyOptions::default()).await;
    broker
        .topology
        .declare(&broker.channel, &TopologyOptions::default())
        .await
        .expect("a second declaration changes nothing");
    for queue in broker.topology.queues() {
        assert_eq!(broker.count(&queue).await, 0, "{queue}");
    }
}

#[tokio::test]
async fn redeclaring_with_other_limits_names_the_queue_and_the_fix() {
    let broker = Broker::declared(TopologyOptions::default()).await;
    let other = TopologyOptions {
        delivery_limit: 3,
        ..TopologyOptions::default()
    };
    let err = broker
        .topology
        .declare(&broker.channel, &other)
        .await
        .unwrap_err();
    let TopologyError::Inequivalent { name, .. } = &err else {
        panic!("expected Inequivalent, got {err:?}");
    };
    assert_eq!(name, &broker.topology.lane_queue(Lane::Jobs));
    let text = err.to_string();
    assert!(text.contains("x-delivery-limit"), "{text}");
    assert!(text.contains("policy"), "{text}");
}

#[tokio::test]
async fn a_published_job_is_confirmed_and_waits_in_its_lane_as_a_persistent_json_message() {
    let broker = Broker::declared(TopologyOptions::default()).await;
    let job = job("order-1-shipped");
    broker.publisher.publish(&job, Lane::Jobs).await.unwrap();

    let queue = broker.topology.lane_queue(Lane::Jobs);
    let msg = broker.get(&queue, Duration::from_secs(5)).await.unwrap();
    let props = &msg.delivery.properties;
    assert_eq!(*props.delivery_mode(), Some(2), "persistent");
    assert_eq!(
        props.content_type().as_ref().map(|c| c.as_str()),
        Some("application/json")
    );
    assert_eq!(
        props.message_id().as_ref().map(|m| m.as_str()),
        Some("order-1-shipped")
    );
    assert_eq!(header(&msg, ATTEMPT_HEADER).and_then(as_int), Some(1));
    assert_eq!(msg.delivery.routing_key.as_str(), "jobs");
    assert_eq!(Job::from_json(&msg.delivery.data).unwrap(), job);
    assert_eq!(
        broker.count(&broker.topology.lane_queue(Lane::Bulk)).await,
        0
    );
}

#[tokio::test]
async fn publishing_where_no_queue_is_bound_fails_as_unroutable() {
    let broker = Broker::bare().await;
    // The main exchange exists, but no queue is bound to it.
    broker
        .channel
        .exchange_declare(
            broker.topology.exchange().as_str().into(),
            ExchangeKind::Direct,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let err = broker.publisher.publish(&job("j1"), Lane::Jobs).await;
    assert!(matches!(err, Err(PublishError::Unroutable)), "{err:?}");

    let batch: Vec<Job> = (0..20).map(|i| job(&format!("b{i}"))).collect();
    let results = broker.publisher.publish_batch(&batch, Lane::Bulk).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(PublishError::Unroutable))),
        "{results:?}"
    );
}

#[tokio::test]
async fn an_unroutable_publish_does_not_taint_the_next_one() {
    let broker = Broker::declared(TopologyOptions::default()).await;
    let exchange = broker.topology.exchange();
    let err = broker
        .publisher
        .publish_raw(&exchange, "nowhere", b"{}", FieldTable::default(), None)
        .await;
    assert!(matches!(err, Err(PublishError::Unroutable)), "{err:?}");
    for i in 0..8 {
        // Round-robin visits every channel of the pool.
        let job = job(&format!("after-{i}"));
        broker.publisher.publish(&job, Lane::Jobs).await.unwrap();
    }
}

#[tokio::test]
async fn publishing_to_a_missing_exchange_fails_and_the_publisher_recovers() {
    let broker = Broker::declared(TopologyOptions::default()).await;
    let missing = format!("{}.missing", broker.topology.prefix());
    let err = broker
        .publisher
        .publish_raw(&missing, "jobs", b"{}", FieldTable::default(), None)
        .await;
    let Err(PublishError::Broker(source)) = err else {
        panic!("expected a broker error, got {err:?}");
    };
    assert!(source.to_string().contains("NOT_FOUND"), "{source}");
    // The broker closed that channel; the publisher opens another.
    let publisher = broker.publisher.clone();
    for i in 0..8 {
        publisher
            .publish(&job(&format!("j{i}")), Lane::Jobs)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_batch_of_a_thousand_jobs_is_confirmed() {
    let broker = Broker::declared(TopologyOptions::default()).await;
    let jobs: Vec<Job> = (0..1000).map(|i| job(&format!("batch-{i}"))).collect();
    let started = Instant::now();
    let results = broker.publisher.publish_batch(&jobs, Lane::Bulk).await;
    let elapsed = started.elapsed();
    assert_eq!(results.len(), 1000);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    eprintln!(
        "1000 jobs confirmed in {elapsed:?} ({:.0} jobs/s)",
        1000.0 / elapsed.as_secs_f64()
    );
    let queue = broker.topology.lane_queue(Lane::Bulk);
    assert_eq!(
        broker
            .wait_for_count(&queue, 1000, Duration::from_secs(5))
            .await,
        1000
    );
}

#[tokio::test]
async fn publishers_shared_across_tasks_confirm_every_job() {
    let broker = Broker::declared(TopologyOptions::default()).await;
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let publisher = broker.publisher.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let job = job(&format!("t{t}-{i}"));
                    publisher.publish(&job, Lane::Jobs).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let queue = broker.topology.lane_queue(Lane::Jobs);
    assert_eq!(
        broker
            .wait_for_count(&queue, 400, Duration::from_secs(5))
            .await,
        400
    );
}

#[tokio::test]
async fn a_full_lane_refuses_publishes_with_a_nack() {
    let broker = Broker::declared(TopologyOptions {
        max_length: 1,
        ..TopologyOptions::default()
    })
    .await;
    let mut outcomes = vec![];
    for i in 0..10 {
        let result = broker
            .publisher
            .publish(&job(&format!("full-{i}")), Lane::Jobs)
            .await;
        let nacked = matches!(result, Err(PublishError::Nacked));
        outcomes.push(result);
        if nacked {
            break;
        }
    }
    assert!(outcomes[0].is_ok(), "{outcomes:?}");
    assert!(
        matches!(outcomes.last(), Some(Err(PublishError::Nacked))),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_message_in_the_1s_tier_returns_to_its_lane_after_about_a_second() {
    let broker = Broker::declared(TopologyOptions::default()).await;
    let tier = "1s";
    let mut headers = FieldTable::default();
    headers.insert("x-test".into(), AMQPValue::LongString("kept".into()));
    let started = Instant::now();
    let body = job("retry-1").to_json();
    let delay = broker
        .publisher
        .publish_retry(
            &body,
            "retry-1",
            Lane::Bulk,
            2,
            // The 1 s tier's own delay: no per-message expiration, the tier's TTL decides (a
            // shorter, jittered delay would set one and come back sooner).
            Duration::from_secs(1),
            headers,
        )
        .await
        .unwrap();
    assert_eq!(delay, Duration::from_secs(1), "the {tier} tier");

    let lane = broker.topology.lane_queue(Lane::Bulk);
    let msg = broker
        .get(&lane, Duration::from_secs(10))
        .await
        .expect("the message came back to its lane");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "back after {waited:?}"
    );
    assert_eq!(msg.delivery.routing_key.as_str(), "bulk");
    assert_eq!(header(&msg, ATTEMPT_HEADER).and_then(as_int), Some(2));
    assert_eq!(
        header(&msg, "x-test").and_then(as_text).as_deref(),
        Some("kept")
    );
    assert_eq!(death_reasons(&msg), vec!["expired".to_owned()]);
    assert_eq!(broker.count(&broker.topology.retry_queue(tier)).await, 0);
    assert_eq!(
        broker.count(&broker.topology.lane_queue(Lane::Jobs)).await,
        0
    );
}

#[tokio::test]
async fn a_message_rejected_past_the_delivery_limit_is_dead_lettered_by_the_broker() {
    let limit = 2;
    let broker = Broker::declared(TopologyOptions {
        delivery_limit: limit,
        ..TopologyOptions::default()
    })
    .await;
    broker
        .publisher
        .publish(&job("poison"), Lane::Jobs)
        .await
        .unwrap();

    let lane = broker.topology.lane_queue(Lane::Jobs);
    let mut deliveries = 0;
    while let Some(msg) = broker.get(&lane, Duration::from_secs(2)).await {
        deliveries += 1;
        assert!(deliveries <= limit + 1, "still delivered after the limit");
        let requeue = BasicRejectOptions { requeue: true };
        msg.delivery.acker.reject(requeue).await.unwrap();
    }
    assert_eq!(
        deliveries,
        limit + 1,
        "first delivery plus {limit} redeliveries"
    );

    let dead = broker
        .get(&broker.topology.dead_queue(), Duration::from_secs(5))
        .await
        .expect("the broker dead-lettered it");
    assert_eq!(
        dead.delivery
            .properties
            .message_id()
            .as_ref()
            .unwrap()
            .as_str(),
        "poison"
    );
    assert_eq!(death_reasons(&dead), vec!["delivery_limit".to_owned()]);
}

const GOOD_LINE: &str =
    r#"{"id":"good-1","to":{"unionid":"u1"},"template_id":"tpl","data":{"thing1":"hi"}}"#;

fn mixed_ndjson() -> String {
    let oversized = format!(
        r#"{{"to":{{"unionid":"u"}},"template_id":"t","data":{{"k":"{}"}}}}"#,
        "x".repeat(20_000)
    );
    [
        GOOD_LINE,
        "{not json",
        &oversized,
        r#"{"to":{"unionid":"u"},"template_id":"t","data":{"k":"v"},"url":"javascript:alert(1)"}"#,
        "",
        r#"{"id":"good-2","to":{"mp_openid":"o2"},"template_id":"tpl","data":{"thing1":"hi"}}"#,
    ]
    .join("\n")
}

#[tokio::test]
async fn enqueue_reports_bad_lines_by_number_and_publishes_the_good_ones() {
    let broker = Broker::declared(TopologyOptions::default()).await;
    let input = mixed_ndjson();
    let summary = publish_ndjson(
        &broker.publisher,
        Lane::Bulk,
        input.as_bytes(),
        2,
        &ProgressBar::hidden(),
    )
    .await
    .unwrap();
    assert_eq!(summary.accepted, 2);
    let lines: Vec<u64> = summary.rejected.iter().map(|r| r.line).collect();
    assert_eq!(lines, vec![2, 3, 4], "{summary:?}");
    assert!(summary.rejected[1].reason.contains("bytes"), "{summary:?}");
    assert!(
        summary.rejected[2].reason.contains("http or https"),
        "{summary:?}"
    );
    let queue = broker.topology.lane_queue(Lane::Bulk);
    assert_eq!(
        broker
            .wait_for_count(&queue, 2, Duration::from_secs(5))
            .await,
        2
    );
}

fn wxnotify_command(prefix: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxnotify"));
    cmd.env("AMQP_URL", amqp_url())
        .env("WXNOTIFY_QUEUE_PREFIX", prefix)
        .env("RUST_LOG", "warn")
        .env_remove("WXNOTIFY_CONFIG")
        .env_remove("WXNOTIFY_OA_APPID");
    cmd
}

#[tokio::test]
async fn the_enqueue_command_prints_a_json_summary_and_exits_1_when_lines_are_rejected() {
    let broker = Broker::declared(TopologyOptions::default()).await;
    let path = std::env::temp_dir().join(format!("{}.ndjson", broker.topology.prefix()));
    std::fs::write(&path, mixed_ndjson()).unwrap();
    let out = wxnotify_command(broker.topology.prefix())
        .args(["enqueue", "--lane", "bulk", "--json", "--file"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    std::fs::remove_file(&path).ok();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["accepted"], 2);
    assert_eq!(summary["rejected"], 3);
    let lines: Vec<u64> = summary["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![2, 3, 4]);
}

#[tokio::test]
async fn the_enqueue_command_publishes_one_job_from_flags() {
    let broker = Broker::declared(TopologyOptions::default()).await;
    let out = wxnotify_command(broker.topology.prefix())
        .args(["enqueue", "--to-unionid", "u1", "--template", "tpl"])
        .args([
            "--data",
            "thing1=Shipped",
            "--data",
            "time2=2026-11-24 10:00",
        ])
        .args(["--id", "order-9", "--json"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["job_ids"][0], "order-9");
    let msg = broker
        .get(
            &broker.topology.lane_queue(Lane::Jobs),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let job = Job::from_json(&msg.delivery.data).unwrap();
    assert_eq!(job.id.as_str(), "order-9");
    assert_eq!(
        job.data.as_ref().and_then(|d| d.get("time2")),
        Some("2026-11-24 10:00")
    );
}

#[tokio::test]
async fn the_enqueue_command_exits_2_and_asks_for_migrate_when_the_topology_is_missing() {
    let broker = Broker::bare().await;
    let out = wxnotify_command(broker.topology.prefix())
        .args(["enqueue", "--job", GOOD_LINE])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("wxnotify migrate"), "{stderr}");
}

#[tokio::test]
async fn the_enqueue_command_exits_3_without_showing_the_password_when_the_broker_is_away() {
    let out = wxnotify_command(&queue_prefix())
        .env("AMQP_URL", "amqp://guest:s3cretpass@127.0.0.1:1/%2f")
        .args(["enqueue", "--job", GOOD_LINE])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(!stderr.contains("s3cretpass"), "{stderr}");
}

#[tokio::test]
async fn migrate_applies_the_schema_and_declares_the_topology_idempotently() {
    let db = TestDb::new().await;
    let broker = Broker::bare().await;
    for run in 0..2 {
        let out = wxnotify_command(broker.topology.prefix())
            .env("DATABASE_URL", db.url())
            .arg("migrate")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "run {run}: {stdout}{stderr}");
        assert!(stdout.contains("quorum queues"), "{stdout}");
    }
    for queue in broker.topology.queues() {
        assert_eq!(broker.count(&queue).await, 0, "{queue} exists");
    }
}
