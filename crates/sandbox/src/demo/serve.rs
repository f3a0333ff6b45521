//! `wxnotify-sandbox demo --serve`: the demo's whole system, left running for a person to use.
//!
//! The fake WeChat with named people and templates, a database and queue prefix of its own, the
//! people logged in through the Mini Program login and the OA's followers synced (a job reaches
//! a Mini Program user only once both happened), a worker with the campaign dispatcher, and
//! `serve` with the console on one address. It prints the API key, the admin token, ready to
//! paste `curl` lines, the console's URL and the `export` lines that point the `wxnotify` CLI
//! at it; [`DemoServer::stop`] (on Ctrl-C or SIGTERM) stops everything and removes what it made.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use indicatif::MultiProgress;
use rand::RngCore;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use super::populate;
use crate::mock_wechat::{self, MockConfig, MockTemplate, MockWechat};
use crate::scratch::Scratch;
use wxnotify_app::Application;
use wxnotify_core::config::Settings;
use wxnotify_core::domain::AppName;
use wxnotify_worker::WorkerConfig;

/// The named people of the demo: person `i` of the fake WeChat is `PEOPLE[i]`.
pub const PEOPLE: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

/// The demo's templates: id, title, keys, and example values.
pub const TEMPLATES: [(&str, &str, &[&str], &[&str]); 2] = [
    (
        "order_shipped",
        "订单发货提醒",
        &["thing1", "time2"],
        &["Your order shipped", "2026-12-12 10:00"],
    ),
    (
        "payment_ok",
        "支付成功通知",
        &["amount1", "thing2", "time3"],
        &["¥99.00", "Winter coat", "2026-12-12 10:00"],
    ),
];

/// What `demo --serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where `serve` (the API and the console) listens.
    pub listen: SocketAddr,
    /// Where the fake WeChat listens.
    pub mock_listen: SocketAddr,
    /// Followers of the fake OA besides the named people (campaigns go to all of them).
    pub followers: u64,
    /// Template sends per second allowed for the default app.
    pub rate: u32,
}

/// The running demo system.
pub struct DemoServer {
    api: populate::Api,
    mock: MockWechat,
    scratch: Scratch,
    api_base: url::Url,
    api_key: String,
    admin_token: String,
    rate: u32,
    stop: CancellationToken,
    worker: tokio::task::JoinHandle<()>,
    dispatcher: tokio::task::JoinHandle<()>,
}

fn token(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn mock_config(followers: u64) -> MockConfig {
    MockConfig {
        followers: PEOPLE.len() as u64 + followers,
        // Everyone follows and has a unionid: the demo is about what a person does next.
        no_unionid_every: 0,
        unsubscribed_every: 0,
        templates: TEMPLATES
            .iter()
            .map(|(id, title, keys, _)| MockTemplate::new(id, title, keys))
            .collect(),
        list_category_templates: true,
        ..MockConfig::default()
    }
}

impl DemoServer {
    /// Starts the whole system on the Postgres server and RabbitMQ of `base`.
    pub async fn start(opts: &ServeOptions, base: &Settings) -> anyhow::Result<DemoServer> {
        let config = mock_config(opts.followers);
        let mock = MockWechat::start_on(config, opts.mock_listen).await?;
        let scratch = match Scratch::create(base, "demo", &mock, opts.rate).await {
            Ok(s) => s,
            Err(e) => {
                mock.shutdown().await;
                return Err(e);
            }
        };
        match Self::fill(opts, scratch, mock).await {
            Ok(server) => Ok(server),
            Err((e, scratch, mock)) => {
                scratch.remove().await;
                mock.shutdown().await;
                Err(e)
            }
        }
    }

    /// Everything after the scratch environment: on failure it is handed back for removal.
    async fn fill(
        opts: &ServeOptions,
        mut scratch: Scratch,
        mock: MockWechat,
    ) -> Result<DemoServer, (anyhow::Error, Scratch, MockWechat)> {
        let admin_token = token("demo-admin-");
        scratch.settings.admin_token = Some(admin_token.clone().into());
        let started = async {
            let listener = tokio::net::TcpListener::bind(opts.listen)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot listen on {}: {e}; pick another address with --listen",
                        opts.listen
                    )
                })?;
            let api = populate::Api::start_on(listener, &scratch.settings, &scratch.pool).await?;
            let quiet = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
            populate::sync(&scratch.settings, &scratch.pool, &quiet).await?;
            populate::logins(&api, &mock, PEOPLE.len() as u64 + opts.followers, &quiet).await?;
            let key = wxnotify_api::producer::api_keys::create(
                &scratch.pool,
                &AppName::default_app(),
                Some("demo"),
            )
            .await?;
            anyhow::Ok((api, key.key))
        }
        .await;
        let (api, api_key) = match started {
            Ok(v) => v,
            Err(e) => return Err((e, scratch, mock)),
        };
        let stop = CancellationToken::new();
        let worker = match Application::new(scratch.settings.clone(), scratch.pool.clone())
            .worker(WorkerConfig::default())
        {
            Ok(w) => Arc::new(w),
            Err(e) => {
                api.stop().await;
                return Err((e, scratch, mock));
            }
        };
        let worker_task = tokio::spawn({
            let (worker, stop) = (worker.clone(), stop.clone());
            async move { worker.run(stop).await }
        });
        let dispatcher = tokio::spawn(wxnotify_services::campaigns::dispatcher::run_until(
            scratch.settings.clone(),
            scratch.pool.clone(),
            Default::default(),
            stop.clone(),
        ));
        Ok(DemoServer {
            api_base: api.base().clone(),
            api,
            mock,
            scratch,
            api_key,
            admin_token,
            rate: opts.rate,
            stop,
            worker: worker_task,
            dispatcher,
        })
    }

    /// The base URL of `serve` (the API and the console).
    pub fn api_base(&self) -> &url::Url {
        &self.api_base
    }

    /// The database this demo made.
    pub fn database(&self) -> &str {
        &self.scratch.db_name
    }

    /// The queue prefix this demo made.
    pub fn queue_prefix(&self) -> &str {
        self.scratch.topology.prefix()
    }

    /// What a person needs to use the running system: who and what is there, the curl lines,
    /// the console and the `export` lines for the `wxnotify` CLI.
    pub fn banner(&self) -> String {
        let api = self.api_base.as_str().trim_end_matches('/');
        let fake = self
            .mock
            .base_url()
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        let key = &self.api_key;
        let settings = &self.scratch.settings;
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(
            "wxnotify demo system running: the fake WeChat, a worker and `serve` with the console."
                .into(),
        );
        line(format!(
            "It made the database {} and the queues {}.*; Ctrl-C removes them.",
            self.scratch.db_name,
            self.queue_prefix()
        ));
        line(String::new());
        line("People (Mini Program users of the fake WeChat). Each has logged in through".into());
        line(
            "POST /v1/miniprogram/login and the OA's followers were synced: a job reaches a Mini"
                .into(),
        );
        line("Program user only after both (the login gives wxnotify the unionid, the sync the OA openid).".into());
        for (i, name) in PEOPLE.iter().enumerate() {
            line(format!(
                "  {name:<6} mp_openid {}",
                mock_wechat::mp_openid(i as u64)
            ));
        }
        line("Templates (app `default`):".into());
        for (id, title, keys, _) in TEMPLATES {
            line(format!("  {id:<14} {title}  fields: {}", keys.join(", ")));
        }
        line(String::new());
        line(format!("API key (app default):  {key}"));
        line(format!("Admin token:            {}", self.admin_token));
        line(format!(
            "Console:                {api}/admin  (log in with the admin token)"
        ));
        line(String::new());
        line("Send alice her order notice:".into());
        line(format!("  {}", send_curl(api, key, "hello-alice-1", 0)));
        line("Where it is:".into());
        line(format!(
            "  curl -sS {api}/v1/notifications/hello-alice-1 -H 'Authorization: Bearer {key}'"
        ));
        line(String::new());
        line("For the wxnotify CLI (status, dlq, campaign …) and the steps of docs/getting-started.md, paste:".into());
        line(format!(
            "  export DATABASE_URL='{}' AMQP_URL='{}' WXNOTIFY_QUEUE_PREFIX='{}' WXNOTIFY_RATE_PER_SECOND='{}'",
            settings.database_url.expose_secret(),
            settings.amqp_url.expose_secret(),
            self.queue_prefix(),
            self.rate
        ));
        line(format!(
            "  export WECHAT_API_BASE='{fake}' WXNOTIFY_OA_APPID='{}' WXNOTIFY_OA_SECRET='{}' WXNOTIFY_MP_APPID='{}' WXNOTIFY_MP_SECRET='{}'",
            mock_wechat::MOCK_OA_APPID,
            mock_wechat::MOCK_OA_SECRET,
            mock_wechat::MOCK_MP_APPID,
            mock_wechat::MOCK_MP_SECRET
        ));
        line(format!(
            "  export DEMO_API='{api}' DEMO_KEY='{key}' DEMO_ADMIN_TOKEN='{}' DEMO_FAKE_WECHAT='{fake}'",
            self.admin_token
        ));
        line("(the fake WeChat's credentials are fake and public, not secrets)".into());
        out
    }

    /// Stops the worker, the dispatcher, `serve` and the fake WeChat, and removes the database
    /// and the queues.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.worker.await;
        let _ = self.dispatcher.await;
        self.api.stop().await;
        self.scratch.remove().await;
        self.mock.shutdown().await;
    }
}

/// The `curl` line that sends template `order_shipped` to person `person` as job `id`.
fn send_curl(api: &str, key: &str, id: &str, person: u64) -> String {
    let (template, _, keys, values) = TEMPLATES[0];
    let data: serde_json::Map<String, serde_json::Value> = keys
        .iter()
        .zip(values.iter())
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
        .collect();
    let body = serde_json::json!({
        "id": id,
        "to": { "mp_openid": mock_wechat::mp_openid(person) },
        "template_id": template,
        "data": data,
    });
    format!(
        "curl -sS -X POST {api}/v1/notifications -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{body}'"
    )
}

/// Runs `demo --serve` until Ctrl-C or SIGTERM, printing the banner once the system is up.
pub async fn run(opts: ServeOptions) -> anyhow::Result<()> {
    let base = Settings::from_env()?;
    eprintln!("starting the demo system (fake WeChat, database, queues, worker, serve) …");
    let server = DemoServer::start(&opts, &base).await?;
    println!("{}", server.banner());
    wxnotify_app::process::shutdown_signal().await;
    eprintln!("stopping: removing the database and the queues …");
    tokio::time::timeout(Duration::from_secs(30), server.stop())
        .await
        .map_err(|_| anyhow::anyhow!("the demo did not stop within 30 s"))?;
    eprintln!("stopped; nothing of the demo is left.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_send_line_names_a_person_and_a_template_of_the_fake() {
        let line = send_curl("http://127.0.0.1:8080", "wxn_k", "a-1", 0);
        assert!(line.contains(&mock_wechat::mp_openid(0)));
        assert!(line.contains(r#""template_id":"order_shipped""#));
        let body = line.rsplit_once(" -d '").unwrap().1.trim_end_matches('\'');
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["data"]["thing1"], "Your order shipped");
    }

    #[test]
    fn the_example_values_fit_their_fields() {
        for (id, _, keys, values) in TEMPLATES {
            assert_eq!(keys.len(), values.len(), "{id}");
            for (k, v) in keys.iter().zip(values.iter()) {
                if k.starts_with("thing") {
                    assert!(
                        v.chars().count() <= 20,
                        "{id}.{k}: {v:?} is over 20 characters"
                    );
                }
            }
        }
    }
}
