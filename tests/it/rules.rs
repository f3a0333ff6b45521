//! Issue 14, end to end: the template catalog and the checks before sending, the real daily
//! quota, content WeChat blocks or intercepts, and the commands that show them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use wxnotify::delivery::WorkerConfig;
use wxnotify::domain::{AppName, Job, OpenId, Recipient, TemplateData};
use wxnotify::sandbox::mock_wechat::{self, Endpoint, MockConfig};
use wxnotify::templates::SyncTrigger;
use wxnotify::wechat::client::{ApiQuota, ClientOptions};
use wxnotify::wechat::{TokenStore, WechatClient};

use crate::system::System;

const SHIPPED: &str = "TPL_ORDER_SHIPPED";
const WAIT: Duration = Duration::from_secs(30);

fn mp(i: u64) -> Recipient {
    Recipient::MpOpenid(OpenId::parse(mock_wechat::mp_openid(i)).unwrap())
}

fn shipped(person: u64, thing1: &str) -> Job {
    Job::new(
        mp(person),
        SHIPPED.parse().unwrap(),
        TemplateData::from_pairs(&[("thing1", thing1), ("time2", "2026-11-24 10:00")]).unwrap(),
    )
}

fn wechat(sys: &System) -> (TokenStore, WechatClient) {
    let client = WechatClient::new(
        sys.settings.wechat_api_base.clone(),
        &ClientOptions::default(),
    )
    .unwrap();
    let tokens = TokenStore::new(sys.db.pool.clone(), client.clone(), &sys.settings.apps);
    (tokens, client)
}

async fn seeded_with(cfg: MockConfig, people: u64) -> System {
    let sys = System::new(
        MockConfig {
            followers: people,
            ..cfg
        },
        1000,
    )
    .await;
    sys.seed_people(people).await;
    sys
}

/// The dead letter of a job: (reason, errcode, errmsg).
async fn dead_letter(sys: &System, job: &Job) -> (String, Option<i64>, String) {
    sqlx::query_as("SELECT reason, errcode, errmsg FROM dead_letters WHERE job_id = $1")
        .bind(job.id.as_str())
        .fetch_one(&sys.db.pool)
        .await
        .unwrap()
}

/// Polls `query` (a single boolean) until it is true, or panics after `WAIT`.
async fn wait_until(sys: &System, what: &str, query: &'static str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let done: bool = sqlx::query_scalar(query)
            .fetch_one(&sys.db.pool)
            .await
            .unwrap();
        if done {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen in {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_template_deleted_on_wechats_side_answers_40037_refreshes_the_catalog_and_dies_clearly() {
    let sys = System::seeded(10).await;
    let worker = sys.start_worker(WorkerConfig::default());
    // The worker synced the catalog before consuming; it still lists the template.
    wait_until(
        &sys,
        "the first sync",
        "SELECT EXISTS (SELECT 1 FROM template_syncs)",
    )
    .await;
    assert!(sys.mock.delete_template(SHIPPED));
    let first = shipped(1, "订单已发货");
    sys.publish(std::slice::from_ref(&first)).await;
    sys.wait_finished(1, WAIT).await;
    let (reason, errcode, errmsg) = dead_letter(&sys, &first).await;
    assert_eq!(reason, "payload_rejected");
    assert_eq!(errcode, Some(40037));
    assert!(
        errmsg.contains("rid:"),
        "WeChat's message is kept with its rid: {errmsg}"
    );
    assert!(
        errmsg.contains("the template catalog is being refreshed"),
        "{errmsg}"
    );
    wait_until(
        &sys,
        "the catalog refresh after 40037",
        "SELECT EXISTS (SELECT 1 FROM template_syncs WHERE trigger = 'unknown_template')
            AND NOT EXISTS (SELECT 1 FROM templates WHERE template_id = 'TPL_ORDER_SHIPPED')",
    )
    .await;
    // The next job with that template is refused by the worker itself: no WeChat call.
    let sends_before = sys.mock.stats().calls_to(Endpoint::TemplateSend);
    let second = shipped(2, "订单已发货");
    sys.publish(std::slice::from_ref(&second)).await;
    sys.wait_finished(2, WAIT).await;
    worker.stop().await;
    let (reason, errcode, errmsg) = dead_letter(&sys, &second).await;
    assert_eq!(reason, "payload_rejected");
    assert_eq!(errcode, None);
    assert!(
        errmsg.contains("template TPL_ORDER_SHIPPED of app default: the template is not among the app's 1 templates"),
        "{errmsg}"
    );
    assert_eq!(
        sys.mock.stats().calls_to(Endpoint::TemplateSend),
        sends_before
    );
}

#[tokio::test]
async fn the_worker_refuses_a_rule_breaking_job_without_calling_wechat_and_truncates_only_when_asked()
 {
    let sys = System::seeded(10).await;
    let too_long = "一二三四五六七八九十一二三四五六七八九十一二三"; // 23 characters
    let refused = shipped(1, too_long);
    let mut truncated = shipped(2, too_long);
    truncated.truncate = true;
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(&[refused.clone(), truncated.clone()]).await;
    sys.wait_finished(2, WAIT).await;
    worker.stop().await;
    let (reason, errcode, errmsg) = dead_letter(&sys, &refused).await;
    assert_eq!((reason.as_str(), errcode), ("payload_rejected", None));
    assert!(
        errmsg.contains("data.thing1.value: thing allows at most 20 characters, this value has 23"),
        "{errmsg}"
    );
    assert_eq!(sys.state(&truncated.id).await.as_deref(), Some("sent"));
    let record: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT truncated FROM deliveries WHERE job_id = $1")
            .bind(truncated.id.as_str())
            .fetch_one(&sys.db.pool)
            .await
            .unwrap();
    assert_eq!(
        record,
        Some(serde_json::json!({"thing1": {"from": 23, "to": 20}}))
    );
    let sends = sys.mock.sends();
    assert_eq!(sends.len(), 1, "only the truncated job reached WeChat");
    let sent = sends[0].data["thing1"]["value"].as_str().unwrap();
    assert_eq!(sent.chars().count(), 20);
    assert!(sent.starts_with("一二三四五六七八九十一二三四五六七八九"));
    let untruncated: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT truncated FROM deliveries WHERE job_id = $1")
            .bind(refused.id.as_str())
            .fetch_one(&sys.db.pool)
            .await
            .unwrap();
    assert_eq!(untruncated, None);
}

#[tokio::test]
async fn content_blocked_by_wechat_dies_with_its_own_reason() {
    let sys = seeded_with(
        MockConfig {
            blocked_words: vec!["违禁".into()],
            ..MockConfig::default()
        },
        10,
    )
    .await;
    let blocked = shipped(1, "违禁品促销");
    let fine = shipped(2, "订单已发货");
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(&[blocked.clone(), fine.clone()]).await;
    sys.wait_finished(2, WAIT).await;
    worker.stop().await;
    let (reason, errcode, _) = dead_letter(&sys, &blocked).await;
    assert_eq!((reason.as_str(), errcode), ("content_blocked", Some(40249)));
    assert_eq!(sys.state(&fine.id).await.as_deref(), Some("sent"));
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn sent_at(sys: &System, job_id: &str, when: DateTime<Utc>) {
    sqlx::query(
        "INSERT INTO deliveries (job_id, app, recipient_kind, recipient, template_id, lane, state,
                                 attempts, msgid, sent_at)
         VALUES ($1, 'default', 'oa_openid', 'o', 'T', 'jobs', 'sent', 1, 1, $2)",
    )
    .bind(job_id)
    .bind(when)
    .execute(&sys.db.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn the_quota_is_read_from_wechat_and_the_day_count_rolls_over_at_beijing_midnight() {
    let sys = seeded_with(
        MockConfig {
            daily_quota: 1000,
            ..MockConfig::default()
        },
        10,
    )
    .await;
    let (tokens, client) = wechat(&sys);
    let app = AppName::default_app();
    let read = wxnotify::quota::read(
        &sys.db.pool,
        &tokens,
        &client,
        &app,
        wxnotify::quota::ReadTrigger::Command,
    )
    .await
    .unwrap();
    assert_eq!(
        read,
        ApiQuota {
            daily_limit: 1000,
            used: 0,
            remain: 1000
        }
    );
    // A read at 23:00 Beijing time (15:00 UTC) said 10 were used; one send at 23:30 Beijing,
    // one at 00:30 the next Beijing day.
    let quota = ApiQuota {
        daily_limit: 1000,
        used: 10,
        remain: 990,
    };
    wxnotify::quota::store(
        &sys.db.pool,
        &app,
        &quota,
        at("2026-11-30T15:00:00Z"),
        wxnotify::quota::ReadTrigger::Schedule,
    )
    .await
    .unwrap();
    sent_at(&sys, "before-midnight", at("2026-11-30T15:30:00Z")).await;
    sent_at(&sys, "after-midnight", at("2026-11-30T16:30:00Z")).await;
    let today = |now| wxnotify::quota::today(&sys.db.pool, &app, at(now));
    let q = today("2026-11-30T15:59:59Z").await.unwrap().unwrap();
    assert_eq!((q.used, q.remaining, q.sent_since_read), (11, 989, 1));
    let q = today("2026-11-30T16:00:01Z").await.unwrap().unwrap();
    assert_eq!(
        (q.daily_limit, q.used, q.remaining),
        (1000, 0, 1000),
        "a new Beijing day"
    );
    let q = today("2026-11-30T17:00:00Z").await.unwrap().unwrap();
    assert_eq!((q.used, q.remaining), (1, 999));
}

#[tokio::test]
async fn a_45009_makes_the_worker_read_the_real_quota_again() {
    let sys = seeded_with(
        MockConfig {
            daily_quota: 1,
            ..MockConfig::default()
        },
        10,
    )
    .await;
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(&[shipped(1, "订单已发货")]).await;
    sys.wait_finished(1, WAIT).await;
    sys.publish(&[shipped(2, "订单已发货")]).await;
    wait_until(
        &sys,
        "the quota read after 45009",
        "SELECT EXISTS (SELECT 1 FROM api_quotas
                        WHERE trigger = 'quota_exhausted' AND used = 1 AND remain = 0)",
    )
    .await;
    worker.stop().await;
    let q = wxnotify::quota::today(&sys.db.pool, &AppName::default_app(), Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((q.daily_limit, q.remaining), (1, 0));
}

fn command(sys: &System) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxnotify"));
    cmd.env("DATABASE_URL", sys.db.url())
        .env("AMQP_URL", crate::support::amqp_url())
        .env("WECHAT_API_BASE", sys.mock.base_url().to_string())
        .env("WXNOTIFY_QUEUE_PREFIX", sys.topology.prefix())
        .env("WXNOTIFY_OA_APPID", mock_wechat::MOCK_OA_APPID)
        .env("WXNOTIFY_OA_SECRET", mock_wechat::MOCK_OA_SECRET)
        .env("RUST_LOG", "warn")
        .env_remove("WXNOTIFY_CONFIG");
    cmd
}

async fn run_json(sys: &System, args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = command(sys).args(args).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("{args:?}: not JSON ({e}): {stdout} / {stderr}");
    });
    (out.status.code(), json, stderr)
}

#[tokio::test]
async fn templates_sync_and_list_show_each_template_with_its_placeholders() {
    let sys = System::seeded(1).await;
    let (code, listing, _) = run_json(&sys, &["templates", "sync", "--json"]).await;
    assert_eq!(code, Some(0));
    let templates = listing[0]["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 2);
    assert_eq!(templates[0]["template_id"], SHIPPED, "sorted by id");
    assert_eq!(
        templates[0]["placeholders"],
        serde_json::json!(["thing1", "time2"])
    );
    sys.mock.delete_template(SHIPPED);
    let (_, listing, _) =
        run_json(&sys, &["templates", "list", "--app", "default", "--json"]).await;
    assert_eq!(
        listing[0]["templates"].as_array().unwrap().len(),
        2,
        "list does not call WeChat"
    );
    run_json(&sys, &["templates", "sync", "--json"]).await;
    let (_, listing, _) = run_json(&sys, &["templates", "list", "--json"]).await;
    assert_eq!(listing[0]["templates"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn enqueue_refuses_unknown_and_missing_keys_naming_them() {
    let sys = System::seeded(1).await;
    let (tokens, client) = wechat(&sys);
    let app = AppName::default_app();
    wxnotify::templates::sync_app(&sys.db.pool, &tokens, &client, &app, SyncTrigger::Command)
        .await
        .unwrap();
    let (code, summary, _) = run_json(
        &sys,
        &[
            "enqueue",
            "--to-unionid",
            "u1",
            "--template",
            SHIPPED,
            "--data",
            "thing1=x",
            "--data",
            "colour=red",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, Some(2));
    let reason = summary["rejections"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("missing data keys: time2"), "{reason}");
    assert!(
        reason.contains("unknown data keys (not placeholders of the template): colour"),
        "{reason}"
    );
    // A file: the bad line is refused with its line number and reason, the good one published.
    let path = std::env::temp_dir().join(format!("{}.ndjson", sys.topology.prefix()));
    let lines = [
        r#"{"to":{"unionid":"u1"},"template_id":"TPL_ORDER_SHIPPED","data":{"thing1":"订单已发货","time2":"2026-11-24 10:00"}}"#,
        r#"{"to":{"unionid":"u1"},"template_id":"TPL_ORDER_SHIPPED","data":{"thing1":"一二三四五六七八九十一二三四五六七八九十一","time2":"2026-11-24 10:00"}}"#,
        r#"{"to":{"unionid":"u1"},"template_id":"TPL_ORDER_SHIPPED","truncate":true,"data":{"thing1":"一二三四五六七八九十一二三四五六七八九十一","time2":"2026-11-24 10:00"}}"#,
    ];
    std::fs::write(&path, lines.join("\n")).unwrap();
    let (code, summary, _) = run_json(
        &sys,
        &["enqueue", "--json", "--file", path.to_str().unwrap()],
    )
    .await;
    std::fs::remove_file(&path).ok();
    assert_eq!(code, Some(1));
    assert_eq!(summary["accepted"], 2, "{summary}");
    assert_eq!(summary["rejections"][0]["line"], 2, "{summary}");
    let reason = summary["rejections"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("data.thing1.value: thing allows at most 20 characters, this value has 21"),
        "{reason}"
    );
}

#[tokio::test]
async fn status_shows_the_quota_the_queues_and_the_workers() {
    let sys = seeded_with(
        MockConfig {
            daily_quota: 5000,
            ..MockConfig::default()
        },
        1,
    )
    .await;
    let (code, status, stderr) = run_json(&sys, &["status", "--refresh-quota", "--json"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let app = &status["apps"][0];
    assert_eq!(app["app"], "default");
    assert_eq!(app["paused"], false);
    assert_eq!(app["quota"]["daily_limit"], 5000);
    assert_eq!(app["quota"]["remaining"], 5000);
    let queues: Vec<&str> = status["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    assert!(
        queues.contains(
            &sys.topology
                .lane_queue(wxnotify::queue::Lane::Jobs)
                .as_str()
        )
    );
    assert_eq!(status["workers"], 0);
}
