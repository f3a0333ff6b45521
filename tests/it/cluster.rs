//! RabbitMQ with several nodes in `AMQP_URL`: the worker connects to the first that answers.

use std::time::Duration;

use wxnotify::delivery::{Worker, WorkerConfig};
use wxnotify::domain::{Job, OpenId, Recipient};
use wxnotify::wechat::mock;

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
    let worker = Worker::new(&settings, sys.db.pool.clone(), config).expect("worker");
    let stats = worker.stats();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { worker.run(shutdown).await }
    });
    let jobs: Vec<Job> = (0..20)
        .map(|i| {
            crate::worker::job(Recipient::MpOpenid(
                OpenId::parse(mock::mp_openid(i)).unwrap(),
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
