//! The producer API under test: a [`System`] (database, queues, fake WeChat) with `serve` on
//! port 0 serving `/v1/notifications`, an API key, and a RabbitMQ node of the test's own that
//! it may stop (the shared broker is never stopped).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use reqwest::header::HeaderMap;
use secrecy::SecretString;
use serde_json::Value;
use url::Url;
use wxnotify_api::producer::api_keys;
use wxnotify_api::producer::link::{ProducerApi, ProducerOptions};
use wxnotify_api::{AppState, health, router};
use wxnotify_core::config::AppConfig;
use wxnotify_core::domain::AppName;
use wxnotify_core::queue::Topology;
use wxnotify_core::wechat::client::ClientOptions;
use wxnotify_core::wechat::{TokenStore, WechatClient};

use crate::system::{System, test_topology};

/// An answer: status, headers, JSON body (`Null` when not JSON).
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

/// `serve` with the producer API on a system.
pub struct Api {
    pub sys: System,
    pub base: Url,
    /// A key of the default app.
    pub key: String,
    pub http: reqwest::Client,
}

impl Api {
    /// A seeded system (persons `0..20` known), serve publishing to the shared broker.
    pub async fn start() -> Api {
        let sys = System::seeded(20).await;
        let amqp = sys.settings.amqp_url.clone();
        let topology = sys.topology.clone();
        Api::serve(sys, amqp, topology, &[]).await
    }

    /// Serves the API of `sys` publishing to `topology` on the broker at `amqp`; `extra_apps`
    /// are configured (and registered) besides the default app.
    pub async fn serve(
        sys: System,
        amqp: SecretString,
        topology: Topology,
        extra_apps: &[AppConfig],
    ) -> Api {
        let rate = ProducerOptions::default().key_requests_per_second;
        Api::serve_with_key_rate(sys, amqp, topology, extra_apps, rate).await
    }

    /// [`Api::serve`] with `key_rate` requests per second per API key.
    pub async fn serve_with_key_rate(
        sys: System,
        amqp: SecretString,
        topology: Topology,
        extra_apps: &[AppConfig],
        key_rate: Option<std::num::NonZeroU32>,
    ) -> Api {
        let mut apps = sys.settings.apps.clone();
        apps.extend_from_slice(extra_apps);
        wxnotify_core::db::register_apps(&sys.db.pool, &apps)
            .await
            .unwrap();
        let client = WechatClient::new(sys.mock.base_url(), &ClientOptions::default()).unwrap();
        let tokens = TokenStore::new(sys.db.pool.clone(), client.clone(), &apps);
        let producer = ProducerApi::new(
            sys.db.pool.clone(),
            amqp,
            topology,
            &apps,
            ProducerOptions {
                reconnect_every: Duration::from_millis(100),
                connect_timeout: Duration::from_secs(2),
                confirm_timeout: Duration::from_secs(5),
                key_requests_per_second: key_rate,
                ..ProducerOptions::default()
            },
        );
        let state = AppState::new(
            sys.db.pool.clone(),
            client,
            tokens,
            &apps,
            health::metrics_handle(),
        )
        .unwrap()
        .with_producer(producer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
        let key = api_keys::create(&sys.db.pool, &AppName::default_app(), Some("tests"))
            .await
            .unwrap()
            .key;
        Api {
            sys,
            base: Url::parse(&format!("http://{addr}/")).unwrap(),
            key,
            http: reqwest::Client::new(),
        }
    }

    /// POSTs `body` to `path` with `key` (none when `None`).
    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Answer {
        let mut request = self.http.post(self.base.join(path).unwrap()).json(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        answer(request.send().await.unwrap()).await
    }

    /// GETs `path` with `key`.
    pub async fn get(&self, path: &str, key: Option<&str>) -> Answer {
        let mut request = self.http.get(self.base.join(path).unwrap());
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        answer(request.send().await.unwrap()).await
    }

    /// The status of job `id` with the default key.
    pub async fn status(&self, id: &str) -> Answer {
        self.get(&format!("v1/notifications/{id}"), Some(&self.key))
            .await
    }

    /// Polls the status of `id` until `done` holds for it (10 ms apart, 30 s at most).
    pub async fn wait_status(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let a = self.status(id).await;
            if a.status == 200 && done(&a.body) {
                return a.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "status of {id} never reached the expected state: {} {}",
                a.status,
                a.body
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// A good job body for mock person `person` (known Mini Program user, following).
pub fn job_body(id: &str, person: u64) -> Value {
    serde_json::json!({
        "id": id,
        "to": {"mp_openid": wxnotify_sandbox::mock_wechat::mp_openid(person)},
        "template_id": "TPL_ORDER_SHIPPED",
        "data": {"thing1": "订单已发货", "time2": {"value": "2026-11-24 10:00"}}
    })
}

/// Messages waiting in `queue` on the broker at `url`.
pub async fn queue_depth(url: &SecretString, queue: &str) -> u32 {
    let connection = wxnotify_core::queue::connect(url, "wxnotify-test-depth")
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let q = channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    let n = q.message_count();
    let _ = connection.close(200, "done".into()).await;
    n
}

/// A RabbitMQ node of this test's own (its own node name, ports and data directory, the shared
/// installation's Erlang cookie), which the test may stop and start. Stopped and removed when
/// dropped. Needs root (it runs the node as the `rabbitmq` user, like the packaged service).
pub struct PrivateBroker {
    pub node: String,
    pub port: u16,
    dist: u16,
    dir: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PrivateBroker {
    /// Starts a fresh node and waits until it accepts AMQP connections.
    pub async fn start() -> PrivateBroker {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let port = free_port();
        let broker = PrivateBroker {
            node: format!("wxtest{}@localhost", &id[..10]),
            port,
            dist: free_port(),
            dir: std::env::temp_dir().join(format!("wxnotify-broker-{}", &id[..10])),
        };
        std::fs::create_dir_all(&broker.dir).unwrap();
        std::fs::write(
            broker.dir.join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\n"),
        )
        .unwrap();
        std::fs::write(broker.dir.join("enabled_plugins"), "[].\n").unwrap();
        let status = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(&broker.dir)
            .status()
            .expect("chown");
        assert!(status.success(), "chown of the broker directory failed");
        broker.launch().await;
        broker
    }

    fn rabbit(&self, script: &str) -> std::process::ExitStatus {
        let dir = self.dir.display();
        let env = format!(
            "cd /var/lib/rabbitmq && HOME=/var/lib/rabbitmq RABBITMQ_NODENAME={node} \
             RABBITMQ_NODE_PORT={port} RABBITMQ_DIST_PORT={dist} RABBITMQ_MNESIA_BASE={dir}/mnesia \
             RABBITMQ_LOG_BASE={dir}/log RABBITMQ_CONFIG_FILE={dir}/rabbitmq.conf \
             RABBITMQ_ENABLED_PLUGINS_FILE={dir}/enabled_plugins /usr/lib/rabbitmq/bin/{script}",
            node = self.node,
            port = self.port,
            dist = self.dist,
        );
        Command::new("su")
            .args(["rabbitmq", "-s", "/bin/sh", "-c", &env])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("su rabbitmq")
    }

    /// Starts the node (again) and waits for its AMQP port.
    pub async fn launch(&self) {
        assert!(
            self.rabbit("rabbitmq-server -detached").success(),
            "the private RabbitMQ node did not start"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        while wxnotify_core::queue::connect(&self.url(), "wxnotify-test-probe")
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the private RabbitMQ node did not accept connections in 90 s"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops the node (its data stays for [`PrivateBroker::launch`]).
    pub fn stop(&self) {
        self.rabbit(&format!("rabbitmqctl -n {} stop", self.node));
    }

    /// Its AMQP URL.
    pub fn url(&self) -> SecretString {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port).into()
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Declares the test topology of `prefix` on the broker at `url`.
pub async fn declare(url: &SecretString, topology: &Topology) {
    let connection = wxnotify_core::queue::connect(url, "wxnotify-test-declare")
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    topology.declare(&channel, &test_topology()).await.unwrap();
    let _ = connection.close(200, "done".into()).await;
}
