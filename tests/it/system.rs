//! A whole wxnotify against the fake WeChat: a fresh database, a queue prefix, the topology, a
//! publisher and workers run in-process (`spawn_app()` style). Dropping it removes the queues.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lapin::Connection;
use wxnotify_app::Application;
use wxnotify_core::config::Settings;
use wxnotify_core::domain::{Job, JobId};
use wxnotify_core::queue::{Lane, Publisher, PublisherOptions, Topology, TopologyOptions};
use wxnotify_sandbox::mock_wechat::{MockConfig, MockWechat};
use wxnotify_sandbox::scratch;
use wxnotify_worker::{StatsSnapshot, WorkerConfig};

use crate::support::{TestDb, amqp_url, queue_prefix};

/// The OA server URL Token of the test app.
pub const CALLBACK_TOKEN: &str = scratch::SCRATCH_CALLBACK_TOKEN;

/// A running system under test.
pub struct System {
    pub db: TestDb,
    pub mock: MockWechat,
    pub mock_config: MockConfig,
    pub settings: Settings,
    pub topology: Topology,
    pub publisher: Publisher,
    /// Kept open for the test's lifetime (the publisher uses it).
    _connection: Arc<Connection>,
}

/// A worker running in a task.
pub struct RunningWorker {
    pub shutdown: tokio_util::sync::CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
    pub stats: Arc<wxnotify_worker::WorkerStats>,
}

impl RunningWorker {
    /// Graceful stop: returns when in-flight jobs are recorded.
    pub async fn stop(self) -> StatsSnapshot {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the worker stops within 30 s")
            .expect("the worker task does not panic");
        self.stats.snapshot()
    }
}

impl System {
    /// A system with the default app on the fake WeChat, `rate` sends per second.
    pub async fn new(mock_config: MockConfig, rate: u32) -> System {
        System::new_on(mock_config, rate, amqp_url(), test_topology()).await
    }

    /// The same on the broker(s) of `amqp_url`, with queues declared with `queues`.
    pub async fn new_on(
        mock_config: MockConfig,
        rate: u32,
        amqp_url: String,
        queues: TopologyOptions,
    ) -> System {
        let db = TestDb::new().await;
        let mock = MockWechat::start(mock_config.clone())
            .await
            .expect("fake WeChat starts");
        let prefix = queue_prefix();
        let settings = scratch::fake_wechat_settings(&db.url(), &amqp_url, &mock, &prefix, rate)
            .expect("test settings");
        wxnotify_core::db::register_apps(&db.pool, &settings.apps)
            .await
            .unwrap();
        let connection = Arc::new(
            wxnotify_core::queue::connect(&settings.amqp_url, "wxnotify-test")
                .await
                .expect("RabbitMQ"),
        );
        let topology = Topology::new(prefix);
        let channel = connection.create_channel().await.unwrap();
        topology.declare(&channel, &queues).await.expect("topology");
        let publisher = Publisher::new(
            connection.clone(),
            topology.clone(),
            PublisherOptions::default(),
        )
        .await
        .expect("publisher");
        System {
            db,
            mock,
            mock_config,
            settings,
            topology,
            publisher,
            _connection: connection,
        }
    }

    /// A system whose fake WeChat knows `people` persons (the default mix), all of them already
    /// known to wxnotify (logged in, synced), sending at 1,000 per second.
    pub async fn seeded(people: u64) -> System {
        let sys = System::new(
            MockConfig {
                followers: people,
                ..MockConfig::default()
            },
            1000,
        )
        .await;
        sys.seed_people(people).await;
        sys
    }

    /// Records persons `0..n` of the fake as Mini Program users and OA followers, as logins and
    /// the follower sync would.
    pub async fn seed_people(&self, n: u64) {
        wxnotify_sandbox::scratch::seed_mapping(&self.db.pool, n, &self.mock_config)
            .await
            .unwrap();
    }

    /// Starts a worker with `config` (its topology options are the test ones).
    pub fn start_worker(&self, mut config: WorkerConfig) -> RunningWorker {
        config.consumer.topology = test_topology();
        let worker = Application::new(self.settings.clone(), self.db.pool.clone())
            .worker(config)
            .expect("worker");
        let stats = worker.stats();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move { worker.run(token).await });
        RunningWorker {
            shutdown,
            task,
            stats,
        }
    }

    /// Publishes jobs on the transactional lane.
    pub async fn publish(&self, jobs: &[Job]) {
        for r in self.publisher.publish_batch(jobs, Lane::Jobs).await {
            r.expect("published");
        }
    }

    /// Publishes raw bytes on a lane, as a producer in another language might.
    pub async fn publish_raw(&self, body: &[u8]) {
        self.publisher
            .publish_raw(
                &self.topology.exchange(),
                Lane::Jobs.routing_key(),
                body,
                Default::default(),
                None,
            )
            .await
            .expect("published");
    }

    /// The ledger state of a job.
    pub async fn state(&self, id: &JobId) -> Option<String> {
        sqlx::query_scalar("SELECT state FROM deliveries WHERE job_id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.db.pool)
            .await
            .unwrap()
    }

    /// Waits until `n` jobs are finished (sent or dead in the ledger, plus dead letters without
    /// a ledger row), or panics after `timeout`.
    pub async fn wait_finished(&self, n: i64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let done = self.finished().await;
            if done >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {done} of {n} jobs finished in {timeout:?}: {:?}",
                self.states().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Finished jobs: sent, dead, held (for WeChat's review) or duplicate (40241) ledger rows,
    /// plus dead letters that have no ledger row.
    pub async fn finished(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM deliveries WHERE state IN ('sent', 'dead', 'held', 'duplicate'))
                  + (SELECT count(*) FROM dead_letters d
                     WHERE NOT EXISTS (SELECT 1 FROM deliveries l
                                       WHERE l.app = d.app AND l.job_id = d.job_id))",
        )
        .fetch_one(&self.db.pool)
        .await
        .unwrap()
    }

    /// Ledger rows by state.
    pub async fn states(&self) -> HashMap<String, i64> {
        sqlx::query_as::<_, (String, i64)>("SELECT state, count(*) FROM deliveries GROUP BY state")
            .fetch_all(&self.db.pool)
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    /// Dead letters by reason.
    pub async fn dead_reasons(&self) -> HashMap<String, i64> {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT reason, count(*) FROM dead_letters GROUP BY reason",
        )
        .fetch_all(&self.db.pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
    }
}

impl Drop for System {
    fn drop(&mut self) {
        let topology = self.topology.clone();
        let url = self.settings.amqp_url.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread with a
        // runtime (and a connection) of its own.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let Ok(connection) =
                    wxnotify_core::queue::connect(&url, "wxnotify-test-cleanup").await
                else {
                    return;
                };
                if let Ok(channel) = connection.create_channel().await {
                    let _ = topology.delete(&channel).await;
                }
                let _ = connection.close(200, "test over".into()).await;
            });
        })
        .join()
        .ok();
    }
}

/// Queue arguments for tests: a small delivery limit so poison messages die quickly.
pub fn test_topology() -> TopologyOptions {
    TopologyOptions {
        delivery_limit: 3,
        ..TopologyOptions::default()
    }
}
