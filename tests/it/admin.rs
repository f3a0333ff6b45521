//! The admin API on the real system: tokens and roles, the dead-letter filter, replay and purge
//! by filter and by ids with their dry runs, the audit trail, apps, workers and queues.

use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_support::{ADMIN_TOKEN, AdminWorld, VIEWER_TOKEN, serve_admin};
use crate::system::System;
use wxnotify_sandbox::mock_wechat::MockConfig;

#[tokio::test]
async fn admin_api_without_a_token_or_with_a_wrong_one_is_401_and_off_without_configured_tokens() {
    let sys = System::new(MockConfig::default(), 100).await;
    let (base, _) = serve_admin(&sys, Some(ADMIN_TOKEN), Some(VIEWER_TOKEN)).await;
    let http = reqwest::Client::new();
    let url = base.join("admin/api/dead-letters").unwrap();

    let none = http.get(url.clone()).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert!(none.headers().contains_key("www-authenticate"));
    // No admin answer, refusals included, may be cached or sniffed.
    let ok = http
        .get(url.clone())
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // The campaign API is a router of its own.
    let mut settings = sys.settings.clone();
    settings.admin_token = Some(ADMIN_TOKEN.into());
    let campaigns_api =
        wxnotify_api::admin::campaigns::router(sys.db.pool.clone(), &settings).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let campaigns_base = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, campaigns_api).await.unwrap() });
    let campaigns = http
        .get(format!("{campaigns_base}admin/api/campaigns"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(campaigns.status(), 200);
    for answer in [&none, &ok, &campaigns] {
        assert_eq!(answer.headers()["cache-control"], "no-store", "{answer:?}");
        assert_eq!(answer.headers()["x-content-type-options"], "nosniff");
    }
    let body = none.text().await.unwrap();
    assert!(!body.contains(ADMIN_TOKEN));
    for wrong in ["nope", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1], ""] {
        let r = http
            .get(url.clone())
            .bearer_auth(wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "token {wrong:?}");
    }
    let basic = http
        .get(url.clone())
        .basic_auth("admin", Some(ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401, "only bearer tokens are accepted");
    for token in [ADMIN_TOKEN, VIEWER_TOKEN] {
        let r = http
            .get(url.clone())
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The console without a session goes to its login page.
    let console = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(base.join("admin/dead-letters").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(console.status(), 303);
    assert_eq!(console.headers()["location"], "/admin/login");

    // No token configured: the admin surface does not exist.
    let (off, _) = serve_admin(&sys, None, None).await;
    for path in ["admin/api/dead-letters", "admin", "admin/login"] {
        let r = http
            .get(off.join(path).unwrap())
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn viewer_reads_everything_but_cannot_replay_purge_or_pause() {
    let w = AdminWorld::new().await;
    let (status, page) = w
        .call(
            Method::GET,
            "admin/api/dead-letters",
            Some(VIEWER_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["letters"].as_array().unwrap().len(), 6);
    for (path, body) in [
        (
            "admin/api/dead-letters/replay",
            json!({ "filter": {}, "all": true }),
        ),
        (
            "admin/api/dead-letters/purge",
            json!({ "filter": {}, "all": true }),
        ),
        ("admin/api/dead-letters/replay", json!({ "ids": [1] })),
    ] {
        let (status, body) = w
            .call(Method::POST, path, Some(VIEWER_TOKEN), Some(body))
            .await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("viewer"));
    }
    let (status, _) = w
        .call(
            Method::POST,
            "admin/api/apps/default/pause",
            Some(VIEWER_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        w.count("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL")
            .await,
        6
    );
    assert_eq!(
        w.count("SELECT count(*) FROM admin_audit WHERE dry_run = false")
            .await,
        0
    );
    assert_eq!(w.states(&w.refused).await, vec!["dead"; 4]);
}

#[tokio::test]
async fn replay_by_filter_touches_exactly_the_filtered_letters_after_a_dry_run_that_changes_nothing()
 {
    let w = AdminWorld::new().await;
    let filter = json!({ "errcode": 43101 });

    // Groups and the filtered list.
    let (status, groups) = w
        .call(
            Method::GET,
            "admin/api/dead-letters/groups",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{groups}");
    assert_eq!(groups["total"], 6);
    let by_errcode: Vec<(Value, Value)> = groups["by_errcode"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["key"].clone(), g["count"].clone()))
        .collect();
    assert_eq!(
        by_errcode,
        vec![(json!("43101"), json!(4)), (json!("40037"), json!(2))]
    );
    let (_, page) = w
        .call(
            Method::GET,
            "admin/api/dead-letters?errcode=43101&limit=3",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(page["letters"].as_array().unwrap().len(), 3);
    let after = page["next_after"].as_i64().expect("a second page");
    let (_, rest) = w
        .call(
            Method::GET,
            &format!("admin/api/dead-letters?errcode=43101&limit=3&after={after}"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(rest["letters"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next_after"], Value::Null);
    let (_, text) = w
        .call(
            Method::GET,
            "admin/api/dead-letters?text=invalid%20template",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(
        text["letters"].as_array().unwrap().len(),
        2,
        "text search in WeChat's message"
    );

    // Dry run: the count, and nothing changes.
    let queued_before = w
        .count("SELECT count(*) FROM deliveries WHERE state = 'dead'")
        .await;
    let (status, dry) = w
        .call(
            Method::POST,
            "admin/api/dead-letters/replay",
            Some(ADMIN_TOKEN),
            Some(json!({ "filter": filter, "dry_run": true })),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(
        (
            dry["matched"].as_i64(),
            dry["affected"].as_i64(),
            dry["dry_run"].as_bool()
        ),
        (Some(4), Some(4), Some(true))
    );
    let max_id = dry["max_id"].as_i64().expect("the snapshot to act on");
    assert_eq!(
        w.count("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL")
            .await,
        6
    );
    assert_eq!(
        w.count("SELECT count(*) FROM deliveries WHERE state = 'dead'")
            .await,
        queued_before
    );
    assert_eq!(w.states(&w.refused).await, vec!["dead"; 4]);

    // The real thing, pinned to the dry run's snapshot.
    let (status, done) = w
        .call(
            Method::POST,
            "admin/api/dead-letters/replay",
            Some(ADMIN_TOKEN),
            Some(json!({ "filter": { "errcode": 43101, "max_id": max_id } })),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["affected"], 4);
    assert_eq!(done["failed"], json!([]));
    w.wait_state(&w.refused, "sent").await;
    assert_eq!(
        w.states(&w.unknown_template).await,
        vec!["dead"; 2],
        "letters outside the filter stay dead"
    );
    assert_eq!(
        w.count(
            "SELECT count(*) FROM dead_letters WHERE replayed_at IS NOT NULL AND errcode = 43101"
        )
        .await,
        4
    );
    assert_eq!(
        w.count("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL AND errcode = 40037")
            .await,
        2
    );
    let (_, open) = w
        .call(
            Method::GET,
            "admin/api/dead-letters?errcode=43101",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(
        open["letters"],
        json!([]),
        "replayed letters leave the (open) list"
    );

    // The audit trail: the dry run and the replay, with who, what, filter and how many.
    let (_, audit) = w
        .call(Method::GET, "admin/api/audit", Some(VIEWER_TOKEN), None)
        .await;
    let rows = audit.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{audit}");
    let (real, dry) = (&rows[0], &rows[1]);
    assert_eq!(
        (
            real["who"].as_str(),
            real["action"].as_str(),
            real["dry_run"].as_bool(),
            real["affected"].as_i64()
        ),
        (Some("api:admin"), Some("replay"), Some(false), Some(4))
    );
    assert_eq!(real["filter"]["errcode"], 43101);
    assert_eq!(real["filter"]["max_id"], max_id);
    assert_eq!(
        (dry["dry_run"].as_bool(), dry["affected"].as_i64()),
        (Some(true), Some(4))
    );
}

#[tokio::test]
async fn no_action_reaches_every_letter_by_accident_and_a_dry_run_lists_what_it_would_touch() {
    let w = AdminWorld::new().await;
    let open = "SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL";
    // An empty filter, an unknown filter key, an unknown top-level key, an unknown query key
    // and an out-of-range page size: each a 400 that names the problem, and nothing changes.
    for (path, body, names) in [
        ("purge", json!({ "filter": {} }), "\"all\": true"),
        ("replay", json!({ "filter": {} }), "\"all\": true"),
        ("purge", json!({ "filter": { "errode": 1 } }), "errode"),
        ("replay", json!({ "filter": { "errode": 1 } }), "errode"),
        (
            "purge",
            json!({ "filter": { "errcode": 43101 }, "dryrun": true }),
            "dryrun",
        ),
        (
            "purge",
            json!({ "filter": { "include_replayed": true } }),
            "all",
        ),
        ("purge", json!({ "ids": [1], "all": true }), "ids"),
    ] {
        let (status, answer) = w
            .call(
                Method::POST,
                &format!("admin/api/dead-letters/{path}"),
                Some(ADMIN_TOKEN),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(names), "{body}: {error}");
    }
    for query in ["errode=1", "errcode=1&limitt=2", "limit=0", "limit=1001"] {
        let (status, answer) = w
            .call(
                Method::GET,
                &format!("admin/api/dead-letters?{query}"),
                Some(ADMIN_TOKEN),
                None,
            )
            .await;
        assert_eq!(status, 400, "{query}: {answer}");
    }
    let (status, answer) = w
        .call(
            Method::GET,
            "admin/api/dead-letters/groups?reasn=x",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("reasn"));
    assert_eq!(w.count(open).await, 6);
    assert_eq!(w.count("SELECT count(*) FROM admin_audit").await, 0);

    // A dry run of "all": the count and the first ids, newest first; nothing changes.
    let (status, dry) = w
        .call(
            Method::POST,
            "admin/api/dead-letters/purge",
            Some(ADMIN_TOKEN),
            Some(json!({ "filter": {}, "all": true, "dry_run": true })),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    let newest: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM dead_letters ORDER BY id DESC LIMIT 20")
            .fetch_all(&w.sys.db.pool)
            .await
            .unwrap();
    assert_eq!(
        (dry["matched"].as_i64(), dry["affected"].as_i64()),
        (Some(6), Some(6))
    );
    assert_eq!(dry["first_ids"], json!(newest));
    assert_eq!(w.count(open).await, 6);
    let (_, replay_dry) = w
        .call(
            Method::POST,
            "admin/api/dead-letters/replay",
            Some(ADMIN_TOKEN),
            Some(json!({ "filter": { "errcode": 43101 }, "dry_run": true })),
        )
        .await;
    assert_eq!(replay_dry["first_ids"].as_array().unwrap().len(), 4);
    assert_eq!(w.count(open).await, 6);

    // Spelled out, "all" acts.
    let (status, done) = w
        .call(
            Method::POST,
            "admin/api/dead-letters/purge",
            Some(ADMIN_TOKEN),
            Some(json!({ "filter": {}, "all": true })),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["affected"], 6);
    assert_eq!(w.count("SELECT count(*) FROM dead_letters").await, 0);
}

#[tokio::test]
async fn one_letter_in_full_lookup_by_job_and_recipient_and_purge_by_ids() {
    let w = AdminWorld::new().await;
    let job = &w.unknown_template[0];
    let id: i64 = sqlx::query_scalar("SELECT id FROM dead_letters WHERE job_id = $1")
        .bind(job.id.as_str())
        .fetch_one(&w.sys.db.pool)
        .await
        .unwrap();
    let (status, detail) = w
        .call(
            Method::GET,
            &format!("admin/api/dead-letters/{id}"),
            Some(VIEWER_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["dead_letter"]["job"]["id"], job.id.as_str());
    assert_eq!(detail["delivery"]["state"], "dead");
    let attempt = &detail["attempts"][0];
    assert_eq!(attempt["errcode"], 40037);
    assert!(
        attempt["rid"].as_str().is_some_and(|r| !r.is_empty()),
        "{attempt}"
    );
    let (status, _) = w
        .call(
            Method::GET,
            "admin/api/dead-letters/999999",
            Some(VIEWER_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 404);

    let (_, found) = w
        .call(
            Method::GET,
            &format!("admin/api/deliveries?job_id={}", job.id.as_str()),
            Some(VIEWER_TOKEN),
            None,
        )
        .await;
    assert_eq!(found["deliveries"][0]["state"], "dead");
    assert_eq!(found["dead_letter_ids"], json!([id]));
    let (_, by_recipient) = w
        .call(
            Method::GET,
            &format!(
                "admin/api/deliveries?recipient={}",
                wxnotify_sandbox::mock_wechat::mp_openid(5)
            ),
            Some(VIEWER_TOKEN),
            None,
        )
        .await;
    assert_eq!(by_recipient["deliveries"][0]["job_id"], job.id.as_str());

    let (_, dry) = w
        .call(
            Method::POST,
            "admin/api/dead-letters/purge",
            Some(ADMIN_TOKEN),
            Some(json!({ "ids": [id, 999999], "dry_run": true })),
        )
        .await;
    assert_eq!(
        (dry["matched"].as_i64(), dry["affected"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(w.count("SELECT count(*) FROM dead_letters").await, 6);
    let (_, done) = w
        .call(
            Method::POST,
            "admin/api/dead-letters/purge",
            Some(ADMIN_TOKEN),
            Some(json!({ "ids": [id] })),
        )
        .await;
    assert_eq!(done["affected"], 1);
    assert_eq!(w.count("SELECT count(*) FROM dead_letters").await, 5);
    let (status, bad) = w
        .call(
            Method::POST,
            "admin/api/dead-letters/purge",
            Some(ADMIN_TOKEN),
            Some(json!({ "ids": [1], "filter": {} })),
        )
        .await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(
        w.count("SELECT count(*) FROM admin_audit WHERE action = 'purge'")
            .await,
        2
    );

    // Retention: letters older than the setting go, and the audit trail says so.
    sqlx::query(
        "UPDATE dead_letters SET created_at = now() - interval '31 days' WHERE errcode = 40037",
    )
    .execute(&w.sys.db.pool)
    .await
    .unwrap();
    let deleted = wxnotify_api::admin::retention::pass(&w.sys.db.pool, 30)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(w.count("SELECT count(*) FROM dead_letters").await, 4);
    assert_eq!(w.count("SELECT affected FROM admin_audit WHERE action = 'retention' AND who = 'system:retention'").await, 1);
}

#[tokio::test]
async fn apps_pause_and_resume_by_hand_workers_and_queue_depths() {
    let w = AdminWorld::new().await;
    let (_, apps) = w
        .call(Method::GET, "admin/api/apps", Some(VIEWER_TOKEN), None)
        .await;
    assert_eq!(apps[0]["name"], "default");
    assert_eq!(apps[0]["paused_until"], Value::Null);
    assert_eq!(apps[0]["dead_today"], 6);
    let (status, paused) = w
        .call(
            Method::POST,
            "admin/api/apps/default/pause?minutes=30",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{paused}");
    assert!(paused[0]["paused_until"].is_string());
    assert!(
        paused[0]["pause_reason"]
            .as_str()
            .unwrap()
            .contains("api:admin")
    );
    let (_, resumed) = w
        .call(
            Method::POST,
            "admin/api/apps/default/resume",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(resumed[0]["paused_until"], Value::Null);
    let (status, _) = w
        .call(
            Method::POST,
            "admin/api/apps/nope/pause",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        w.count("SELECT count(*) FROM admin_audit WHERE action IN ('pause', 'resume')")
            .await,
        2
    );

    let (_, workers) = w
        .call(Method::GET, "admin/api/workers", Some(VIEWER_TOKEN), None)
        .await;
    assert_eq!(workers.as_array().unwrap().len(), 1, "{workers}");
    let (status, queues) = w
        .call(Method::GET, "admin/api/queues", Some(VIEWER_TOKEN), None)
        .await;
    assert_eq!(status, 200, "{queues}");
    let jobs = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"].as_str().unwrap().ends_with(".jobs"))
        .expect("the jobs lane");
    assert_eq!(jobs["messages"], 0);
    assert_eq!(jobs["consumers"], 1, "the running worker consumes the lane");
}

/// An admin API call on `base`: (status, JSON).
async fn call_on(
    base: &url::Url,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, base.join(path).unwrap())
        .bearer_auth(token);
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

#[tokio::test]
async fn templates_are_listed_with_their_source_and_registered_or_removed_by_an_admin_audited() {
    use wxnotify_sandbox::mock_wechat::MockTemplate;
    let sys = System::seeded(1).await;
    // WeChat lists one historical template (category templates are not listed).
    sys.mock.add_template(MockTemplate::new(
        "TPL_OLD",
        "旧模板",
        &["keyword1", "keyword2"],
    ));
    let client = wxnotify_core::wechat::WechatClient::new(
        sys.mock.base_url(),
        &wxnotify_core::wechat::client::ClientOptions::default(),
    )
    .unwrap();
    let tokens = wxnotify_core::wechat::TokenStore::new(
        sys.db.pool.clone(),
        client.clone(),
        &sys.settings.apps,
    );
    wxnotify_services::templates::sync_app(
        &sys.db.pool,
        &tokens,
        &client,
        &wxnotify_core::domain::AppName::default_app(),
        wxnotify_services::templates::SyncTrigger::Command,
    )
    .await
    .unwrap();
    let (base, _) = serve_admin(&sys, Some(ADMIN_TOKEN), Some(VIEWER_TOKEN)).await;
    let call = |method, path: &'static str, token, body| {
        let base = base.clone();
        async move { call_on(&base, method, path, token, body).await }
    };

    let (status, listing) = call(Method::GET, "admin/api/templates", VIEWER_TOKEN, None).await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing[0]["app"], "default");
    assert_eq!(listing[0]["templates"][0]["template_id"], "TPL_OLD");
    assert_eq!(listing[0]["templates"][0]["source"], "api");

    let shipped = json!({
        "app": "default",
        "template_id": "TPL_ORDER_SHIPPED",
        "title": "订单发货提醒",
        "content": "商品：{{thing1.DATA}} 时间：{{time2.DATA}}"
    });
    let (status, _) = call(
        Method::POST,
        "admin/api/templates",
        VIEWER_TOKEN,
        Some(shipped.clone()),
    )
    .await;
    assert_eq!(status, 403, "a viewer registers nothing");
    let (status, body) = call(
        Method::POST,
        "admin/api/templates",
        ADMIN_TOKEN,
        Some(json!({"template_id": "T2", "content": "no placeholder"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("placeholder"));
    let (status, body) = call(
        Method::POST,
        "admin/api/templates",
        ADMIN_TOKEN,
        Some(json!({"app": "nope", "template_id": "T2", "content": "{{thing1.DATA}}"})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = call(
        Method::POST,
        "admin/api/templates",
        ADMIN_TOKEN,
        Some(json!({"template_id": "TPL_OLD", "content": "{{keyword1.DATA}}"})),
    )
    .await;
    assert_eq!(status, 409, "WeChat's listing wins: {body}");
    let (status, added) = call(
        Method::POST,
        "admin/api/templates",
        ADMIN_TOKEN,
        Some(shipped),
    )
    .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["action"], "added");
    assert_eq!(added["template"]["source"], "manual");
    assert_eq!(
        added["template"]["placeholders"],
        json!(["thing1", "time2"])
    );

    let (_, listing) = call(
        Method::GET,
        "admin/api/templates?app=default",
        VIEWER_TOKEN,
        None,
    )
    .await;
    let sources: Vec<(&str, &str)> = listing[0]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["template_id"].as_str().unwrap(),
                t["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sources,
        [("TPL_OLD", "api"), ("TPL_ORDER_SHIPPED", "manual")]
    );
    let (status, _) = call(
        Method::GET,
        "admin/api/templates?app=nope",
        VIEWER_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 404);

    let (status, _) = call(
        Method::DELETE,
        "admin/api/templates/default/TPL_ORDER_SHIPPED",
        VIEWER_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        Method::DELETE,
        "admin/api/templates/default/TPL_OLD",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 409, "a listed template is not removed by hand");
    let (status, removed) = call(
        Method::DELETE,
        "admin/api/templates/default/TPL_ORDER_SHIPPED",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["template_id"], "TPL_ORDER_SHIPPED");
    let (status, _) = call(
        Method::DELETE,
        "admin/api/templates/default/TPL_ORDER_SHIPPED",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 404);

    let audit: Vec<(String, String, Value)> = sqlx::query_as(
        "SELECT who, action, detail FROM admin_audit WHERE action LIKE 'template_%' ORDER BY id",
    )
    .fetch_all(&sys.db.pool)
    .await
    .unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!(
        (audit[0].0.as_str(), audit[0].1.as_str()),
        ("api:admin", "template_add")
    );
    assert_eq!(audit[0].2["template_id"], "TPL_ORDER_SHIPPED");
    assert_eq!(audit[1].1, "template_remove");
}

#[tokio::test]
async fn a_suspended_app_shows_wechats_errcode_and_the_fix_and_resume_lifts_it_at_once() {
    let w = AdminWorld::new().await;
    let pool = &w.sys.db.pool;
    let newly = wxnotify_services::app_pause::suspend(
        pool,
        "default",
        40164,
        "invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist rid: 1-2-3",
        Some("cgi-bin/stable_token"),
    )
    .await
    .unwrap();
    assert!(newly);
    let (_, apps) = w
        .call(Method::GET, "admin/api/apps", Some(VIEWER_TOKEN), None)
        .await;
    assert_eq!(apps[0]["paused"], true, "{apps}");
    assert_eq!(apps[0]["pause_cause"], "account");
    assert_eq!(
        apps[0]["paused_until"],
        Value::Null,
        "a suspension has no end time"
    );
    assert_eq!(apps[0]["suspension"]["errcode"], 40164);
    let reason = apps[0]["pause_reason"].as_str().unwrap();
    assert!(
        reason.contains("40164") && reason.contains("IP whitelist"),
        "{reason}"
    );
    let (status, resumed) = w
        .call(
            Method::POST,
            "admin/api/apps/default/resume",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed[0]["paused"], false, "{resumed}");
    assert_eq!(resumed[0]["suspension"], Value::Null);
}
