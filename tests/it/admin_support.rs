//! The world of the admin API and console tests: a whole system (RabbitMQ, Postgres, the fake
//! WeChat, a worker), the admin surface served on port 0 with an admin and a viewer token, and
//! dead letters made by the real worker: four refused by WeChat with 43101 and two with 40037.

use std::time::Duration;

use serde_json::Value;
use url::Url;
use wxnotify_api::admin::{self, AdminOptions, AdminState};
use wxnotify_core::domain::{Job, OpenId, Recipient, TemplateData};
use wxnotify_sandbox::mock_wechat::{self, Endpoint, Fault, FaultPlan, FaultRule, MockTemplate};
use wxnotify_worker::WorkerConfig;

use crate::system::{RunningWorker, System};

pub const ADMIN_TOKEN: &str = "admin-test-token-0123456789-abcdefghijkl";
pub const VIEWER_TOKEN: &str = "viewer-test-token-0123456789-abcdefghijk";
pub const WAIT: Duration = Duration::from_secs(30);

#[allow(dead_code)] // the state and the worker are kept alive for the test
pub struct AdminWorld {
    pub sys: System,
    pub base: Url,
    pub state: AdminState,
    pub worker: Option<RunningWorker>,
    /// Jobs whose sends WeChat refused with 43101.
    pub refused: Vec<Job>,
    /// Jobs with a template WeChat does not know (40037).
    pub unknown_template: Vec<Job>,
}

fn job(person: u64, template: &str) -> Job {
    Job::new(
        Recipient::MpOpenid(OpenId::parse(mock_wechat::mp_openid(person)).unwrap()),
        template.parse().unwrap(),
        TemplateData::from_pairs(&[("thing1", "订单已发货"), ("time2", "2026-11-24 10:00")])
            .unwrap(),
    )
}

/// Serves the admin surface of `sys` with `admin_token` / `viewer_token` on port 0.
pub async fn serve_admin(
    sys: &System,
    admin_token: Option<&str>,
    viewer_token: Option<&str>,
) -> (Url, AdminState) {
    let mut settings = sys.settings.clone();
    settings.admin_token = admin_token.map(Into::into);
    let options = AdminOptions {
        viewer_token: viewer_token.map(Into::into),
        ..AdminOptions::default()
    };
    let state = AdminState::new(sys.db.pool.clone(), &settings, options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = admin::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (Url::parse(&format!("http://{addr}/")).unwrap(), state)
}

impl AdminWorld {
    /// The world with its six dead letters; the worker keeps running (replays get sent).
    pub async fn new() -> AdminWorld {
        let sys = System::seeded(20).await;
        let (base, state) = serve_admin(&sys, Some(ADMIN_TOKEN), Some(VIEWER_TOKEN)).await;
        sys.mock.set_faults(FaultPlan::from(
            FaultRule::new(Fault::Errcode(43101))
                .on(Endpoint::TemplateSend)
                .times(4),
        ));
        // A category template (WeChat's list lacks it, so the worker sends its jobs unchecked)
        // that WeChat answers 40037 to: dead at once, WeChat being the authority.
        sys.mock.add_template(MockTemplate::new(
            "TPL_UNKNOWN",
            "Retired",
            &["thing1", "time2"],
        ));
        let worker = sys.start_worker(WorkerConfig::default());
        let refused: Vec<Job> = (1..=4).map(|p| job(p, "TPL_ORDER_SHIPPED")).collect();
        sys.publish(&refused).await;
        sys.wait_finished(4, WAIT).await;
        sys.mock.set_faults(FaultPlan::from(
            FaultRule::new(Fault::Errcode(40037))
                .on(Endpoint::TemplateSend)
                .times(2),
        ));
        let unknown_template: Vec<Job> = (5..=6).map(|p| job(p, "TPL_UNKNOWN")).collect();
        sys.publish(&unknown_template).await;
        sys.wait_finished(6, WAIT).await;
        let world = AdminWorld {
            sys,
            base,
            state,
            worker: Some(worker),
            refused,
            unknown_template,
        };
        assert_eq!(
            world
                .count("SELECT count(*) FROM dead_letters WHERE errcode = 43101")
                .await,
            4
        );
        assert_eq!(
            world
                .count("SELECT count(*) FROM dead_letters WHERE errcode = 40037")
                .await,
            2
        );
        world
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.sys.db.pool)
            .await
            .unwrap()
    }

    /// Ledger states of `jobs`.
    pub async fn states(&self, jobs: &[Job]) -> Vec<String> {
        let mut out = Vec::new();
        for j in jobs {
            out.push(self.sys.state(&j.id).await.unwrap_or_default());
        }
        out
    }

    /// Waits until every job of `jobs` is in `state`.
    pub async fn wait_state(&self, jobs: &[Job], state: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let states = self.states(jobs).await;
            if states.iter().all(|s| s == state) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "jobs not {state} in {WAIT:?}: {states:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap()
    }

    /// An admin API call: method, path, token, JSON body → (status, JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new().request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let response = req.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}
