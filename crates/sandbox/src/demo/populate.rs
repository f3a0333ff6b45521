//! Filling the mapping the way production does: the follower sync, Mini Program logins through
//! the HTTP API, and events on the OA callback.

use futures::{StreamExt, TryStreamExt};
use indicatif::MultiProgress;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::{bar, say};
use crate::mock_wechat::{self, MockConfig, MockEvent, MockWechat, PushMode};
use crate::scratch::SCRATCH_CALLBACK_TOKEN;
use wxnotify_app::Application;
use wxnotify_core::config::Settings;
use wxnotify_core::domain::AppName;
use wxnotify_core::wechat::Wechat;
use wxnotify_core::wechat::client::ClientOptions;
use wxnotify_services::followers::{Progress, SyncOptions, SyncReport, sync_followers};

/// `wxnotify serve`'s router, running in this process on a free port.
pub struct Api {
    base: Url,
    http: reqwest::Client,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Api {
    /// Serves the HTTP API for `settings` on 127.0.0.1:0, with the real [`wxnotify_api::serve`]
    /// (only the login limits are lifted: the demo logs thousands in from one address).
    pub async fn start(settings: &Settings, pool: &PgPool) -> anyhow::Result<Api> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Self::start_on(listener, settings, pool).await
    }

    /// Like [`start`](Self::start), on `listener`.
    pub async fn start_on(
        listener: tokio::net::TcpListener,
        settings: &Settings,
        pool: &PgPool,
    ) -> anyhow::Result<Api> {
        let unlimited = std::num::NonZeroU32::new(10_000_000).expect("non-zero");
        let edge = wxnotify_api::EdgeOptions {
            login: wxnotify_api::edge::login_limits::LoginLimits {
                per_client_per_minute: unlimited,
                global_per_minute: unlimited,
                client_ip_header: None,
            },
            ..wxnotify_api::EdgeOptions::default()
        };
        let base = Url::parse(&format!("http://{}", listener.local_addr()?))?;
        let options = wxnotify_api::ServeOptions {
            listener,
            ops_listener: None,
            admin_listener: None,
            edge,
            limits: wxnotify_api::ServerLimits::default(),
            producer: wxnotify_api::producer::link::ProducerOptions::default(),
        };
        let app = Application::new(settings.clone(), pool.clone());
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                if let Err(e) = app.serve(options, stop.cancelled_owned()).await {
                    tracing::error!(error = %format!("{e:#}"), "the demo's HTTP API stopped");
                }
            }
        });
        Ok(Api {
            base,
            http: reqwest::Client::new(),
            stop,
            task,
        })
    }

    /// Stops serving.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// Where it serves.
    pub fn base(&self) -> &Url {
        &self.base
    }

    fn callback(&self) -> Url {
        self.base.join("/wechat/callback").expect("a valid path")
    }
}

/// Syncs every follower of the default app.
pub async fn sync(
    settings: &Settings,
    pool: &PgPool,
    bars: &MultiProgress,
) -> anyhow::Result<SyncReport> {
    let Wechat { client, tokens } = Wechat::build(settings, pool, &ClientOptions::default())?;
    let report = sync_followers(
        pool,
        &client,
        &tokens,
        &AppName::default_app(),
        &SyncOptions::default(),
        &Progress::hidden(),
    )
    .await?;
    say(bars, &format!("follower sync: {}", report.summary()));
    Ok(report)
}

/// Logs persons `0..people` in through `POST /v1/miniprogram/login` with fresh `wx.login()`
/// codes; returns (logins, notifiable).
pub async fn logins(
    api: &Api,
    mock: &MockWechat,
    people: u64,
    bars: &MultiProgress,
) -> anyhow::Result<(u64, u64)> {
    let progress = bars.add(bar(people, "logins"));
    let url = api.base.join("/v1/miniprogram/login")?;
    let answers: Vec<bool> = futures::stream::iter(0..people)
        .map(|i| {
            let body = serde_json::json!({ "code": mock.issue_login_code(i) });
            let (http, url, progress) = (&api.http, &url, &progress);
            async move {
                let answer: serde_json::Value = http
                    .post(url.clone())
                    .json(&body)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                progress.inc(1);
                anyhow::Ok(answer["notifiable"].as_bool().unwrap_or(false))
            }
        })
        .buffer_unordered(32)
        .try_collect()
        .await?;
    progress.finish_and_clear();
    let notifiable = answers.iter().filter(|n| **n).count() as u64;
    say(
        bars,
        &format!(
            "Mini Program logins: {} ({notifiable} notifiable)",
            answers.len()
        ),
    );
    Ok((answers.len() as u64, notifiable))
}

/// Some followers unfollow after the sync: half of them tell wxnotify through the callback
/// (`unsubscribe` event), the other half only WeChat knows about (their sends get 43004).
/// Returns the people who unfollowed.
pub async fn unfollow(
    api: &Api,
    mock: &MockWechat,
    cfg: &MockConfig,
    people: u64,
) -> anyhow::Result<Vec<(u64, bool)>> {
    let mode = PushMode::Plain {
        token: SCRATCH_CALLBACK_TOKEN.into(),
    };
    let leaving: Vec<u64> = (0..people)
        .filter(|i| {
            i % 97 == 3
                && mock_wechat::seeded_follower(*i, cfg)
                && mock_wechat::unionid(*i, cfg).is_some()
        })
        .collect();
    let mut out = Vec::new();
    for (k, person) in leaving.into_iter().enumerate() {
        let told = k % 2 == 0;
        if told {
            let answer = mock
                .push_event(&api.callback(), &MockEvent::Unsubscribe { person }, &mode)
                .await?;
            anyhow::ensure!(
                answer.status == 200,
                "the callback refused an unsubscribe: {answer:?}"
            );
        } else {
            mock.unsubscribe(person);
        }
        out.push((person, told));
    }
    Ok(out)
}

/// Pushes `TEMPLATESENDJOBFINISH` for up to `n` accepted sends; returns how many receipts the
/// ledger stored.
pub async fn receipts(
    api: &Api,
    mock: &MockWechat,
    pool: &PgPool,
    n: usize,
) -> anyhow::Result<u64> {
    let mode = PushMode::Plain {
        token: SCRATCH_CALLBACK_TOKEN.into(),
    };
    for send in mock.sends().into_iter().take(n) {
        let event = MockEvent::TemplateSendJobFinish {
            msgid: send.msgid,
            status: "success".into(),
        };
        mock.push_event(&api.callback(), &event, &mode).await?;
    }
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM deliveries WHERE receipt_status IS NOT NULL",
    )
    .fetch_one(pool)
    .await? as u64)
}

/// Each person of `grants` accepts the demo's subscribe template that many times in the fake
/// WeChat's popup (WeChat's side of the grants), and wxnotify's grant ledger counts the same
/// (`mp_grants`, as its grant sources record acceptances). Returns the grants given.
pub async fn grants(
    settings: &Settings,
    mock: &MockWechat,
    pool: &PgPool,
    grants: &std::collections::BTreeMap<u64, u64>,
) -> anyhow::Result<u64> {
    let http = reqwest::Client::new();
    let template = super::jobs::SUBSCRIBE_TEMPLATE;
    let popup = mock.base_url().join("mock/mp/popup")?;
    for (&person, &times) in grants {
        for _ in 0..times {
            http.post(popup.clone())
                .json(&serde_json::json!({"person": person, "results": {template: "accept"}}))
                .send()
                .await?
                .error_for_status()?;
        }
    }
    let app = settings
        .apps
        .first()
        .map(|a| a.name.to_string())
        .unwrap_or_default();
    let (openids, counts): (Vec<String>, Vec<i64>) = grants
        .iter()
        .map(|(&p, &n)| (mock_wechat::mp_openid(p), n as i64))
        .unzip();
    sqlx::query(
        "INSERT INTO mp_grants (app, mp_openid, template_id, granted)
         SELECT $1, t.mp_openid, $2, t.granted FROM UNNEST($3::text[], $4::bigint[]) AS t(mp_openid, granted)",
    )
    .bind(app)
    .bind(template)
    .bind(openids)
    .bind(counts)
    .execute(pool)
    .await?;
    Ok(grants.values().sum())
}
