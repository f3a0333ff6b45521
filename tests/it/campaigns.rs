//! Bulk campaigns against the real Postgres and RabbitMQ and the fake WeChat: the snapshot and
//! its unreachable reasons, the dispatcher (crash and restart, two at once), pause / resume /
//! cancel, windows, the daily cap and the transactional reserve, 45009, the admin endpoints and
//! receipts in the campaign's numbers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use secrecy::SecretString;
use tower::ServiceExt;
use uuid::Uuid;
use wxnotify_core::domain::{AppName, Job, OpenId, Recipient, TemplateData, TemplateId, UnionId};
use wxnotify_sandbox::mock_wechat::{self, Endpoint, Fault, FaultRule, MockConfig};
use wxnotify_services::campaigns::audience::{self, ListEntry};
use wxnotify_services::campaigns::pacing::QuotaSettings;
use wxnotify_services::campaigns::store::{self, AudienceSource, NewCampaign};
use wxnotify_services::campaigns::{
    Action, CampaignState, Dispatcher, DispatcherOptions, Pacing, SendWindow, progress,
};
use wxnotify_worker::WorkerConfig;

use crate::system::{RunningWorker, System};

pub(crate) const TEMPLATE: &str = "TPL_ORDER_SHIPPED";

pub(crate) fn new_campaign(rate: u32) -> NewCampaign {
    NewCampaign {
        app: AppName::default_app(),
        template_id: TemplateId::parse(TEMPLATE).unwrap(),
        data: TemplateData::from_pairs(&[("thing1", "Winter sale"), ("time2", "2026-12-12")])
            .unwrap(),
        url: None,
        miniprogram: None,
        not_after: None,
        pacing: Pacing {
            rate_per_second: rate,
            window: None,
            time_zone: chrono_tz::UTC,
            start_at: None,
            daily_cap: None,
        },
        created_by: "test".into(),
        name: None,
        truncate: false,
        mp_subscribe: None,
    }
}

pub(crate) fn fast() -> DispatcherOptions {
    DispatcherOptions {
        tick: Duration::from_millis(20),
        lease: Duration::from_secs(1),
        backlog_seconds: 10.0,
        max_chunk: 2_000,
    }
}

/// A dispatcher on its own connection, as another process would have.
pub(crate) async fn dispatcher(
    sys: &System,
    quota: QuotaSettings,
    options: DispatcherOptions,
) -> Dispatcher {
    let conn = Arc::new(
        wxnotify_core::queue::connect(&sys.settings.amqp_url, "campaign-test")
            .await
            .unwrap(),
    );
    Dispatcher::new(
        sys.db.pool.clone(),
        conn,
        sys.topology.clone(),
        quota,
        options,
    )
    .await
    .unwrap()
}

pub(crate) struct Running {
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
    published: Arc<std::sync::atomic::AtomicU64>,
}

pub(crate) fn spawn(d: Dispatcher) -> Running {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let published = d.published();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        let _ = d.run(token).await;
    });
    Running {
        shutdown,
        task,
        published,
    }
}

impl Running {
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Polls `f` every 20 ms until it is true, or panics after `timeout` with `what`.
pub(crate) async fn until<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn state(sys: &System, id: Uuid) -> CampaignState {
    store::get(&sys.db.pool, id).await.unwrap().state
}

async fn cursor(sys: &System, id: Uuid) -> i64 {
    store::get(&sys.db.pool, id).await.unwrap().dispatched
}

/// Asserts every reachable recipient of `id` was accepted by the fake exactly once.
async fn assert_each_sent_once(sys: &System, id: Uuid) {
    let reachable: Vec<String> = sqlx::query_scalar(
        "SELECT oa_openid FROM campaign_recipients WHERE campaign_id = $1 AND send_seq IS NOT NULL",
    )
    .bind(id)
    .fetch_all(&sys.db.pool)
    .await
    .unwrap();
    let mut per_user: HashMap<String, usize> = HashMap::new();
    for s in sys.mock.sends() {
        *per_user.entry(s.touser).or_default() += 1;
    }
    for r in &reachable {
        assert_eq!(per_user.get(r), Some(&1), "recipient {r} sent once");
    }
    assert_eq!(per_user.len(), reachable.len(), "nobody else was sent to");
}

async fn followers_campaign(sys: &System, new: &NewCampaign) -> Uuid {
    let report = store::create(&sys.db.pool, new, 1000, AudienceSource::Followers)
        .await
        .unwrap();
    report.id
}

fn worker(sys: &System) -> RunningWorker {
    sys.start_worker(WorkerConfig::default())
}

#[tokio::test]
async fn an_audience_with_every_kind_of_unreachable_recipient_records_the_reasons_before_sending() {
    let sys = System::seeded(20).await;
    // Person 1 unfollowed since the sync; person 9 has no unionid (every 10th).
    sqlx::query("UPDATE oa_followers SET subscribed = false WHERE oa_openid = $1")
        .bind(mock_wechat::oa_openid(1))
        .execute(&sys.db.pool)
        .await
        .unwrap();
    let mp = |i: u64| Recipient::MpOpenid(OpenId::parse(mock_wechat::mp_openid(i)).unwrap());
    let mut list: Vec<ListEntry> = (0..10)
        .map(|i| ListEntry {
            to: mp(i),
            data: None,
        })
        .collect();
    list.push(ListEntry {
        to: Recipient::MpOpenid(OpenId::parse("oNeverLoggedIn").unwrap()),
        data: None,
    });
    list.push(ListEntry {
        to: Recipient::Unionid(UnionId::parse("uNobodyFollows").unwrap()),
        data: None,
    });
    // Person 3 again, by OA openid: one person, kept once.
    list.push(ListEntry {
        to: Recipient::OaOpenid(OpenId::parse(mock_wechat::oa_openid(3)).unwrap()),
        data: None,
    });
    let report = store::create(
        &sys.db.pool,
        &new_campaign(100),
        1000,
        AudienceSource::List(Box::new(audience::list_items(list))),
    )
    .await
    .unwrap();
    assert_eq!(report.reachable, 8, "{report:?}");
    assert_eq!(report.unreachable["unknown_mp_user"], 1);
    assert_eq!(report.unreachable["no_unionid"], 1);
    assert_eq!(report.unreachable["not_following"], 2);
    assert_eq!(report.audience, 12);
    assert_eq!(report.repeats, 1);
    let reasons: HashMap<String, String> = sqlx::query_as(
        "SELECT recipient, unreachable FROM campaign_recipients WHERE campaign_id = $1 AND unreachable IS NOT NULL",
    )
    .bind(report.id)
    .fetch_all(&sys.db.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(reasons["oNeverLoggedIn"], "unknown_mp_user");
    assert_eq!(reasons[&mock_wechat::mp_openid(9)], "no_unionid");
    assert_eq!(reasons[&mock_wechat::mp_openid(1)], "not_following");
    assert_eq!(reasons["uNobodyFollows"], "not_following");
    let deliveries: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
        .fetch_one(&sys.db.pool)
        .await
        .unwrap();
    assert_eq!(deliveries, 0, "nothing is sent by a snapshot");
    let preview = wxnotify_services::campaigns::preview(&sys.db.pool, report.id)
        .await
        .unwrap();
    assert_eq!((preview.reachable, preview.audience), (8, 12));
}

#[tokio::test]
async fn a_recipients_file_with_bad_lines_reports_them_by_line_and_keeps_the_rest() {
    let sys = System::seeded(10).await;
    let dir = std::env::temp_dir().join(format!("wxnotify-campaign-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("recipients.csv");
    std::fs::write(
        &path,
        format!(
            "mp_openid,thing1\n{},Order 1\n{},a,b\n{},\"Order 3\"\nnot an openid!,x\n",
            mock_wechat::mp_openid(0),
            mock_wechat::mp_openid(1),
            mock_wechat::mp_openid(2),
        ),
    )
    .unwrap();
    let report = store::create(
        &sys.db.pool,
        &new_campaign(100),
        1000,
        AudienceSource::File(audience::read_file(&path).unwrap()),
    )
    .await
    .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(report.bad_lines.count, 2, "{report:?}");
    let lines: Vec<u64> = report.bad_lines.first.iter().map(|b| b.line).collect();
    assert_eq!(lines, [3, 5]);
    assert_eq!(report.reachable, 2);
    let data: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT data FROM campaign_recipients WHERE campaign_id = $1 AND recipient = $2",
    )
    .bind(report.id)
    .bind(mock_wechat::mp_openid(2))
    .fetch_one(&sys.db.pool)
    .await
    .unwrap();
    assert_eq!(data.unwrap()["thing1"], "Order 3");
}

#[tokio::test]
async fn a_dispatcher_killed_mid_campaign_and_restarted_sends_every_recipient_exactly_once() {
    let sys = System::seeded(300).await;
    let id = followers_campaign(&sys, &new_campaign(150)).await;
    let w = worker(&sys);
    store::apply(&sys.db.pool, id, Action::Start, "test")
        .await
        .unwrap();
    let first = spawn(dispatcher(&sys, QuotaSettings::default(), fast()).await);
    until(Duration::from_secs(20), "a third dispatched", || async {
        cursor(&sys, id).await >= 100
    })
    .await;
    // A crash: the task dies without releasing its lease.
    first.task.abort();
    let _ = first.task.await;
    let at_crash = cursor(&sys, id).await;
    let reachable = store::get(&sys.db.pool, id).await.unwrap().reachable;
    assert!(at_crash < reachable, "the crash came mid-campaign");
    let second = spawn(dispatcher(&sys, QuotaSettings::default(), fast()).await);
    until(
        Duration::from_secs(30),
        "the campaign completes",
        || async { state(&sys, id).await == CampaignState::Completed },
    )
    .await;
    assert!(
        second.published.load(Ordering::Relaxed) > 0,
        "the second one took over"
    );
    second.stop().await;
    w.stop().await;
    assert_each_sent_once(&sys, id).await;
    let s = progress::status(&sys.db.pool, id).await.unwrap();
    assert_eq!(s.sent, reachable as u64);
    assert_eq!(
        s.finished(),
        s.reachable,
        "every recipient in exactly one state"
    );
}

#[tokio::test]
async fn two_dispatchers_on_one_campaign_only_one_drives_it() {
    let sys = System::seeded(200).await;
    let id = followers_campaign(&sys, &new_campaign(500)).await;
    let w = worker(&sys);
    store::apply(&sys.db.pool, id, Action::Start, "test")
        .await
        .unwrap();
    // The default 10 s lease: a loaded test machine must not stall a step past the lease (that
    // hand-over is the crash test's subject).
    let options = DispatcherOptions {
        lease: Duration::from_secs(10),
        ..fast()
    };
    let a = spawn(dispatcher(&sys, QuotaSettings::default(), options.clone()).await);
    let b = spawn(dispatcher(&sys, QuotaSettings::default(), options).await);
    until(
        Duration::from_secs(30),
        "the campaign completes",
        || async { state(&sys, id).await == CampaignState::Completed },
    )
    .await;
    let (pa, pb) = (
        a.published.load(Ordering::Relaxed),
        b.published.load(Ordering::Relaxed),
    );
    a.stop().await;
    b.stop().await;
    w.stop().await;
    let reachable = store::get(&sys.db.pool, id).await.unwrap().reachable as u64;
    assert!(
        (pa, pb) == (reachable, 0) || (pa, pb) == (0, reachable),
        "one dispatcher published everything: {pa} and {pb}"
    );
    let s = progress::status(&sys.db.pool, id).await.unwrap();
    assert_eq!(s.duplicate, 0);
    assert_each_sent_once(&sys, id).await;
}

#[tokio::test]
async fn pause_stops_sending_within_seconds_and_resume_finishes_the_campaign() {
    let sys = System::seeded(400).await;
    let id = followers_campaign(&sys, &new_campaign(100)).await;
    // A small prefetch, so most of the campaign waits on the lane (not claimed) when it pauses.
    let mut config = WorkerConfig::default();
    config.consumer.prefetch = 20;
    config.retry.campaign_paused_wait = Duration::from_secs(1);
    let w = sys.start_worker(config);
    let d = spawn(dispatcher(&sys, QuotaSettings::default(), fast()).await);
    store::apply(&sys.db.pool, id, Action::Start, "test")
        .await
        .unwrap();
    until(Duration::from_secs(20), "some sends", || async {
        sys.mock.sends().len() >= 50
    })
    .await;
    store::apply(&sys.db.pool, id, Action::Pause, "ops")
        .await
        .unwrap();
    // Within 2 s of the pause no more sends happen.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_pause = sys.mock.sends().len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        sys.mock.sends().len(),
        after_pause,
        "nothing sent while paused"
    );
    let reachable = store::get(&sys.db.pool, id).await.unwrap().reachable;
    assert!((after_pause as i64) < reachable);
    // Pausing is cheap: the jobs on the lane wait unclaimed (no ledger row, no attempt, no rate
    // permit), cycling through the paused-job wait without touching the ledger.
    let (dispatched, rows): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT cursor FROM campaigns WHERE id = $1),
                (SELECT count(*) FROM deliveries WHERE campaign_id = $1)",
    )
    .bind(id)
    .fetch_one(&sys.db.pool)
    .await
    .unwrap();
    assert!(
        rows <= dispatched && rows <= after_pause as i64 + 20,
        "paused jobs wait unclaimed: {rows} ledger rows for {dispatched} dispatched, {after_pause} sent"
    );
    store::apply(&sys.db.pool, id, Action::Resume, "ops")
        .await
        .unwrap();
    until(
        Duration::from_secs(40),
        "the campaign completes",
        || async { state(&sys, id).await == CampaignState::Completed },
    )
    .await;
    d.stop().await;
    let stats = w.stop().await;
    // When the dispatcher was ahead of the sends at the pause (usual under load; on a quiet
    // machine the sends may have caught up), the jobs on the lane waited out the pause.
    if dispatched > rows {
        assert!(stats.paused >= 1, "jobs waited out the pause: {stats:?}");
    }
    assert_each_sent_once(&sys, id).await;
    let retried: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deliveries WHERE campaign_id = $1 AND attempts <> 1",
    )
    .bind(id)
    .fetch_one(&sys.db.pool)
    .await
    .unwrap();
    assert_eq!(retried, 0, "the pause spent no attempts");
    let history = store::history(&sys.db.pool, id).await.unwrap();
    let steps: Vec<(&str, &str)> = history
        .iter()
        .map(|h| (h.to_state.as_str(), h.actor.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("draft", "test"),
            ("running", "test"),
            ("paused", "ops"),
            ("running", "ops"),
            ("completed", "dispatcher")
        ]
    );
}

#[tokio::test]
async fn cancel_with_jobs_on_the_lane_records_them_cancelled_and_sends_none() {
    let sys = System::seeded(200).await;
    let id = followers_campaign(&sys, &new_campaign(1000)).await;
    store::apply(&sys.db.pool, id, Action::Start, "test")
        .await
        .unwrap();
    // No worker yet: the dispatched jobs wait on the lane.
    let d = spawn(dispatcher(&sys, QuotaSettings::default(), fast()).await);
    until(Duration::from_secs(20), "jobs on the lane", || async {
        cursor(&sys, id).await >= 100
    })
    .await;
    d.stop().await;
    store::apply(&sys.db.pool, id, Action::Cancel, "ops")
        .await
        .unwrap();
    let dispatched = cursor(&sys, id).await as u64;
    let w = worker(&sys);
    until(Duration::from_secs(20), "queued jobs recorded", || async {
        progress::status(&sys.db.pool, id).await.unwrap().cancelled == dispatched
    })
    .await;
    let stats = w.stop().await;
    assert_eq!(
        sys.mock.sends().len(),
        0,
        "nothing of a cancelled campaign is sent"
    );
    assert_eq!(stats.cancelled, dispatched);
    let s = progress::status(&sys.db.pool, id).await.unwrap();
    assert_eq!(s.state, CampaignState::Cancelled);
    assert_eq!(s.sent, 0);
    assert_eq!(s.not_dispatched, s.reachable - dispatched);
}

#[tokio::test]
async fn a_send_window_that_is_closed_now_sends_nothing() {
    let sys = System::seeded(50).await;
    let now = chrono::Utc::now().time();
    let open = now + chrono::Duration::hours(2);
    let close = now + chrono::Duration::hours(3);
    let mut new = new_campaign(100);
    new.pacing.window = Some(SendWindow {
        start: open,
        end: close,
    });
    let id = followers_campaign(&sys, &new).await;
    let w = worker(&sys);
    let d = spawn(dispatcher(&sys, QuotaSettings::default(), fast()).await);
    store::apply(&sys.db.pool, id, Action::Start, "test")
        .await
        .unwrap();
    // ~50 dispatcher steps.
    tokio::time::sleep(Duration::from_secs(1)).await;
    d.stop().await;
    w.stop().await;
    assert_eq!(cursor(&sys, id).await, 0);
    assert_eq!(sys.mock.sends().len(), 0);
    assert_eq!(state(&sys, id).await, CampaignState::Running);
}

#[tokio::test]
async fn the_daily_cap_and_the_transactional_reserve_hold_a_campaign_back() {
    let sys = System::seeded(200).await;
    // The daily cap: 30 today.
    let mut capped = new_campaign(1000);
    capped.pacing.daily_cap = Some(30);
    let id = followers_campaign(&sys, &capped).await;
    let w = worker(&sys);
    let d = spawn(dispatcher(&sys, QuotaSettings::default(), fast()).await);
    store::apply(&sys.db.pool, id, Action::Start, "test")
        .await
        .unwrap();
    until(Duration::from_secs(20), "the cap's worth sent", || async {
        progress::status(&sys.db.pool, id).await.unwrap().sent == 30
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cursor(&sys, id).await, 30, "no more than the cap today");
    store::apply(&sys.db.pool, id, Action::Cancel, "test")
        .await
        .unwrap();
    d.stop().await;

    // The reserve: a daily quota of 100 with half kept for transactional sends. 30 campaign
    // sends and 10 transactional ones are already counted today, so 10 more may go.
    // Persons 0..=10 but 9 (who has no unionid): ten reachable.
    let jobs: Vec<Job> = (0..=10)
        .filter(|i| *i != 9)
        .map(|i| {
            Job::new(
                Recipient::MpOpenid(OpenId::parse(mock_wechat::mp_openid(i)).unwrap()),
                TemplateId::parse(TEMPLATE).unwrap(),
                TemplateData::from_pairs(&[("thing1", "Shipped"), ("time2", "now")]).unwrap(),
            )
        })
        .collect();
    sys.publish(&jobs).await;
    until(
        Duration::from_secs(20),
        "transactional jobs sent",
        || async { sys.states().await.get("sent").copied().unwrap_or(0) >= 40 },
    )
    .await;
    let id2 = followers_campaign(&sys, &new_campaign(1000)).await;
    let d = spawn(dispatcher(&sys, QuotaSettings::uniform(Some(100), 50), fast()).await);
    store::apply(&sys.db.pool, id2, Action::Start, "test")
        .await
        .unwrap();
    until(
        Duration::from_secs(20),
        "the campaign's share sent",
        || async { progress::status(&sys.db.pool, id2).await.unwrap().sent == 10 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.stop().await;
    w.stop().await;
    assert_eq!(
        cursor(&sys, id2).await,
        10,
        "the reserve is left for transactional sends"
    );
}

#[tokio::test]
async fn a_45009_during_a_campaign_pauses_the_app_and_the_campaign_resumes_after() {
    let sys = System::seeded(200).await;
    let id = followers_campaign(&sys, &new_campaign(200)).await;
    let mut config = WorkerConfig::default();
    config.retry.quota_pause = Duration::from_secs(1);
    let w = sys.start_worker(config);
    let d = spawn(dispatcher(&sys, QuotaSettings::default(), fast()).await);
    store::apply(&sys.db.pool, id, Action::Start, "test")
        .await
        .unwrap();
    until(Duration::from_secs(20), "some sends", || async {
        sys.mock.sends().len() >= 20
    })
    .await;
    sys.mock.set_faults(
        FaultRule {
            endpoint: Some(Endpoint::TemplateSend),
            fault: Fault::Errcode(45009),
            probability: 1.0,
            remaining: Some(3),
        }
        .into(),
    );
    until(
        Duration::from_secs(40),
        "the campaign completes",
        || async { state(&sys, id).await == CampaignState::Completed },
    )
    .await;
    d.stop().await;
    let stats = w.stop().await;
    assert!(stats.paused >= 1, "the app was paused by 45009: {stats:?}");
    assert_each_sent_once(&sys, id).await;
}

#[tokio::test]
async fn receipts_are_joined_to_the_campaigns_numbers() {
    let sys = System::seeded(40).await;
    let id = followers_campaign(&sys, &new_campaign(1000)).await;
    let w = worker(&sys);
    let d = spawn(dispatcher(&sys, QuotaSettings::default(), fast()).await);
    store::apply(&sys.db.pool, id, Action::Start, "test")
        .await
        .unwrap();
    until(
        Duration::from_secs(20),
        "the campaign completes",
        || async { state(&sys, id).await == CampaignState::Completed },
    )
    .await;
    d.stop().await;
    w.stop().await;
    let msgids: Vec<i64> = sqlx::query_scalar(
        "SELECT msgid FROM deliveries WHERE campaign_id = $1 ORDER BY msgid LIMIT 5",
    )
    .bind(id)
    .fetch_all(&sys.db.pool)
    .await
    .unwrap();
    let statuses = [
        "success",
        "success",
        "failed:user block",
        "failed: user block",
        "failed: system failed",
    ];
    let app = AppName::default_app();
    for (msgid, status) in msgids.iter().zip(statuses) {
        let mut conn = sys.db.pool.acquire().await.unwrap();
        wxnotify_services::ledger::receipts::record_receipt(
            &mut conn,
            &app,
            *msgid,
            status,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    }
    let s = progress::status(&sys.db.pool, id).await.unwrap();
    assert_eq!(
        (
            s.receipts.success,
            s.receipts.user_block,
            s.receipts.system_failed
        ),
        (2, 2, 1)
    );
    assert_eq!(s.sent, s.reachable);
}

#[tokio::test]
async fn admin_campaign_endpoints_need_the_admin_token() {
    let sys = System::seeded(20).await;
    assert!(
        wxnotify_api::admin::campaigns::router(sys.db.pool.clone(), &sys.settings).is_none(),
        "no token configured: the endpoints are off"
    );
    let mut settings = sys.settings.clone();
    settings.admin_token = Some(SecretString::from(
        "s3cret-admin-token-for-the-campaign-tests",
    ));
    let app = wxnotify_api::admin::campaigns::router(sys.db.pool.clone(), &settings).unwrap();
    let call = |method: &str, path: &str, token: Option<&str>, body: Option<serde_json::Value>| {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        app.clone().oneshot(req)
    };
    let r = call("GET", "/admin/api/campaigns", None, None)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = call("GET", "/admin/api/campaigns", Some("wrong"), None)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
    assert!(!String::from_utf8_lossy(&body).contains("s3cret"));
    let ok = Some("s3cret-admin-token-for-the-campaign-tests");
    let r = call("GET", "/admin/api/campaigns", ok, None).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let create = serde_json::json!({
        "template_id": TEMPLATE,
        "data": {"thing1": "Sale", "time2": "today"},
        "audience": {"recipients": [
            {"to": {"mp_openid": mock_wechat::mp_openid(0)}, "data": {"thing1": "Yours"}},
            {"to": {"mp_openid": "oNeverLoggedIn"}}
        ]},
        "rate": 10
    });
    let r = call("POST", "/admin/api/campaigns", ok, Some(create))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
    let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(report["reachable"], 1);
    assert_eq!(report["unreachable"]["unknown_mp_user"], 1);
    let id = report["id"].as_str().unwrap().to_owned();
    let r = call(
        "POST",
        &format!("/admin/api/campaigns/{id}/start"),
        ok,
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = call(
        "POST",
        &format!("/admin/api/campaigns/{id}/start"),
        ok,
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = call("GET", &format!("/admin/api/campaigns/{id}"), ok, None)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status["state"], "running");
    for key in [
        "audience",
        "reachable",
        "dispatched",
        "sent",
        "duplicate",
        "dead",
        "receipts",
        "send_rate",
        "eta_s",
    ] {
        assert!(status.get(key).is_some(), "status has {key}");
    }
    let r = call(
        "POST",
        "/admin/api/campaigns",
        ok,
        Some(serde_json::json!({"template_id": TEMPLATE, "data": {}, "audience": "followers", "rate": 100000})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "faster than the app");
}

#[tokio::test]
async fn admin_campaign_actions_are_audited_and_bad_values_refused_by_name() {
    let sys = System::seeded(20).await;
    let mut settings = sys.settings.clone();
    settings.admin_token = Some(SecretString::from("s3cret-admin-token"));
    let app = wxnotify_api::admin::campaigns::router(sys.db.pool.clone(), &settings).unwrap();
    let call = |method: &str, path: &str, body: Option<String>| {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", "Bearer s3cret-admin-token")
            .header("content-type", "application/json");
        let req = req.body(body.map_or_else(Body::empty, Body::from)).unwrap();
        let app = app.clone();
        async move {
            let r = app.oneshot(req).await.unwrap();
            let status = r.status();
            let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default(),
            )
        }
    };
    let create = |extra: serde_json::Value| {
        let mut body = serde_json::json!({
            "template_id": TEMPLATE,
            "data": {"thing1": "Sale", "time2": "today"},
            "audience": "followers",
            "rate": 10
        });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body.to_string()
    };
    // Refused, each naming the field: a javascript: link, a daily cap past its range (also
    // one past u64), a rate of 0, an unknown key, a page path with a leading '/'.
    for (extra, names) in [
        (serde_json::json!({"url": "javascript:alert(1)"}), "url"),
        (serde_json::json!({"daily_cap": u64::MAX}), "daily_cap"),
        (serde_json::json!({"daily_cap": "past u64"}), "daily_cap"),
        (serde_json::json!({"daily_cap": 0}), "daily_cap"),
        (serde_json::json!({"rate": 0}), "rate"),
        (serde_json::json!({"dailycap": 5}), "dailycap"),
        (
            serde_json::json!({"miniprogram": {"appid": "wx1", "pagepath": "/abs"}}),
            "pagepath",
        ),
    ] {
        // (The daily cap past u64 is written as a bare number, which `json!` cannot hold.)
        let body = create(extra.clone()).replace("\"past u64\"", "18446744073709551616");
        let (status, answer) = call("POST", "/admin/api/campaigns", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(names), "{extra}: {error}");
    }
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM campaigns")
            .fetch_one(&sys.db.pool)
            .await
            .unwrap(),
        0
    );

    // Created, started, paused, resumed, cancelled: each an audit row, with who.
    let (status, report) = call(
        "POST",
        "/admin/api/campaigns",
        Some(create(
            serde_json::json!({"url": "https://shop.example.com/sale", "daily_cap": 1000}),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    let id = report["id"].as_str().unwrap().to_owned();
    for action in ["start", "pause", "resume", "cancel"] {
        let (status, answer) =
            call("POST", &format!("/admin/api/campaigns/{id}/{action}"), None).await;
        assert_eq!(status, StatusCode::OK, "{action}: {answer}");
    }
    let rows: Vec<(String, String, serde_json::Value)> =
        sqlx::query_as("SELECT action, who, detail FROM admin_audit ORDER BY id")
            .fetch_all(&sys.db.pool)
            .await
            .unwrap();
    let actions: Vec<&str> = rows.iter().map(|(a, _, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "campaign_create",
            "campaign_start",
            "campaign_pause",
            "campaign_resume",
            "campaign_cancel"
        ]
    );
    for (_, who, detail) in &rows {
        assert_eq!(who, "api:admin");
        assert_eq!(detail["campaign"], id.as_str());
    }
    assert_eq!(rows[4].2["state"], "cancelled");
}

#[test]
fn the_fake_has_the_test_template() {
    assert!(
        MockConfig::default()
            .templates
            .iter()
            .any(|t| t.id == TEMPLATE)
    );
}

#[tokio::test]
async fn preview_reruns_the_template_check_against_todays_catalog() {
    let sys = System::seeded(20).await;
    let id = followers_campaign(&sys, &new_campaign(100)).await;
    let p = wxnotify_services::campaigns::preview::preview(&sys.db.pool, id)
        .await
        .unwrap();
    assert!(p.template.ok, "{:?}", p.template);
    // The catalog is synced now, and the template lost its `time2` placeholder.
    sqlx::query(
        "INSERT INTO template_syncs (app, templates, trigger) VALUES ('default', 1, 'command')
         ON CONFLICT (app) DO UPDATE SET templates = 1",
    )
    .execute(&sys.db.pool)
    .await
    .unwrap();
    sqlx::query("DELETE FROM templates WHERE app = 'default'")
        .execute(&sys.db.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO templates (app, template_id, title, content, placeholders)
         VALUES ('default', $1, 'Shipped', '{{thing1.DATA}} {{thing3.DATA}}', ARRAY['thing1', 'thing3'])",
    )
    .bind(TEMPLATE)
    .execute(&sys.db.pool)
    .await
    .unwrap();
    let p = wxnotify_services::campaigns::preview::preview(&sys.db.pool, id)
        .await
        .unwrap();
    assert!(!p.template.ok);
    assert!(
        p.template.problems.iter().any(|m| m.contains("time2")),
        "{:?}",
        p.template
    );
    assert_eq!(p.template.missing_keys, ["thing3"]);
    // The template deleted on WeChat's side: a later list lacked it.
    sqlx::query("UPDATE templates SET removed_at = now() WHERE app = 'default'")
        .execute(&sys.db.pool)
        .await
        .unwrap();
    let p = wxnotify_services::campaigns::preview::preview(&sys.db.pool, id)
        .await
        .unwrap();
    assert!(!p.template.ok);
    assert!(
        p.template
            .problems
            .iter()
            .any(|m| m.contains("deleted on WeChat's side")),
        "{:?}",
        p.template
    );
    // A template the synced list never held (a category template): not a problem, a warning.
    sqlx::query("DELETE FROM templates WHERE app = 'default'")
        .execute(&sys.db.pool)
        .await
        .unwrap();
    let p = wxnotify_services::campaigns::preview::preview(&sys.db.pool, id)
        .await
        .unwrap();
    assert!(p.template.ok, "{:?}", p.template);
    assert!(
        p.template
            .warnings
            .iter()
            .any(|w| w.contains("not in the synced catalog")),
        "{:?}",
        p.template
    );
}

/// A 48-character `thing1` (the limit is 20).
const LONG_THING: &str = "Forty-eight characters of a thing1 value; too lo";

#[tokio::test]
async fn a_row_whose_data_breaks_the_template_is_a_bad_line_at_create_and_preview() {
    assert_eq!(LONG_THING.chars().count(), 48);
    let sys = System::seeded(10).await;
    let dir = std::env::temp_dir().join(format!("wxnotify-campaign-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("recipients.csv");
    std::fs::write(
        &path,
        format!(
            "mp_openid,thing1\n{},Order 1\n{},{LONG_THING}\n{},Order 3\n",
            mock_wechat::mp_openid(0),
            mock_wechat::mp_openid(1),
            mock_wechat::mp_openid(2),
        ),
    )
    .unwrap();
    let mut new = new_campaign(100);
    new.name = Some("  Order notes  ".into());
    let report = store::create(
        &sys.db.pool,
        &new,
        1000,
        AudienceSource::File(audience::read_file(&path).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(report.name.as_deref(), Some("Order notes"));
    assert_eq!(report.bad_lines.count, 1, "{report:?}");
    let bad = &report.bad_lines.first[0];
    assert_eq!(bad.line, 3, "the line of the long value");
    assert!(
        bad.error.contains("thing1") && bad.error.contains("truncate"),
        "{}",
        bad.error
    );
    assert_eq!(report.reachable, 2, "the two good rows are kept");

    // Asked to truncate, the campaign keeps the row: its job will carry a shortened value.
    let mut truncating = new_campaign(100);
    truncating.truncate = true;
    let report = store::create(
        &sys.db.pool,
        &truncating,
        1000,
        AudienceSource::File(audience::read_file(&path).unwrap()),
    )
    .await
    .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(report.bad_lines.count, 0, "{report:?}");
    assert_eq!(report.reachable, 3);
    let p = wxnotify_services::campaigns::preview(&sys.db.pool, report.id)
        .await
        .unwrap();
    assert_eq!(p.bad_rows.count, 0, "{:?}", p.bad_rows);

    // Preview checks the snapshot's rows again: without truncation the long row is named.
    sqlx::query("UPDATE campaigns SET truncate = false WHERE id = $1")
        .bind(report.id)
        .execute(&sys.db.pool)
        .await
        .unwrap();
    let p = wxnotify_services::campaigns::preview(&sys.db.pool, report.id)
        .await
        .unwrap();
    assert_eq!(p.bad_rows.count, 1, "{:?}", p.bad_rows);
    assert_eq!(p.bad_rows.first[0].line, 3);
    let text = p.template.text_with_rows(&p.bad_rows);
    assert!(!text.contains("template check: ok\n"), "{text}");
    assert!(text.contains("line 3"), "{text}");
}

#[tokio::test]
async fn status_says_why_a_campaign_waits_and_until_when_and_drops_rate_and_eta() {
    use wxnotify_services::campaigns::WaitReason;
    let sys = System::seeded(20).await;
    // A window that opens in two hours: closed now.
    let now = chrono::Utc::now();
    let open = (now + chrono::Duration::hours(2)).time();
    let close = (now + chrono::Duration::hours(3)).time();
    let mut new = new_campaign(10);
    new.name = Some("Winter sale".into());
    new.pacing.window = Some(SendWindow {
        start: open,
        end: close,
    });
    let id = followers_campaign(&sys, &new).await;
    let s = progress::status(&sys.db.pool, id).await.unwrap();
    assert_eq!(s.waiting, None, "a draft does not wait");
    store::apply(&sys.db.pool, id, Action::Start, "test")
        .await
        .unwrap();
    let s = progress::status(&sys.db.pool, id).await.unwrap();
    let w = s.waiting.clone().expect("a closed window waits");
    assert_eq!(w.reason, WaitReason::WindowClosed);
    let until = w.until.expect("the window's opening");
    let ahead = until - chrono::Utc::now();
    assert!(
        ahead > chrono::Duration::minutes(100) && ahead < chrono::Duration::minutes(121),
        "opens in about two hours: {until}"
    );
    assert_eq!(s.eta_s, None, "no ETA while waiting");
    assert_eq!(s.name.as_deref(), Some("Winter sale"));
    assert!(s.line().contains("window_closed"), "{}", s.line());
    assert!(
        s.line().starts_with("campaign Winter sale ("),
        "{}",
        s.line()
    );

    // The app's quota pause comes first, with its end.
    let pause_end = chrono::Utc::now() + chrono::Duration::minutes(30);
    sqlx::query(
        "UPDATE apps SET paused_until = $1, pause_cause = 'quota', pause_reason = '45009' WHERE name = 'default'",
    )
    .bind(pause_end)
    .execute(&sys.db.pool)
    .await
    .unwrap();
    let w = progress::status(&sys.db.pool, id)
        .await
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(w.reason, WaitReason::Quota);
    assert_eq!(
        w.until.map(|t| t.timestamp()),
        Some(pause_end.timestamp()),
        "{w:?}"
    );
    sqlx::query("UPDATE apps SET paused_until = NULL, pause_cause = NULL, pause_reason = NULL")
        .execute(&sys.db.pool)
        .await
        .unwrap();

    // No window, but today's cap is used: it goes on at the next midnight (UTC here).
    sqlx::query(
        "UPDATE campaigns SET window_start = NULL, window_end = NULL, daily_cap = 5,
             cap_day = (now() AT TIME ZONE 'UTC')::date, cap_day_dispatched = 5 WHERE id = $1",
    )
    .bind(id)
    .execute(&sys.db.pool)
    .await
    .unwrap();
    let w = progress::status(&sys.db.pool, id)
        .await
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(w.reason, WaitReason::DailyCap);
    let midnight = (chrono::Utc::now().date_naive() + chrono::Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    assert_eq!(w.until, Some(midnight));

    // Free to send: no waiting, and the ETA is what is left at the campaign's pace (10/s).
    sqlx::query("UPDATE campaigns SET daily_cap = NULL WHERE id = $1")
        .bind(id)
        .execute(&sys.db.pool)
        .await
        .unwrap();
    let s = progress::status(&sys.db.pool, id).await.unwrap();
    assert_eq!(s.waiting, None);
    assert_eq!(s.eta_s, Some(s.reachable.div_ceil(10)), "{s:?}");

    // Paused, then cancelled: paused says so; a cancelled campaign has neither rate nor ETA.
    store::apply(&sys.db.pool, id, Action::Pause, "test")
        .await
        .unwrap();
    let s = progress::status(&sys.db.pool, id).await.unwrap();
    assert_eq!(s.waiting.map(|w| w.reason), Some(WaitReason::Paused));
    store::apply(&sys.db.pool, id, Action::Cancel, "test")
        .await
        .unwrap();
    let s = progress::status(&sys.db.pool, id).await.unwrap();
    assert_eq!(
        (s.waiting.clone(), s.send_rate, s.eta_s),
        (None, None, None)
    );
    assert!(!s.line().contains("/s"), "{}", s.line());
}
