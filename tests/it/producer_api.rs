//! The producer API (`/v1/notifications`) against real RabbitMQ and Postgres, a real worker
//! and the fake WeChat: accepted only after confirm, 503 when the broker is gone, batches,
//! idempotency, 422 pointers, every status, API keys, signed webhooks, the OpenAPI document.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use wxnotify_api::producer::{api_keys, webhooks};
use wxnotify_core::config::AppConfig;
use wxnotify_core::domain::{AppName, Job, JobId, OpenId, Recipient, TemplateData};
use wxnotify_core::queue::{Lane, Topology};
use wxnotify_sandbox::mock_wechat::{self, MockEvent, PushMode};
use wxnotify_worker::WorkerConfig;

use crate::producer_support::{Api, PrivateBroker, declare, job_body, queue_depth};
use crate::support::queue_prefix;
use crate::system::{CALLBACK_TOKEN, System};

#[tokio::test]
async fn a_job_is_answered_202_once_rabbitmq_confirmed_it_and_is_then_in_the_queue() {
    let api = Api::start().await;
    let jobs_queue = api.sys.topology.lane_queue(Lane::Jobs);
    assert_eq!(
        queue_depth(&api.sys.settings.amqp_url, &jobs_queue).await,
        0
    );

    let a = api
        .post("v1/notifications", Some(&api.key), &job_body("order-1", 1))
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let mut accepted = a.body.clone();
    let warnings = accepted.as_object_mut().unwrap().remove("warnings");
    assert!(
        warnings.as_ref().is_some_and(Value::is_array),
        "{warnings:?}"
    );
    assert_eq!(
        accepted,
        json!({"id": "order-1", "status_url": "/v1/notifications/order-1", "state": "queued"})
    );
    assert_eq!(a.headers["location"], "/v1/notifications/order-1");
    // The 202 came after the confirm: the message is in the queue (no worker runs).
    assert_eq!(
        queue_depth(&api.sys.settings.amqp_url, &jobs_queue).await,
        1
    );

    // Without an id, one is made and answered.
    let mut body = job_body("x", 2);
    body.as_object_mut().unwrap().remove("id");
    let a = api.post("v1/notifications", Some(&api.key), &body).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();
    assert!(JobId::parse(id.as_str()).is_ok());
    assert_eq!(
        queue_depth(&api.sys.settings.amqp_url, &jobs_queue).await,
        2
    );

    let s = api.status("order-1").await;
    assert_eq!(
        (s.status, &s.body["state"]),
        (200, &json!("queued")),
        "{}",
        s.body
    );
    assert!(s.body["accepted_at"].is_string());
}

#[tokio::test]
async fn a_stopped_broker_answers_503_with_retry_after_and_nothing_accepted_is_lost() {
    let sys = System::seeded(5).await;
    let broker = PrivateBroker::start().await;
    let topology = Topology::new(queue_prefix());
    declare(&broker.url(), &topology).await;
    let api = Api::serve(sys, broker.url(), topology.clone(), &[]).await;
    let jobs_queue = topology.lane_queue(Lane::Jobs);

    for i in 0..5 {
        let a = api
            .post(
                "v1/notifications",
                Some(&api.key),
                &job_body(&format!("before-{i}"), i),
            )
            .await;
        assert_eq!(a.status, 202, "{}", a.body);
    }
    let batch =
        json!({"jobs": [job_body("batch-0", 1), job_body("batch-1", 2), job_body("batch-2", 3)]});
    let a = api
        .post("v1/notifications/batch", Some(&api.key), &batch)
        .await;
    assert_eq!(
        (a.status, &a.body["accepted"]),
        (200, &json!(3)),
        "{}",
        a.body
    );

    broker.stop();

    let a = api
        .post("v1/notifications", Some(&api.key), &job_body("during", 4))
        .await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.headers["retry-after"], "5");
    assert_eq!(a.body["code"], "unavailable");
    let batch = json!({"jobs": [job_body("during-b0", 1), job_body("during-b1", 2)]});
    let a = api
        .post("v1/notifications/batch", Some(&api.key), &batch)
        .await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.headers["retry-after"], "5");
    // Never reported accepted.
    assert_eq!(api.status("during").await.status, 404);
    assert_eq!(api.status("during-b0").await.status, 404);

    broker.launch().await;
    // Everything answered 202 survived the stop; nothing answered 503 is there.
    assert_eq!(queue_depth(&broker.url(), &jobs_queue).await, 8);

    // The same request again, once the broker is back: accepted (the link reconnects).
    let a = api
        .post("v1/notifications", Some(&api.key), &job_body("during", 4))
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(queue_depth(&broker.url(), &jobs_queue).await, 9);
    assert_eq!(api.status("during").await.status, 200);
}

#[tokio::test]
async fn a_batch_answers_each_item_good_or_bad() {
    let api = Api::start().await;
    let mut bad = job_body("b-bad", 2);
    bad.as_object_mut().unwrap().remove("template_id");
    let mut other_content = job_body("b-0", 3);
    other_content["data"]["thing1"] = json!("另一个内容");
    let batch = json!({"jobs": [
        job_body("b-0", 1),
        bad,
        job_body("b-1", 2),
        json!({"app": "shop", "to": {"unionid": "u"}, "template_id": "t", "data": {"a": "x"}}),
        job_body("b-0", 1),
        other_content,
        "not a job",
    ]});
    let a = api
        .post("v1/notifications/batch", Some(&api.key), &batch)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let r = &a.body["results"];
    let statuses: Vec<u64> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [202, 422, 202, 422, 202, 409, 422], "{}", a.body);
    assert_eq!(r[0]["id"], "b-0");
    assert_eq!(r[0]["status_url"], "/v1/notifications/b-0");
    assert_eq!(r[1]["error"]["errors"][0]["pointer"], "/jobs/1/template_id");
    assert_eq!(
        r[3]["error"]["errors"][0]["pointer"], "/jobs/3/app",
        "unknown app"
    );
    assert_eq!(r[5]["error"]["code"], "conflict");
    assert_eq!(r[6]["error"]["errors"][0]["pointer"], "/jobs/6");
    assert_eq!(
        (&a.body["accepted"], &a.body["rejected"]),
        (&json!(3), &json!(4))
    );
    // b-0 twice with the same content is one job.
    assert_eq!(
        queue_depth(
            &api.sys.settings.amqp_url,
            &api.sys.topology.lane_queue(Lane::Jobs)
        )
        .await,
        2
    );

    let too_many =
        json!({"jobs": (0..1001).map(|i| job_body(&format!("m-{i}"), 1)).collect::<Vec<_>>()});
    let a = api
        .post("v1/notifications/batch", Some(&api.key), &too_many)
        .await;
    assert_eq!(a.status, 422);
    assert_eq!(a.body["errors"][0]["pointer"], "/jobs");
}

#[tokio::test]
async fn a_full_batch_of_1000_is_accepted_with_every_answer_in_its_items_order() {
    let api = Api::start().await;
    // 1,000 jobs (published in parts on several channels): each answer is its own item's.
    let batch = json!({"jobs": (0..1000).map(|i| job_body(&format!("full-{i}"), i % 7)).collect::<Vec<_>>()});
    let a = api
        .post("v1/notifications/batch", Some(&api.key), &batch)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["accepted"], 1000, "{}", a.body);
    let ids: Vec<&str> = a.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..1000).map(|i| format!("full-{i}")).collect();
    assert_eq!(ids, expected);
    assert_eq!(
        queue_depth(
            &api.sys.settings.amqp_url,
            &api.sys.topology.lane_queue(Lane::Jobs)
        )
        .await,
        1000
    );
    assert_eq!(api.status("full-999").await.body["state"], "queued");
}

#[tokio::test]
async fn the_same_id_with_the_same_content_answers_its_status_and_other_content_409() {
    let api = Api::start().await;
    let a = api
        .post("v1/notifications", Some(&api.key), &job_body("idem-1", 1))
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    // The same job, written differently (WeChat's value form, explicit app, other key order).
    let same = json!({
        "data": {"time2": "2026-11-24 10:00", "thing1": {"value": "订单已发货"}},
        "template_id": "TPL_ORDER_SHIPPED",
        "app": "default",
        "to": {"mp_openid": mock_wechat::mp_openid(1)},
        "id": "idem-1"
    });
    let a = api.post("v1/notifications", Some(&api.key), &same).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        (&a.body["id"], &a.body["state"]),
        (&json!("idem-1"), &json!("queued"))
    );
    let mut other = job_body("idem-1", 1);
    other["data"]["thing1"] = json!("订单已取消");
    let a = api.post("v1/notifications", Some(&api.key), &other).await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.body["code"], "conflict");
    // Published once.
    assert_eq!(
        queue_depth(
            &api.sys.settings.amqp_url,
            &api.sys.topology.lane_queue(Lane::Jobs)
        )
        .await,
        1
    );

    // After it was sent, the repeat answers "sent".
    let worker = api.sys.start_worker(WorkerConfig::default());
    api.wait_status("idem-1", |s| s["state"] == "sent").await;
    let a = api.post("v1/notifications", Some(&api.key), &same).await;
    assert_eq!(
        (a.status, &a.body["state"]),
        (200, &json!("sent")),
        "{}",
        a.body
    );
    worker.stop().await;
    assert_eq!(api.sys.mock.sends().len(), 1);
}

#[tokio::test]
async fn invalid_jobs_are_422_with_a_json_pointer_and_an_actionable_message_per_error() {
    let api = Api::start().await;
    let body = json!({
        "id": "has space",
        "to": {"mp_openid": "o1", "unionid": "u1"},
        "template_id": "TPL_ORDER_SHIPPED",
        "data": {"thing1": "", "time2": {"value": "x\ny"}},
        "not_after": "2020-01-01T00:00:00Z",
        "colour": "red"
    });
    let a = api.post("v1/notifications", Some(&api.key), &body).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(a.body["code"], "validation_failed");
    let errors: Vec<(String, String)> = a.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["pointer"].as_str().unwrap().into(),
                e["message"].as_str().unwrap().into(),
            )
        })
        .collect();
    let message = |p: &str| {
        errors
            .iter()
            .find(|(ptr, _)| ptr == p)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| panic!("no error at {p}: {errors:?}"))
    };
    assert!(message("/id").contains("job id contains ' '"));
    assert!(message("/to").contains("exactly one of"));
    assert!(message("/data/thing1").contains("empty"));
    assert!(message("/data/time2/value").contains("control character"));
    assert!(message("/not_after").contains("already past"));
    assert!(message("/colour").contains("unknown field"));
    assert_eq!(errors.len(), 6, "{errors:?}");

    let unknown_app =
        json!({"app": "nope", "to": {"unionid": "u"}, "template_id": "t", "data": {"a": "x"}});
    let a = api
        .post("v1/notifications", Some(&api.key), &unknown_app)
        .await;
    assert_eq!(
        (a.status, &a.body["errors"][0]["pointer"]),
        (422, &json!("/app"))
    );
    assert!(
        a.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("this server has: default")
    );

    let raw = api
        .http
        .post(api.base.join("v1/notifications").unwrap())
        .bearer_auth(&api.key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert_eq!(
        queue_depth(
            &api.sys.settings.amqp_url,
            &api.sys.topology.lane_queue(Lane::Jobs)
        )
        .await,
        0
    );
}

#[tokio::test]
async fn the_status_follows_each_outcome_queued_sent_receipt_dead_and_duplicate() {
    let api = Api::start().await;
    // A job id first used on the AMQP path, finished before the API sees it.
    let mut earlier = Job::new(
        Recipient::MpOpenid(OpenId::parse(mock_wechat::mp_openid(3)).unwrap()),
        "TPL_ORDER_SHIPPED".parse().unwrap(),
        TemplateData::from_pairs(&[("thing1", "早先"), ("time2", "2026-11-24 10:00")]).unwrap(),
    );
    earlier.id = JobId::parse("dup-1").unwrap();
    let worker = api.sys.start_worker(WorkerConfig::default());
    api.sys.publish(&[earlier]).await;
    api.sys.wait_finished(1, Duration::from_secs(30)).await;
    worker.stop().await;

    // Person 2 left the OA without wxnotify hearing of it: WeChat answers 43004.
    api.sys.mock.unsubscribe(2);
    for body in [
        job_body("ok-1", 1),
        job_body("dead-43004", 2),
        job_body("dead-no-unionid", 9),
        job_body("dup-1", 4),
    ] {
        let a = api.post("v1/notifications", Some(&api.key), &body).await;
        assert_eq!(a.status, 202, "{}", a.body);
    }
    let queued = api.status("ok-1").await.body;
    assert_eq!(
        (&queued["state"], &queued["attempts"]),
        (&json!("queued"), &json!(0))
    );

    let worker = api.sys.start_worker(WorkerConfig::default());
    let sent = api.wait_status("ok-1", |s| s["state"] == "sent").await;
    let msgid: u64 = sent["msgid"].as_str().unwrap().parse().unwrap();
    assert!(
        msgid > 1 << 53,
        "the msgid is a string because it exceeds 2^53: {sent}"
    );
    assert!(sent["sent_at"].is_string());
    assert_eq!(sent["attempts"], 1);

    let dead = api
        .wait_status("dead-43004", |s| s["state"] == "dead")
        .await;
    assert_eq!(
        (&dead["reason"], &dead["errcode"]),
        (&json!("recipient_rejected"), &json!(43004)),
        "{dead}"
    );
    assert!(
        dead["errmsg"].as_str().unwrap().contains("rid"),
        "WeChat's message with its rid: {dead}"
    );
    let dead = api
        .wait_status("dead-no-unionid", |s| s["state"] == "dead")
        .await;
    assert_eq!(dead["reason"], "no_unionid");
    let dup = api
        .wait_status("dup-1", |s| s["state"] == "duplicate")
        .await;
    assert_eq!(dup["id"], "dup-1");
    api.sys.wait_finished(4, Duration::from_secs(30)).await;
    // The API's dup-1 reached the worker and was counted as a duplicate, not sent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sqlx::query_scalar::<_, i32>("SELECT duplicates FROM deliveries WHERE job_id = 'dup-1'")
        .fetch_one(&api.sys.db.pool)
        .await
        .unwrap()
        < 1
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dup-1 never came back as a duplicate"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.stop().await;
    // The duplicate was not sent again: person 3's earlier job and ok-1 only.
    assert_eq!(api.sys.mock.sends().len(), 2);

    // WeChat's receipt arrives on the OA callback of the same serve.
    api.sys
        .mock
        .push_event(
            &api.base.join("wechat/callback").unwrap(),
            &MockEvent::TemplateSendJobFinish {
                msgid,
                status: "failed:user block".into(),
            },
            &PushMode::Plain {
                token: CALLBACK_TOKEN.into(),
            },
        )
        .await
        .unwrap();
    let with_receipt = api.wait_status("ok-1", |s| !s["receipt"].is_null()).await;
    assert_eq!(with_receipt["receipt"]["status"], "failed:user block");
    assert_eq!(with_receipt["state"], "sent");
}

#[tokio::test]
async fn a_template_the_synced_list_lacks_is_accepted_and_one_it_stopped_listing_is_refused() {
    let api = Api::start().await;
    // The catalog is synced; WeChat's list lacks the category templates (TPL_ORDER_SHIPPED is
    // one), and once listed TPL_GONE, which a later list lacked.
    let client = wxnotify_core::wechat::WechatClient::new(
        api.sys.mock.base_url(),
        &wxnotify_core::wechat::client::ClientOptions::default(),
    )
    .unwrap();
    let tokens = wxnotify_core::wechat::TokenStore::new(
        api.sys.db.pool.clone(),
        client.clone(),
        &api.sys.settings.apps,
    );
    let listed = wxnotify_services::templates::sync_app(
        &api.sys.db.pool,
        &tokens,
        &client,
        &AppName::default_app(),
        wxnotify_services::templates::SyncTrigger::Command,
    )
    .await
    .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    sqlx::query(
        "INSERT INTO templates (app, template_id, title, content, placeholders, source, removed_at)
         VALUES ('default', 'TPL_GONE', 'Gone', '{{thing1.DATA}}', ARRAY['thing1'], 'api', now())",
    )
    .execute(&api.sys.db.pool)
    .await
    .unwrap();
    let mut unlisted = job_body("unlisted-1", 1);
    unlisted["template_id"] = json!("TPL_NO_SUCH");
    let accepted = api
        .post("v1/notifications", Some(&api.key), &unlisted)
        .await;
    assert_eq!(accepted.status, 202, "WeChat decides: {}", accepted.body);
    let category = api
        .post(
            "v1/notifications",
            Some(&api.key),
            &job_body("category-1", 2),
        )
        .await;
    assert_eq!(category.status, 202, "{}", category.body);
    let mut gone = job_body("gone-1", 3);
    gone["template_id"] = json!("TPL_GONE");
    gone["data"] = json!({"thing1": "x"});
    let refused = api.post("v1/notifications", Some(&api.key), &gone).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(
        refused.body["errors"][0]["pointer"], "/template_id",
        "{}",
        refused.body
    );
    assert!(
        refused.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("deleted on WeChat's side"),
        "{}",
        refused.body
    );
}

fn shop(sys: &System) -> AppConfig {
    let mut app = sys.settings.apps[0].clone();
    app.name = AppName::parse("shop").unwrap();
    app
}

#[tokio::test]
async fn api_keys_are_per_app_a_foreign_app_is_403_and_a_revoked_key_401() {
    let sys = System::seeded(5).await;
    let amqp = sys.settings.amqp_url.clone();
    let topology = sys.topology.clone();
    let shop = shop(&sys);
    let api = Api::serve(sys, amqp, topology, &[shop]).await;
    let pool = &api.sys.db.pool;
    let shop_key = api_keys::create(pool, &AppName::parse("shop").unwrap(), None)
        .await
        .unwrap();

    let none = api
        .post("v1/notifications", None, &job_body("k-1", 1))
        .await;
    assert_eq!(none.status, 401);
    assert!(none.headers.contains_key("www-authenticate"));
    let unknown = api
        .post(
            "v1/notifications",
            Some("wxn_not-a-key"),
            &job_body("k-1", 1),
        )
        .await;
    assert_eq!(unknown.status, 401);

    // The shop key sending for the default app.
    let mut for_default = job_body("k-1", 1);
    for_default["app"] = json!("default");
    let a = api
        .post("v1/notifications", Some(&shop_key.key), &for_default)
        .await;
    assert_eq!(
        (a.status, &a.body["code"]),
        (403, &json!("forbidden_app")),
        "{}",
        a.body
    );
    // Without `app`, a job goes to the key's app.
    let a = api
        .post(
            "v1/notifications",
            Some(&shop_key.key),
            &job_body("k-shop", 1),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let job: Value = sqlx::query_scalar::<_, String>(
        "SELECT app FROM api_notifications WHERE job_id = 'k-shop'",
    )
    .fetch_one(pool)
    .await
    .map(Value::from)
    .unwrap();
    assert_eq!(job, "shop");
    // Another app's notification is not found with this key.
    assert_eq!(api.status("k-shop").await.status, 404);
    assert_eq!(
        api.get("v1/notifications/k-shop", Some(&shop_key.key))
            .await
            .status,
        200
    );

    assert!(api_keys::revoke(pool, shop_key.id).await.unwrap());
    let a = api
        .post("v1/notifications", Some(&shop_key.key), &job_body("k-2", 1))
        .await;
    assert_eq!(a.status, 401);
    assert!(a.body["error"].as_str().unwrap().contains("revoked"));
    assert_eq!(
        api.get("v1/notifications/k-shop", Some(&shop_key.key))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn the_api_key_command_creates_lists_and_revokes_keys_showing_a_key_once() {
    let api = Api::start().await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wxnotify"))
            .args(args)
            .env("DATABASE_URL", api.sys.db.url())
            .env("WXNOTIFY_OA_APPID", mock_wechat::MOCK_OA_APPID)
            .env("WXNOTIFY_OA_SECRET", mock_wechat::MOCK_OA_SECRET)
            .env("WXNOTIFY_CONFIG", "")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let (code, out) = run(&[
        "api-key", "create", "--app", "default", "--label", "cli", "--json",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let a = api
        .post("v1/notifications", Some(&key), &job_body("cli-1", 1))
        .await;
    assert_eq!(a.status, 202, "{}", a.body);

    let (code, out) = run(&["api-key", "list", "--app", "default", "--json"]);
    assert_eq!(code, Some(0));
    assert!(!out.contains(&key), "list never shows a key");
    assert!(out.contains(created["prefix"].as_str().unwrap()));
    let stored: Vec<u8> = sqlx::query_scalar("SELECT key_sha256 FROM api_keys WHERE id = $1::uuid")
        .bind(created["id"].as_str().unwrap())
        .fetch_one(&api.sys.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, api_keys::key_hash(&key), "only the hash is stored");

    let (code, _) = run(&["api-key", "revoke", created["id"].as_str().unwrap()]);
    assert_eq!(code, Some(0));
    let a = api
        .post("v1/notifications", Some(&key), &job_body("cli-2", 1))
        .await;
    assert_eq!(a.status, 401);
    let (code, _) = run(&["api-key", "create", "--app", "nope"]);
    assert_eq!(code, Some(2), "an unknown app is a configuration error");
}

/// What the webhook receiver saw.
struct Received {
    headers: HeaderMap,
    body: Bytes,
    at: tokio::time::Instant,
}

#[tokio::test]
async fn outcome_webhooks_are_signed_and_retried_with_backoff_until_accepted() {
    let api = Api::start().await;
    let (tx, mut rx) = mpsc::unbounded_channel::<Received>();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let calls = calls.clone();
            move |headers: HeaderMap, body: Bytes| {
                let tx = tx.clone();
                let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    let _ = tx.send(Received {
                        headers,
                        body,
                        at: tokio::time::Instant::now(),
                    });
                    // The first two posts fail.
                    if n < 2 {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = url::Url::parse(&format!("http://{}/hook", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let pool = api.sys.db.pool.clone();
    let secret = webhooks::set(
        &pool,
        &api.sys.settings.secrets,
        &AppName::default_app(),
        &hook,
        false,
        false,
    )
    .await
    .unwrap()
    .expect("a new webhook gets a secret");
    let stop = tokio_util::sync::CancellationToken::new();
    let options = webhooks::WebhookOptions {
        min_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(2),
        idle_poll: Duration::from_millis(50),
        ..webhooks::WebhookOptions::default()
    };
    let dispatcher = tokio::spawn(webhooks::run_dispatcher(
        pool.clone(),
        options,
        api.sys.settings.secrets.clone(),
        stop.clone(),
    ));

    let worker = api.sys.start_worker(WorkerConfig::default());
    for body in [job_body("hook-sent", 1), job_body("hook-dead", 9)] {
        assert_eq!(
            api.post("v1/notifications", Some(&api.key), &body)
                .await
                .status,
            202
        );
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("the webhook is posted (and retried) within 20 s")
            .unwrap();
        got.push(r);
    }
    worker.stop().await;
    let now = chrono::Utc::now().timestamp();
    for r in &got {
        let header = |name: &str| r.headers[name].to_str().unwrap();
        let signed = webhooks::Signed {
            id: header(webhooks::ID_HEADER),
            timestamp: header(webhooks::TIMESTAMP_HEADER),
            signature: header(webhooks::SIGNATURE_HEADER),
        };
        let tolerance = Duration::from_secs(300);
        assert!(
            webhooks::verify(&secret, signed, &r.body, now, tolerance),
            "the signature verifies: {signed:?}"
        );
        assert!(!webhooks::verify(
            "whsec_d3Jvbmc=",
            signed,
            &r.body,
            now,
            tolerance
        ));
        assert_eq!(r.headers[webhooks::EVENT_HEADER], "dead");
        assert_eq!(
            r.headers[webhooks::ID_HEADER],
            got[0].headers[webhooks::ID_HEADER],
            "one event, retried"
        );
        let event: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            (&event["event"], &event["id"], &event["reason"]),
            (&json!("dead"), &json!("hook-dead"), &json!("no_unionid"))
        );
        assert_eq!(
            event["event_id"], signed.id,
            "the body carries the event id"
        );
    }
    let first_gap = got[1].at - got[0].at;
    let second_gap = got[2].at - got[1].at;
    assert!(first_gap >= Duration::from_millis(200), "{first_gap:?}");
    assert!(
        second_gap >= Duration::from_millis(400),
        "backoff grows: {first_gap:?} then {second_gap:?}"
    );
    // The sent job made no event (not asked for), and the dead one is settled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let outbox = loop {
        let rows: Vec<(String, String, i32, bool)> = sqlx::query_as(
            "SELECT job_id, event, attempts, delivered_at IS NOT NULL FROM webhook_outbox ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        if rows.iter().all(|r| r.3) || tokio::time::Instant::now() >= deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        outbox,
        [("hook-dead".to_owned(), "dead".to_owned(), 3, true)]
    );
    stop.cancel();
    dispatcher.await.unwrap();
}

#[tokio::test]
async fn the_openapi_document_is_generated_from_the_code_committed_and_served() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/openapi.json");
    let generated = wxnotify_api::openapi::openapi_json();
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).expect("schemas/openapi.json exists");
    assert!(
        committed == generated,
        "schemas/openapi.json is stale: run `UPDATE_SCHEMAS=1 cargo nextest run -E 'test(openapi)'`"
    );
    let doc: Value = serde_json::from_str(&generated).unwrap();
    for p in [
        "/v1/notifications",
        "/v1/notifications/batch",
        "/v1/notifications/{id}",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} is described");
    }
    assert_eq!(
        doc["paths"]["/v1/notifications"]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/Job"
    );
    assert!(doc["components"]["schemas"]["Job"]["properties"]["template_id"].is_object());
    assert!(
        !generated.contains("#/$defs/"),
        "every reference points into components"
    );

    let api = Api::start().await;
    let served = api
        .http
        .get(api.base.join("openapi.json").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    // The public address serves the document without the admin surface.
    assert_eq!(
        served.text().await.unwrap(),
        wxnotify_api::openapi::public_openapi_json()
    );
    assert!(generated.contains("\"/admin/api/dead-letters\""));
    assert!(!wxnotify_api::openapi::public_openapi_json().contains("\"/admin/"));
}

#[tokio::test]
async fn the_idempotency_key_header_is_the_job_id_and_a_different_body_id_is_a_400() {
    let api = Api::start().await;
    let post = |key: Option<&'static str>, body: Value| {
        let mut request = api
            .http
            .post(api.base.join("v1/notifications").unwrap())
            .bearer_auth(&api.key)
            .json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        async move {
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, ct, r.json::<Value>().await.unwrap())
        }
    };
    let mut body = job_body("unused", 1);
    body.as_object_mut().unwrap().remove("id");
    let (status, _, first) = post(Some("order-7-shipped"), body.clone()).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["id"], "order-7-shipped");
    // The client's retry with the same key is the same job: answered with its status.
    let (status, _, again) = post(Some("order-7-shipped"), body.clone()).await;
    assert_eq!((status, &again["id"]), (200, &json!("order-7-shipped")));
    // The same key in both places is fine; two different ids are refused.
    let mut same = body.clone();
    same["id"] = json!("order-7-shipped");
    assert_eq!(post(Some("order-7-shipped"), same).await.0, 200);
    let mut other = body.clone();
    other["id"] = json!("order-8-shipped");
    let (status, ct, e) = post(Some("order-7-shipped"), other).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    assert!(e["detail"].as_str().unwrap().contains("differ"), "{e}");
    let (status, _, e) = post(Some("bad key"), body.clone()).await;
    assert_eq!(status, 400, "{e}");
    // One job only on the lane: the retry did not send twice.
    assert_eq!(
        queue_depth(
            &api.sys.settings.amqp_url,
            &api.sys.topology.lane_queue(Lane::Jobs)
        )
        .await,
        1
    );
    // The document says a request with neither is not idempotent.
    let doc: Value = serde_json::from_str(&wxnotify_api::openapi::openapi_json()).unwrap();
    let params = doc
        .pointer("/paths/~1v1~1notifications/post/parameters")
        .unwrap()
        .to_string();
    assert!(
        params.contains("Idempotency-Key") && params.contains("not idempotent"),
        "{params}"
    );
}

#[tokio::test]
async fn errors_are_rfc_9457_problems_naming_no_rust_type_and_truncate_is_accepted_where_suggested()
{
    let api = Api::start().await;
    let long = "Forty-eight characters of a thing1 value, too lo";
    let mut body = job_body("long-1", 1);
    body["data"]["thing1"] = json!(long);
    let a = api.post("v1/notifications", Some(&api.key), &body).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(
        a.headers.get("content-type").unwrap(),
        "application/problem+json"
    );
    for member in [
        "type", "title", "status", "detail", "error", "code", "errors",
    ] {
        assert!(!a.body[member].is_null(), "{member} in {}", a.body);
    }
    assert_eq!(a.body["type"], "urn:wxnotify:problem:validation_failed");
    assert_eq!(a.body["status"], 422);
    let hint = a.body["errors"][0]["message"].as_str().unwrap();
    assert!(hint.contains("\"truncate\": true"), "{hint}");
    assert_eq!(a.body["errors"][0]["pointer"], "/data/thing1");
    // Where the hint says: the job's own `truncate`. Accepted, with what it did as a warning.
    body["truncate"] = json!(true);
    let a = api.post("v1/notifications", Some(&api.key), &body).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let warnings = a.body["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w["pointer"] == "/data/thing1"
            && w["message"].as_str().unwrap().contains("shortened")),
        "{warnings:?}"
    );

    // Serde's messages about the domain types name no Rust type.
    for (field, value) in [
        ("to", json!(5)),
        ("to", json!("oMP1")),
        ("miniprogram", json!("pages/a")),
        ("data", json!({"thing1": 5})),
        ("truncate", json!("yes")),
    ] {
        let mut bad = job_body("bad-1", 1);
        bad[field] = value;
        let a = api.post("v1/notifications", Some(&api.key), &bad).await;
        assert_eq!(a.status, 422, "{field}: {}", a.body);
        let text = a.body.to_string();
        for leak in [
            "struct",
            "enum ",
            "Raw",
            "MiniProgramLink",
            "Recipient",
            "::",
        ] {
            assert!(!text.contains(leak), "{field}: {text} names {leak}");
        }
    }
    // Not JSON, no key, another app: problems too.
    let raw = api
        .http
        .post(api.base.join("v1/notifications").unwrap())
        .bearer_auth(&api.key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert_eq!(
        raw.headers().get("content-type").unwrap(),
        "application/problem+json"
    );
    let a = api.post("v1/notifications", None, &job_body("x", 1)).await;
    assert_eq!(
        (a.status, &a.body["type"], &a.body["status"]),
        (
            401,
            &json!("urn:wxnotify:problem:unauthorized"),
            &json!(401)
        )
    );
    assert_eq!(a.body["detail"], a.body["error"]);
}

#[tokio::test]
async fn the_status_after_a_replay_shows_the_life_that_sent_it() {
    use wxnotify_sandbox::mock_wechat::{Endpoint, Fault, FaultPlan, FaultRule};
    let api = Api::start().await;
    api.sys.mock.set_faults(FaultPlan {
        rules: vec![FaultRule::new(Fault::Errcode(-1)).on(Endpoint::TemplateSend)],
    });
    let mut config = WorkerConfig::default();
    config.retry.max_attempts = 2;
    let worker = api.sys.start_worker(config);
    let a = api
        .post(
            "v1/notifications",
            Some(&api.key),
            &job_body("replayed-1", 1),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let dead = api
        .wait_status("replayed-1", |s| s["state"] == "dead")
        .await;
    assert_eq!((&dead["errcode"], &dead["life"]), (&json!(-1), &json!(1)));
    api.sys.mock.clear_faults();
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM dead_letters WHERE job_id = 'replayed-1'")
            .fetch_all(&api.sys.db.pool)
            .await
            .unwrap();
    let letters = wxnotify_services::dlq::by_ids(&api.sys.db.pool, &ids)
        .await
        .unwrap();
    let report = wxnotify_services::dlq::replay(
        &api.sys.settings,
        &api.sys.db.pool,
        letters,
        wxnotify_services::dlq::ReplayOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.replayed, ids);
    let sent = api
        .wait_status("replayed-1", |s| s["state"] == "sent")
        .await;
    worker.stop().await;
    assert_eq!(sent["life"], 2, "{sent}");
    assert!(
        sent.get("errcode").is_none() && sent.get("errmsg").is_none(),
        "the failed first life is not the sent job's error: {sent}"
    );
    assert_eq!(api.sys.mock.sends().len(), 1);
}
