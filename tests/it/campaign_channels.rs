//! Campaigns over both channels: a campaign with a subscribe message (`mp_subscribe`) reaches OA
//! followers by the OA's template message and Mini Program users who do not follow but hold a
//! grant by the subscribe message, spending their grants like any job; preview and status count
//! the audience by channel.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;
use wxnotify_sandbox::mock_wechat;
use wxnotify_services::campaigns::pacing::QuotaSettings;
use wxnotify_services::campaigns::store::{self, AudienceSource, NewCampaign};
use wxnotify_services::campaigns::{Action, CampaignState, Channels, preview, progress};
use wxnotify_worker::WorkerConfig;

use crate::campaigns::{TEMPLATE, dispatcher, fast, spawn, state, until};
use crate::second_channel::{
    ONE_TIME, accept_in_popup, fake_counts, grant_in_ledger, grant_row, subscribe, unfollow,
};
use crate::system::System;

const TOKEN: &str = "campaign-channels-admin-token-0123456789";

/// Calls the admin campaign API with the admin token; answers the status and the JSON body.
async fn call(sys: &System, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut settings = sys.settings.clone();
    settings.admin_token = Some(SecretString::from(TOKEN));
    let app = wxnotify_api::admin::campaigns::router(sys.db.pool.clone(), &settings).unwrap();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"));
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let r = app.oneshot(req).await.unwrap();
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn channels(v: &Value) -> Channels {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("by_channel in {v}: {e}"))
}

#[tokio::test]
async fn a_campaign_with_a_subscribe_message_reaches_followers_and_grant_holders_and_counts_each_channel()
 {
    let sys = System::seeded(10).await;
    // Persons 0-4 follow (4 also holds a grant: the OA goes first and the grant stays); 5, 6 and 8
    // unfollowed and hold a grant, and so does 9, who has no unionid; 7 unfollowed and holds none.
    for person in [5, 6, 7, 8] {
        unfollow(&sys, person).await;
    }
    for person in [4, 5, 6, 8, 9] {
        accept_in_popup(&sys, person, ONE_TIME, 1).await;
        grant_in_ledger(&sys, person, ONE_TIME, 1, false).await;
    }
    let form = serde_json::to_value(subscribe(ONE_TIME)).unwrap();
    let recipients: Vec<Value> = (0..10)
        .map(|p| json!({"to": {"mp_openid": mock_wechat::mp_openid(p)}}))
        .collect();
    let (code, report) = call(
        &sys,
        "POST",
        "/admin/api/campaigns",
        Some(json!({
            "template_id": TEMPLATE,
            "data": {"thing1": "Sale", "time2": "today"},
            "mp_subscribe": form,
            "audience": {"recipients": recipients},
            "rate": 100
        })),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{report}");
    let expected = Channels {
        followers: 5,
        grant_holders: 4,
        unreachable: 1,
    };
    assert_eq!(channels(&report["by_channel"]), expected, "{report}");
    assert_eq!(report["unreachable"]["not_following"], 1, "{report}");
    let id: Uuid = report["id"].as_str().unwrap().parse().unwrap();
    let (code, pre) = call(
        &sys,
        "GET",
        &format!("/admin/api/campaigns/{id}/preview"),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{pre}");
    assert_eq!(channels(&pre["by_channel"]), expected, "{pre}");
    assert_eq!(pre["reachable"], 9);
    assert!(pre["mp_subscribe_template"].is_object(), "{pre}");

    // The same form over every follower: the followers, and the grant holders who do not follow.
    let mut whole = NewCampaign {
        mp_subscribe: Some(subscribe(ONE_TIME)),
        ..crate::campaigns::new_campaign(100)
    };
    whole.name = Some("everyone".into());
    let all = store::create(&sys.db.pool, &whole, 1000, AudienceSource::Followers)
        .await
        .unwrap();
    let following: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM oa_followers WHERE app = 'default' AND subscribed",
    )
    .fetch_one(&sys.db.pool)
    .await
    .unwrap();
    assert_eq!(
        preview(&sys.db.pool, all.id).await.unwrap().by_channel,
        Channels {
            followers: following as u64,
            grant_holders: 4,
            unreachable: 0,
        }
    );
    store::apply(&sys.db.pool, all.id, Action::Cancel, "test")
        .await
        .unwrap();

    // Person 8's grant is spent elsewhere after the snapshot: the send finds none.
    sqlx::query("UPDATE mp_grants SET used = granted WHERE mp_openid = $1")
        .bind(mock_wechat::mp_openid(8))
        .execute(&sys.db.pool)
        .await
        .unwrap();
    let worker = sys.start_worker(WorkerConfig::default());
    store::apply(&sys.db.pool, id, Action::Start, "test")
        .await
        .unwrap();
    let d = spawn(dispatcher(&sys, QuotaSettings::default(), fast()).await);
    until(
        Duration::from_secs(30),
        "the campaign completes",
        || async { state(&sys, id).await == CampaignState::Completed },
    )
    .await;
    d.stop().await;
    worker.stop().await;

    let oa: BTreeSet<String> = sys.mock.sends().into_iter().map(|s| s.touser).collect();
    let followers: BTreeSet<String> = (0..5).map(mock_wechat::oa_openid).collect();
    assert_eq!(
        oa, followers,
        "the followers, and only they, got the OA message"
    );
    assert_eq!(
        fake_counts(&sys).await,
        BTreeMap::from([(5, 1), (6, 1), (9, 1)]),
        "each grant holder with a grant left got one subscribe message"
    );
    for (person, used) in [(4, 0), (5, 1), (6, 1), (9, 1)] {
        assert_eq!(
            grant_row(&sys, person, ONE_TIME).await.1,
            used,
            "grants used by person {person}"
        );
    }
    let s = progress::status(&sys.db.pool, id).await.unwrap();
    assert_eq!(s.by_channel, expected);
    assert_eq!(
        s.sent_by_channel,
        BTreeMap::from([("mp_subscribe".into(), 3), ("oa_template".into(), 5)])
    );
    assert_eq!(s.sent, 8);
    assert_eq!(s.dead, BTreeMap::from([("no_channel".into(), 1)]));
    assert_eq!(
        s.finished(),
        s.reachable,
        "every recipient in exactly one state"
    );
    let (code, api) = call(&sys, "GET", &format!("/admin/api/campaigns/{id}"), None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(channels(&api["by_channel"]), expected, "{api}");
    assert_eq!(api["sent_by_channel"]["mp_subscribe"], 3, "{api}");
}

#[tokio::test]
async fn the_cli_creates_a_campaign_with_a_subscribe_message_and_previews_it_by_channel() {
    use crate::serve_support::wxnotify;
    let sys = System::seeded(4).await;
    // Persons 0 and 1 follow; 2 and 3 unfollowed, and 2 holds a grant.
    for person in [2, 3] {
        unfollow(&sys, person).await;
    }
    grant_in_ledger(&sys, 2, ONE_TIME, 1, false).await;
    let data = serde_json::to_string(&subscribe(ONE_TIME).data).unwrap();
    let mut args = vec![
        "campaign",
        "create",
        "--template-id",
        TEMPLATE,
        "--data",
        r#"{"thing1":"Sale","time2":"today"}"#,
        "--followers",
        "--mp-subscribe-template-id",
        ONE_TIME,
        "--mp-subscribe-data",
        &data,
        "--mp-subscribe-page",
        "pages/sale",
    ];
    let out = wxnotify(&sys.db, &[&args[..], &["--json"]].concat(), &[]).await;
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected = Channels {
        followers: 2,
        grant_holders: 1,
        unreachable: 0,
    };
    assert_eq!(channels(&report["by_channel"]), expected, "{report}");
    let id = report["id"].as_str().unwrap().to_owned();
    let stored = store::get(&sys.db.pool, id.parse().unwrap()).await.unwrap();
    assert_eq!(
        stored.mp_subscribe().unwrap().page.as_deref(),
        Some("pages/sale")
    );
    let out = wxnotify(&sys.db, &["campaign", "preview", &id], &[]).await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "by channel: 2 followers (OA template), 1 grant holders (subscribe), 0 unreachable"
        ),
        "{text}"
    );
    // A subscribe message that is not one is refused, naming the flag, with exit code 2 (bad
    // input).
    args[10] = "[1]";
    let out = wxnotify(&sys.db, &args, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--mp-subscribe"),
        "{out:?}"
    );
}
