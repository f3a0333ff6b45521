//! Apps that share one deployment cannot touch each other: job ids are per app. Two apps may
//! use the same id; each job is sent, each app sees only its own, and one app cannot learn
//! whether another used an id.

use std::time::Duration;

use serde_json::json;
use wxnotify_api::producer::api_keys;
use wxnotify_core::domain::AppName;
use wxnotify_sandbox::mock_wechat;
use wxnotify_worker::WorkerConfig;

use crate::producer_support::{Api, job_body};
use crate::system::System;

#[tokio::test]
async fn two_apps_may_use_one_job_id_each_is_sent_and_sees_only_its_own() {
    let mut sys = System::seeded(5).await;
    // A second app on the same deployment (and, here, the same fake account), known to the
    // worker and to `serve`.
    let mut shop = sys.settings.apps[0].clone();
    shop.name = AppName::parse("shop").unwrap();
    sys.settings.apps.push(shop);
    let amqp = sys.settings.amqp_url.clone();
    let topology = sys.topology.clone();
    let api = Api::serve(sys, amqp, topology, &[]).await;
    let pool = &api.sys.db.pool;
    // The shop app's people: the same persons, logged in and synced for it too.
    for table in [
        "mp_users (app, mp_openid, unionid)",
        "oa_followers (app, oa_openid, unionid, subscribed)",
    ] {
        let (name, cols) = table.split_once(' ').unwrap();
        let cols = cols.trim_matches(['(', ')']);
        let rest = cols.trim_start_matches("app, ");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {name} ({cols}) SELECT 'shop', {rest} FROM {name} WHERE app = 'default'"
        )))
        .execute(pool)
        .await
        .unwrap();
    }
    let shop_key = api_keys::create(pool, &AppName::parse("shop").unwrap(), None)
        .await
        .unwrap()
        .key;
    let id = "order-1-shipped";

    // The shop uses the id first, for person 2.
    let mut for_shop = job_body(id, 2);
    for_shop["data"]["thing1"] = json!("商城订单已发货");
    let b = api
        .post("v1/notifications", Some(&shop_key), &for_shop)
        .await;
    assert_eq!(b.status, 202, "{}", b.body);

    // The default app cannot tell: its own id is unknown, not 404-for-someone-else or 409.
    assert_eq!(api.status(id).await.status, 404);
    let mut for_default = job_body(id, 1);
    for_default["data"]["thing1"] = json!("默认订单已发货");
    let a = api
        .post("v1/notifications", Some(&api.key), &for_default)
        .await;
    assert_eq!(
        a.status, 202,
        "the other app's use of the id is invisible: {}",
        a.body
    );
    assert_eq!(a.body["state"], "queued", "{}", a.body);
    // The same request again is the default app's own repeat; other content is its own 409.
    let again = api
        .post("v1/notifications", Some(&api.key), &for_default)
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    let other = api
        .post("v1/notifications", Some(&api.key), &job_body(id, 3))
        .await;
    assert_eq!(other.status, 409, "{}", other.body);

    let worker = api.sys.start_worker(WorkerConfig::default());
    api.sys.wait_finished(2, Duration::from_secs(30)).await;
    worker.stop().await;

    // Both were sent, each to its own person with its own content.
    let mut sends: Vec<(String, String)> = api
        .sys
        .mock
        .sends()
        .into_iter()
        .filter(|s| s.client_msg_id.as_deref() == Some(id))
        .map(|s| {
            (
                s.touser,
                s.data["thing1"]["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    sends.sort();
    let mut expected = vec![
        (mock_wechat::oa_openid(1), "默认订单已发货".to_owned()),
        (mock_wechat::oa_openid(2), "商城订单已发货".to_owned()),
    ];
    expected.sort();
    assert_eq!(sends, expected);

    // Each app's status of the id is its own job.
    let mine = api.status(id).await;
    assert_eq!(
        (mine.status, &mine.body["app"], &mine.body["state"]),
        (200, &json!("default"), &json!("sent")),
        "{}",
        mine.body
    );
    let theirs = api
        .get(&format!("v1/notifications/{id}"), Some(&shop_key))
        .await;
    assert_eq!(
        (theirs.status, &theirs.body["app"], &theirs.body["state"]),
        (200, &json!("shop"), &json!("sent")),
        "{}",
        theirs.body
    );
    assert_ne!(mine.body["msgid"], theirs.body["msgid"]);
    let rows: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT app, state, duplicates FROM deliveries WHERE job_id = $1 ORDER BY app",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("default".to_owned(), "sent".to_owned(), 0),
            ("shop".to_owned(), "sent".to_owned(), 0)
        ]
    );
}
