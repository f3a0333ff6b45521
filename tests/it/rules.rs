//! End to end: the template catalog and the checks before sending, the real daily
//! quota, content WeChat blocks or intercepts, and the commands that show them.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use wxnotify_core::domain::{AppName, Job, OpenId, Recipient, TemplateData};
use wxnotify_core::wechat::client::{ApiQuota, ClientOptions};
use wxnotify_core::wechat::{TokenStore, WechatClient};
use wxnotify_sandbox::mock_wechat::{
    self, Endpoint, Fault, FaultPlan, FaultRule, MockConfig, MockTemplate,
};
use wxnotify_services::templates::SyncTrigger;
use wxnotify_worker::WorkerConfig;

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

/// A fake WeChat whose template list holds its category templates too (real WeChat's does
/// not): for the tests of a catalog that holds `TPL_ORDER_SHIPPED`.
fn listing_category_templates() -> MockConfig {
    MockConfig {
        list_category_templates: true,
        ..MockConfig::default()
    }
}

/// The `templates` rows of the default app: template id → (source, removed).
async fn catalog_rows(sys: &System) -> HashMap<String, (String, bool)> {
    sqlx::query_as::<_, (String, String, bool)>(
        "SELECT template_id, source, removed_at IS NOT NULL FROM templates WHERE app = 'default'",
    )
    .fetch_all(&sys.db.pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(id, source, removed)| (id, (source, removed)))
    .collect()
}

#[tokio::test]
async fn a_template_deleted_on_wechats_side_answers_40037_is_looked_up_afresh_and_dies_as_deleted()
{
    let sys = seeded_with(listing_category_templates(), 10).await;
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
        errmsg.contains("no longer lists it: deleted on WeChat's side"),
        "{errmsg}"
    );
    // The fresh list came before the decision: the template is kept as removed.
    let synced: String = sqlx::query_scalar("SELECT trigger FROM template_syncs")
        .fetch_one(&sys.db.pool)
        .await
        .unwrap();
    assert_eq!(synced, "unknown_template");
    assert_eq!(
        catalog_rows(&sys).await.get(SHIPPED),
        Some(&("api".to_owned(), true))
    );
    assert_eq!(sys.state(&first.id).await.as_deref(), Some("dead"));
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
        errmsg.contains(
            "template TPL_ORDER_SHIPPED of app default: the template was deleted on WeChat's side"
        ),
        "{errmsg}"
    );
    assert_eq!(
        sys.mock.stats().calls_to(Endpoint::TemplateSend),
        sends_before
    );
}

#[tokio::test]
async fn a_category_template_the_list_lacks_is_sent_and_an_unknown_one_dies_on_wechats_word() {
    // Real WeChat's list: category templates (TPL_ORDER_SHIPPED is one) are not in it.
    let sys = System::seeded(10).await;
    let worker = sys.start_worker(WorkerConfig::default());
    wait_until(
        &sys,
        "the first sync",
        "SELECT EXISTS (SELECT 1 FROM template_syncs)",
    )
    .await;
    assert!(
        catalog_rows(&sys).await.is_empty(),
        "the synced catalog does not list the category templates"
    );
    let category = shipped(1, "订单已发货");
    let mut unknown = shipped(2, "订单已发货");
    unknown.template_id = Some("TPL_NO_SUCH".parse().unwrap());
    sys.publish(&[category.clone(), unknown.clone()]).await;
    sys.wait_finished(2, WAIT).await;
    worker.stop().await;
    assert_eq!(sys.state(&category.id).await.as_deref(), Some("sent"));
    let sends = sys.mock.sends();
    assert_eq!(sends.len(), 1, "the category-template job reached WeChat");
    assert_eq!(sends[0].template_id, SHIPPED);
    // A template nobody listed: WeChat's 40037 is the authority, at once, no retry.
    let (reason, errcode, errmsg) = dead_letter(&sys, &unknown).await;
    assert_eq!(
        (reason.as_str(), errcode),
        ("payload_rejected", Some(40037))
    );
    assert!(errmsg.contains("never listed"), "{errmsg}");
    assert_eq!(sends_made(&sys, &unknown).await, 1);
    assert_eq!(sys.mock.stats().calls_to(Endpoint::TemplateSend), 2);
}

#[tokio::test]
async fn a_hand_registered_template_refuses_a_job_with_the_wrong_keys_without_calling_wechat() {
    let sys = System::seeded(10).await;
    // The operator typed the template in: its keys are thing1 and date3, not time2.
    let (code, added, stderr) = run_json(
        &sys,
        &[
            "templates",
            "add",
            "--app",
            "default",
            "--id",
            SHIPPED,
            "--title",
            "订单发货提醒",
            "--content",
            "商品：{{thing1.DATA}}\n日期：{{date3.DATA}}",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(added["action"], "added");
    assert_eq!(added["template"]["source"], "manual");
    let job = shipped(1, "订单已发货");
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(std::slice::from_ref(&job)).await;
    sys.wait_finished(1, WAIT).await;
    worker.stop().await;
    let (reason, errcode, errmsg) = dead_letter(&sys, &job).await;
    assert_eq!((reason.as_str(), errcode), ("payload_rejected", None));
    assert!(errmsg.contains("missing data keys: date3"), "{errmsg}");
    assert!(
        errmsg.contains("unknown data keys (not placeholders of the template): time2"),
        "{errmsg}"
    );
    assert_eq!(sys.mock.stats().calls_to(Endpoint::TemplateSend), 0);
    // The worker's sync did not delete the manual template.
    assert_eq!(
        catalog_rows(&sys).await.get(SHIPPED),
        Some(&("manual".to_owned(), false))
    );
}

#[tokio::test]
async fn a_listed_template_that_vanishes_is_refused_as_deleted_until_a_listing_has_it_again() {
    let sys = seeded_with(listing_category_templates(), 10).await;
    let (tokens, client) = wechat(&sys);
    let app = AppName::default_app();
    let sync = || {
        wxnotify_services::templates::sync_app(
            &sys.db.pool,
            &tokens,
            &client,
            &app,
            SyncTrigger::Command,
        )
    };
    sync().await.unwrap();
    assert_eq!(
        catalog_rows(&sys).await.get(SHIPPED),
        Some(&("api".to_owned(), false))
    );
    let template = sys
        .mock_config
        .templates
        .iter()
        .find(|t| t.id == SHIPPED)
        .unwrap()
        .clone();
    assert!(sys.mock.delete_template(SHIPPED));
    sync().await.unwrap();
    assert_eq!(
        catalog_rows(&sys).await.get(SHIPPED),
        Some(&("api".to_owned(), true)),
        "kept as removed, not forgotten"
    );
    let refused = shipped(1, "订单已发货");
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(std::slice::from_ref(&refused)).await;
    sys.wait_finished(1, WAIT).await;
    worker.stop().await;
    let (reason, errcode, errmsg) = dead_letter(&sys, &refused).await;
    assert_eq!((reason.as_str(), errcode), ("payload_rejected", None));
    assert!(errmsg.contains("deleted on WeChat's side"), "{errmsg}");
    assert_eq!(sys.mock.stats().calls_to(Endpoint::TemplateSend), 0);
    // The same id listed again (WeChat's ids are never reused: it was never really gone).
    sys.mock.add_template(template);
    sync().await.unwrap();
    assert_eq!(
        catalog_rows(&sys).await.get(SHIPPED),
        Some(&("api".to_owned(), false))
    );
    let sent = shipped(2, "订单已发货");
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(std::slice::from_ref(&sent)).await;
    sys.wait_finished(2, WAIT).await;
    worker.stop().await;
    assert_eq!(sys.state(&sent.id).await.as_deref(), Some("sent"));
}

/// The sends made for a job (`deliveries.attempts`).
async fn sends_made(sys: &System, job: &Job) -> i32 {
    sqlx::query_scalar("SELECT attempts FROM deliveries WHERE job_id = $1")
        .bind(job.id.as_str())
        .fetch_one(&sys.db.pool)
        .await
        .unwrap()
}

/// The failed attempts of a job: (attempt, outcome, errcode).
async fn attempts(sys: &System, job: &Job) -> Vec<(i32, String, Option<i64>)> {
    sqlx::query_as(
        "SELECT attempt, outcome, errcode FROM delivery_attempts WHERE job_id = $1 ORDER BY attempt",
    )
    .bind(job.id.as_str())
    .fetch_all(&sys.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_40037_on_a_template_the_catalog_holds_is_retried_once_after_a_fresh_list() {
    let sys = seeded_with(listing_category_templates(), 10).await;
    let worker = sys.start_worker(WorkerConfig::default());
    wait_until(
        &sys,
        "the first sync",
        "SELECT EXISTS (SELECT 1 FROM template_syncs)",
    )
    .await;
    // A one-off 40037 on a template WeChat lists: a burst, not a deletion.
    sys.mock.set_faults(FaultPlan::from(
        FaultRule::new(Fault::Errcode(40037))
            .on(Endpoint::TemplateSend)
            .times(1),
    ));
    let once = shipped(1, "订单已发货");
    sys.publish(std::slice::from_ref(&once)).await;
    sys.wait_finished(1, WAIT).await;
    assert_eq!(sys.state(&once.id).await.as_deref(), Some("sent"));
    assert_eq!(
        attempts(&sys, &once).await,
        [(1, "retry".to_owned(), Some(40037))],
        "the ledger records the retried attempt"
    );
    assert_eq!(sends_made(&sys, &once).await, 2);
    let trigger: String = sqlx::query_scalar("SELECT trigger FROM template_syncs")
        .fetch_one(&sys.db.pool)
        .await
        .unwrap();
    assert_eq!(trigger, "unknown_template", "a fresh list was fetched");
    // Two 40037s in a row on the same job: retried once, then dead as before.
    sys.mock.set_faults(FaultPlan::from(
        FaultRule::new(Fault::Errcode(40037))
            .on(Endpoint::TemplateSend)
            .times(2),
    ));
    let twice = shipped(2, "订单已发货");
    sys.publish(std::slice::from_ref(&twice)).await;
    sys.wait_finished(2, WAIT).await;
    worker.stop().await;
    let (reason, errcode, errmsg) = dead_letter(&sys, &twice).await;
    assert_eq!(
        (reason.as_str(), errcode),
        ("payload_rejected", Some(40037))
    );
    assert!(errmsg.contains("again after a retry"), "{errmsg}");
    let history = attempts(&sys, &twice).await;
    assert_eq!(
        history
            .iter()
            .map(|(_, outcome, errcode)| (outcome.as_str(), *errcode))
            .collect::<Vec<_>>(),
        [("retry", Some(40037)), ("dead", Some(40037))]
    );
    assert_eq!(
        catalog_rows(&sys).await.get(SHIPPED),
        Some(&("api".to_owned(), false)),
        "the template is still listed"
    );
}

#[tokio::test]
async fn a_40037_on_a_hand_registered_template_is_retried_once() {
    let sys = System::seeded(10).await;
    let (code, _, stderr) = run_json(
        &sys,
        &[
            "templates",
            "add",
            "--app",
            "default",
            "--id",
            SHIPPED,
            "--content",
            "{{thing1.DATA}} {{time2.DATA}}",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    sys.mock.set_faults(FaultPlan::from(
        FaultRule::new(Fault::Errcode(40037))
            .on(Endpoint::TemplateSend)
            .times(1),
    ));
    let job = shipped(1, "订单已发货");
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(std::slice::from_ref(&job)).await;
    sys.wait_finished(1, WAIT).await;
    worker.stop().await;
    assert_eq!(sys.state(&job.id).await.as_deref(), Some("sent"));
    assert_eq!(
        attempts(&sys, &job).await,
        [(1, "retry".to_owned(), Some(40037))]
    );
    assert_eq!(sends_made(&sys, &job).await, 2);
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
    let read = wxnotify_services::quota::read(
        &sys.db.pool,
        &tokens,
        &client,
        &app,
        wxnotify_services::quota::ReadTrigger::Command,
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
    wxnotify_services::quota::store(
        &sys.db.pool,
        &app,
        &quota,
        at("2026-11-30T15:00:00Z"),
        wxnotify_services::quota::ReadTrigger::Schedule,
    )
    .await
    .unwrap();
    sent_at(&sys, "before-midnight", at("2026-11-30T15:30:00Z")).await;
    sent_at(&sys, "after-midnight", at("2026-11-30T16:30:00Z")).await;
    let today = |now| wxnotify_services::quota::today(&sys.db.pool, &app, at(now));
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
    let q = wxnotify_services::quota::today(&sys.db.pool, &AppName::default_app(), Utc::now())
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

/// Runs a command: (exit code, stdout, stderr).
async fn run_raw(sys: &System, args: &[&str]) -> (Option<i32>, String, String) {
    let out = command(sys).args(args).output().await.unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
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
async fn templates_sync_and_list_show_each_template_with_its_placeholders_and_source() {
    let sys = seeded_with(listing_category_templates(), 1).await;
    let (code, listing, _) = run_json(&sys, &["templates", "sync", "--json"]).await;
    assert_eq!(code, Some(0));
    let templates = listing[0]["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 2);
    assert_eq!(templates[0]["template_id"], SHIPPED, "sorted by id");
    assert_eq!(templates[0]["source"], "api");
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
    let removed = listing[0]["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{listing}");
    assert_eq!(removed[0]["template_id"], SHIPPED);
    assert!(removed[0]["removed_at"].is_string(), "{listing}");
}

#[tokio::test]
async fn templates_add_list_and_remove_keep_manual_templates_apart_from_wechats_list() {
    // Real WeChat's list: no category template in it.
    let sys = System::seeded(1).await;
    let add = |id: &'static str, content: &'static str| {
        let sys = &sys;
        async move {
            run_json(
                sys,
                &[
                    "templates",
                    "add",
                    "--app",
                    "default",
                    "--id",
                    id,
                    "--content",
                    content,
                    "--title",
                    "发货",
                    "--json",
                ],
            )
            .await
        }
    };
    let (code, added, stderr) = add(SHIPPED, "商品：{{thing1.DATA}} 时间：{{time2.DATA}}").await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(added["action"], "added");
    assert_eq!(
        added["template"]["placeholders"],
        serde_json::json!(["thing1", "time2"])
    );
    // A sync from WeChat never deletes a manual template.
    let (code, listing, _) = run_json(&sys, &["templates", "sync", "--json"]).await;
    assert_eq!(code, Some(0));
    let templates = listing[0]["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 1, "{listing}");
    assert_eq!(templates[0]["template_id"], SHIPPED);
    assert_eq!(templates[0]["source"], "manual");
    assert!(listing[0]["synced_at"].is_string());
    // The text listing says the source too.
    let out = command(&sys)
        .args(["templates", "list"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{SHIPPED}  manual  发货  [thing1, time2]")),
        "{text}"
    );
    // Registering again updates it.
    let (code, updated, _) = add(SHIPPED, "{{thing1.DATA}}").await;
    assert_eq!(
        (code, &updated["action"]),
        (Some(0), &serde_json::json!("updated"))
    );
    // Bad arguments: exit 2, nothing stored.
    let (code, _, stderr) = run_raw(
        &sys,
        &[
            "templates",
            "add",
            "--app",
            "default",
            "--id",
            "T2",
            "--content",
            "no placeholder",
        ],
    )
    .await;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("no {{key.DATA}} placeholder"), "{stderr}");
    // A template WeChat lists cannot be registered over, nor removed by hand: exit 1.
    sys.mock.add_template(MockTemplate::new(
        "TPL_OLD",
        "旧模板",
        &["keyword1", "keyword2"],
    ));
    run_json(&sys, &["templates", "sync", "--json"]).await;
    let (code, _, stderr) = run_raw(
        &sys,
        &[
            "templates",
            "add",
            "--app",
            "default",
            "--id",
            "TPL_OLD",
            "--content",
            "{{keyword1.DATA}}",
        ],
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("is listed by WeChat"), "{stderr}");
    let (code, _, _) = run_raw(
        &sys,
        &["templates", "remove", "--app", "default", "--id", "TPL_OLD"],
    )
    .await;
    assert_eq!(code, Some(1));
    // Removing the manual one.
    let (code, removed, _) = run_json(
        &sys,
        &[
            "templates",
            "remove",
            "--app",
            "default",
            "--id",
            SHIPPED,
            "--json",
        ],
    )
    .await;
    assert_eq!(
        (code, &removed["action"]),
        (Some(0), &serde_json::json!("removed"))
    );
    let (_, listing, _) = run_json(&sys, &["templates", "list", "--json"]).await;
    let ids: Vec<&str> = listing[0]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["template_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["TPL_OLD"], "{listing}");
    assert_eq!(listing[0]["templates"][0]["source"], "api");
    let (code, _, stderr) = run_raw(
        &sys,
        &["templates", "remove", "--app", "default", "--id", SHIPPED],
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("has no manual template"), "{stderr}");
}

#[tokio::test]
async fn enqueue_refuses_unknown_and_missing_keys_naming_them() {
    let sys = System::seeded(1).await;
    let (tokens, client) = wechat(&sys);
    let app = AppName::default_app();
    wxnotify_services::templates::sync_app(
        &sys.db.pool,
        &tokens,
        &client,
        &app,
        SyncTrigger::Command,
    )
    .await
    .unwrap();
    // WeChat's list lacks the category template: accepted, with a warning, keys unchecked.
    let (code, summary, stderr) = run_json(
        &sys,
        &[
            "enqueue",
            "--to-unionid",
            "u1",
            "--template",
            SHIPPED,
            "--data",
            "thing1=x",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{summary} {stderr}");
    assert!(
        stderr.contains("not in the synced catalog") && stderr.contains("WeChat will decide"),
        "{stderr}"
    );
    // Registered by hand, its keys are checked.
    let (code, _, stderr) = run_json(
        &sys,
        &[
            "templates",
            "add",
            "--app",
            "default",
            "--id",
            SHIPPED,
            "--content",
            "{{thing1.DATA}} {{time2.DATA}}",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
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
                .lane_queue(wxnotify_core::queue::Lane::Jobs)
                .as_str()
        )
    );
    assert_eq!(status["workers"], 0);
}
