//! The grant ledger of Mini Program subscribe messages and its sources: WeChat's pushes on
//! `/wechat/mp-callback` (pushed by the fake WeChat's popup), the Mini Program's report on
//! `POST /v1/miniprogram/subscriptions` (with a login's session or an API key), and
//! `GET /admin/api/subscriptions` of a real `wxnotify serve`. One acceptance counts once,
//! whatever reports it and however often WeChat pushes it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use url::Url;
use wxnotify_core::wechat::crypto::signature;
use wxnotify_sandbox::mock_wechat::{
    self, MockConfig, MpCallback, PopupResults, PushFormat, PushMode,
};
use wxnotify_services::subscriptions::grants_of;

use crate::serve_support::ServeProcess;
use crate::users_support::{AES_KEY, World};

/// The Token of the test Mini Program's message push URL (not the OA's).
const MP_TOKEN: &str = "MpPushToken42";
const ONE_TIME: &str = "MP_ORDER_SHIPPED";
const LONG_TERM: &str = "MP_SERVICE_NOTICE";

async fn world() -> World {
    World::with_vars(
        MockConfig {
            followers: 20,
            ..MockConfig::default()
        },
        &[
            ("WXNOTIFY_MP_CALLBACK_TOKEN", MP_TOKEN),
            ("WXNOTIFY_MP_ENCODING_AES_KEY", AES_KEY),
        ],
    )
    .await
}

fn mp_callback(base: &Url, mode: PushMode, format: PushFormat) -> MpCallback {
    MpCallback {
        url: base.join("wechat/mp-callback").unwrap(),
        mode,
        format,
    }
}

fn plain() -> PushMode {
    PushMode::Plain {
        token: MP_TOKEN.into(),
    }
}

fn safe() -> PushMode {
    PushMode::Safe {
        token: MP_TOKEN.into(),
        encoding_aes_key: AES_KEY.into(),
    }
}

fn popup(template: &str, status: &str) -> PopupResults {
    BTreeMap::from([(template.to_owned(), status.to_owned())])
}

/// (granted, state) of `person`'s row for `template` in the ledger; `None` without one.
async fn ledger(world: &World, person: u64, template: &str) -> Option<(i64, String)> {
    grants_of(&world.db.pool, &world.app, &mock_wechat::mp_openid(person))
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.template_id == template)
        .map(|g| (g.granted, g.state))
}

/// POSTs a report with `bearer`; (status, JSON or the text as a string).
async fn report(base: &Url, bearer: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(base.join("v1/miniprogram/subscriptions").unwrap())
        .json(body);
    if let Some(bearer) = bearer {
        req = req.bearer_auth(bearer);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Logs `person` in through `POST /v1/miniprogram/login`; their session token.
async fn session(world: &World, base: &Url, person: u64) -> String {
    let code = world.mock.issue_login_code(person);
    let r = reqwest::Client::new()
        .post(base.join("v1/miniprogram/login").unwrap())
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["openid"], mock_wechat::mp_openid(person));
    assert!(body["session_expires_at"].is_string(), "{body}");
    body["session"].as_str().unwrap().to_owned()
}

/// The report the Mini Program makes after `wx.requestSubscribeMessage`.
fn results(template: &str, status: &str) -> Value {
    json!({ "results": { template: status, "errMsg": "requestSubscribeMessage:ok" } })
}

#[tokio::test]
async fn one_acceptance_counts_once_from_the_event_the_report_both_in_either_order_and_retries() {
    let world = world().await;
    let (base, _state) = world.serve().await;
    world
        .mock
        .set_mp_callback(Some(mp_callback(&base, plain(), PushFormat::Xml)));
    let key = wxnotify_api::producer::api_keys::create(&world.db.pool, &world.app, None)
        .await
        .unwrap()
        .key;
    let report_for = |person: u64| {
        let mut body = results(ONE_TIME, "accept");
        body["mp_openid"] = json!(mock_wechat::mp_openid(person));
        body
    };

    // Event only: the fake's popup pushes it.
    let pushed = world
        .mock
        .subscribe_popup(1, &popup(ONE_TIME, "accept"))
        .await
        .unwrap();
    assert!(pushed.answered && pushed.attempts == 1, "{pushed:?}");
    // Report only: the person tapped, WeChat's push never came.
    world
        .mock
        .subscribe_popup_event(2, &popup(ONE_TIME, "accept"))
        .unwrap();
    let (status, body) = report(&base, Some(&key), &report_for(2)).await;
    assert_eq!(
        (status, &body["recorded"][ONE_TIME]),
        (200, &json!("counted"))
    );
    // The event, then the report.
    world
        .mock
        .subscribe_popup(3, &popup(ONE_TIME, "accept"))
        .await
        .unwrap();
    let (_, body) = report(&base, Some(&key), &report_for(3)).await;
    assert_eq!(body["recorded"][ONE_TIME], "paired");
    // The report, then the event.
    let event = world
        .mock
        .subscribe_popup_event(4, &popup(ONE_TIME, "accept"))
        .unwrap();
    let (_, body) = report(&base, Some(&key), &report_for(4)).await;
    assert_eq!(body["recorded"][ONE_TIME], "counted");
    let answer = world.mock.deliver_mp(&event).await.unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    // WeChat pushing the same event three times (each delivery signed afresh).
    let event = world
        .mock
        .subscribe_popup_event(5, &popup(ONE_TIME, "accept"))
        .unwrap();
    for _ in 0..3 {
        let answer = world.mock.deliver_mp(&event).await.unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    }

    for person in 1..=5 {
        assert_eq!(
            ledger(&world, person, ONE_TIME).await,
            Some((1, "accept".into())),
            "person {person}"
        );
        // The books match the fake's: it holds exactly one grant for each of them.
        assert_eq!(
            world.mock.grants(Some(person))[0].remaining,
            1,
            "person {person}"
        );
    }
    assert_eq!(
        world
            .count("SELECT count(*) FROM mp_acceptances WHERE event_at IS NOT NULL AND reported_at IS NOT NULL")
            .await,
        2,
        "persons 3 and 4: one acceptance seen from both sides"
    );

    // A second tap (a later second: its own CreateTime) counts again, seen from both sides.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    world
        .mock
        .subscribe_popup(3, &popup(ONE_TIME, "accept"))
        .await
        .unwrap();
    let (_, body) = report(&base, Some(&key), &report_for(3)).await;
    assert_eq!(body["recorded"][ONE_TIME], "paired");
    assert_eq!(
        ledger(&world, 3, ONE_TIME).await,
        Some((2, "accept".into()))
    );
    assert_eq!(world.mock.grants(Some(3))[0].remaining, 2);
}

#[tokio::test]
async fn rejections_set_the_state_and_a_later_accept_counts_again() {
    let world = world().await;
    let (base, _state) = world.serve().await;
    world
        .mock
        .set_mp_callback(Some(mp_callback(&base, plain(), PushFormat::Json)));
    world
        .mock
        .subscribe_popup(6, &popup(ONE_TIME, "accept"))
        .await
        .unwrap();
    assert_eq!(
        ledger(&world, 6, ONE_TIME).await,
        Some((1, "accept".into()))
    );

    // Cancelled later in the settings: WeChat's change event.
    let pushed = world.mock.cancel_subscription(6, ONE_TIME).await.unwrap();
    assert!(pushed.answered, "{pushed:?}");
    assert_eq!(
        ledger(&world, 6, ONE_TIME).await,
        Some((1, "reject".into()))
    );
    let again = world.mock.cancel_subscription_event(6, ONE_TIME).unwrap();
    world.mock.deliver_mp(&again).await.unwrap();
    assert_eq!(
        ledger(&world, 6, ONE_TIME).await,
        Some((1, "reject".into()))
    );

    // Accepting again in a later popup: back to accept, one more grant.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    world
        .mock
        .subscribe_popup(6, &popup(ONE_TIME, "accept"))
        .await
        .unwrap();
    assert_eq!(
        ledger(&world, 6, ONE_TIME).await,
        Some((2, "accept".into()))
    );

    // A reject and a ban in the popup, several templates in one push (JSON `List` array).
    let pushed = world
        .mock
        .subscribe_popup(
            7,
            &BTreeMap::from([
                (ONE_TIME.to_owned(), "reject".to_owned()),
                (LONG_TERM.to_owned(), "ban".to_owned()),
            ]),
        )
        .await
        .unwrap();
    assert!(pushed.answered, "{pushed:?}");
    assert_eq!(
        ledger(&world, 7, ONE_TIME).await,
        Some((0, "reject".into()))
    );
    assert_eq!(ledger(&world, 7, LONG_TERM).await, Some((0, "ban".into())));
}

/// POSTs `body` to the MP push URL signed with `token` for `(ts, nonce)`.
async fn post_signed(base: &Url, token: &str, ts: &str, nonce: &str, body: &str) -> u16 {
    let mut url = base.join("wechat/mp-callback").unwrap();
    url.query_pairs_mut()
        .append_pair("signature", &signature(token, ts, nonce))
        .append_pair("timestamp", ts)
        .append_pair("nonce", nonce);
    reqwest::Client::new()
        .post(url)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn bad_signatures_replays_and_plaintext_in_safe_mode_are_refused_on_mp_callback() {
    let world = world().await;
    // Safe mode enforced: the default edge options (no plaintext while a key is configured).
    let (base, _state) = world.serve_with(wxnotify_api::EdgeOptions::default()).await;
    let event = world
        .mock
        .subscribe_popup_event(8, &popup(ONE_TIME, "accept"))
        .unwrap();
    let body = event.push.to_xml();
    let now = chrono::Utc::now().timestamp().to_string();

    // Signed with the OA's callback token, not the Mini Program's: refused.
    let oa_token = crate::users_support::CALLBACK_TOKEN;
    assert_eq!(post_signed(&base, oa_token, &now, "n1", &body).await, 403);
    // The right token but plaintext while the Mini Program is in safe mode: refused.
    assert_eq!(post_signed(&base, MP_TOKEN, &now, "n2", &body).await, 403);
    // A timestamp outside the window: refused.
    let old = (chrono::Utc::now().timestamp() - 3600).to_string();
    world
        .mock
        .set_mp_callback(Some(mp_callback(&base, safe(), PushFormat::Xml)));
    assert_eq!(post_signed(&base, MP_TOKEN, &old, "n3", &body).await, 403);
    assert_eq!(ledger(&world, 8, ONE_TIME).await, None, "nothing stored");

    // The same push, encrypted and signed as WeChat does: accepted.
    let answer = world.mock.deliver_mp(&event).await.unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    assert_eq!(
        ledger(&world, 8, ONE_TIME).await,
        Some((1, "accept".into()))
    );

    // A (timestamp, nonce) used before, carrying another body: a replay, refused (on an address
    // that takes plaintext, so only the replay rule can refuse it).
    let (open, _state) = world.serve().await;
    let first = world
        .mock
        .subscribe_popup_event(12, &popup(ONE_TIME, "accept"))
        .unwrap()
        .push
        .to_xml();
    let second = world
        .mock
        .subscribe_popup_event(13, &popup(ONE_TIME, "accept"))
        .unwrap()
        .push
        .to_json();
    assert_eq!(post_signed(&open, MP_TOKEN, &now, "r1", &first).await, 200);
    assert_eq!(post_signed(&open, MP_TOKEN, &now, "r1", &second).await, 403);
    assert_eq!(
        ledger(&world, 12, ONE_TIME).await,
        Some((1, "accept".into()))
    );
    assert_eq!(ledger(&world, 13, ONE_TIME).await, None);
}

#[tokio::test]
async fn a_login_session_reports_for_its_own_person_only() {
    let world = world().await;
    let (base, _state) = world.serve().await;
    let mine = session(&world, &base, 9).await;
    assert!(mine.starts_with("wxs_"), "an opaque session token");
    let stored: i64 = world
        .count(&format!(
            "SELECT count(*) FROM mp_sessions WHERE mp_openid = '{}' AND token_sha256 = sha256(convert_to('{mine}', 'UTF8'))",
            mock_wechat::mp_openid(9)
        ))
        .await;
    assert_eq!(stored, 1, "only the token's hash is stored");

    let (status, body) = report(&base, Some(&mine), &results(ONE_TIME, "accept")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mp_openid"], mock_wechat::mp_openid(9));
    assert_eq!(body["recorded"][ONE_TIME], "counted");
    assert_eq!(
        ledger(&world, 9, ONE_TIME).await,
        Some((1, "accept".into()))
    );

    // Naming someone else with this session: refused, nothing recorded for them.
    let mut theirs = results(ONE_TIME, "accept");
    theirs["mp_openid"] = json!(mock_wechat::mp_openid(10));
    let (status, _) = report(&base, Some(&mine), &theirs).await;
    assert_eq!(status, 403);
    assert_eq!(ledger(&world, 10, ONE_TIME).await, None);
    // No credential, an unknown session, a word WeChat does not use.
    assert_eq!(report(&base, None, &theirs).await.0, 401);
    assert_eq!(
        report(&base, Some("wxs_not-a-session"), &theirs).await.0,
        401
    );
    assert_eq!(
        report(&base, Some(&mine), &results(ONE_TIME, "yes"))
            .await
            .0,
        400
    );
    // An expired session.
    sqlx::query("UPDATE mp_sessions SET expires_at = now() - interval '1 second'")
        .execute(&world.db.pool)
        .await
        .unwrap();
    assert_eq!(
        report(&base, Some(&mine), &results(ONE_TIME, "accept"))
            .await
            .0,
        401
    );
    assert_eq!(
        ledger(&world, 9, ONE_TIME).await,
        Some((1, "accept".into()))
    );
}

#[tokio::test]
async fn the_fakes_popup_reaches_a_real_serve_and_the_grant_shows_in_the_admin_api() {
    let world = world().await;
    let viewer = "viewer-token-for-subscriptions-0123456789";
    let serve = ServeProcess::start(
        &world.db,
        &[
            ("WECHAT_API_BASE", world.mock.base_url().to_string()),
            ("WXNOTIFY_OA_APPID", mock_wechat::MOCK_OA_APPID.into()),
            ("WXNOTIFY_OA_SECRET", mock_wechat::MOCK_OA_SECRET.into()),
            ("WXNOTIFY_MP_APPID", mock_wechat::MOCK_MP_APPID.into()),
            ("WXNOTIFY_MP_SECRET", mock_wechat::MOCK_MP_SECRET.into()),
            ("WXNOTIFY_MP_CALLBACK_TOKEN", MP_TOKEN.into()),
            ("WXNOTIFY_MP_ENCODING_AES_KEY", AES_KEY.into()),
            ("WXNOTIFY_VIEWER_TOKEN", viewer.into()),
        ],
        &[],
        false,
    )
    .await;
    // Driven the way scripts and the demo drive the fake: over its control API.
    let control = |path: &str| world.mock.base_url().join(path).unwrap();
    let http = reqwest::Client::new();
    let set = http
        .post(control("mock/mp/callback"))
        .json(&json!({
            "url": serve.base.join("wechat/mp-callback").unwrap(),
            "token": MP_TOKEN,
            "encoding_aes_key": AES_KEY,
            "format": "json",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 204);
    let pushed: Value = http
        .post(control("mock/mp/popup"))
        .json(&json!({"person": 11, "results": {ONE_TIME: "accept"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&pushed["answered"], &pushed["status"], &pushed["attempts"]),
        (&json!(true), &json!(200), &json!(1)),
        "{pushed}"
    );
    let grants: Value = http
        .get(control("mock/mp/grants?person=11"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(grants[0]["remaining"], 1, "{grants}");

    let mut url = serve.base.join("admin/api/subscriptions").unwrap();
    url.query_pairs_mut()
        .append_pair("app", "default")
        .append_pair("mp_openid", &mock_wechat::mp_openid(11));
    let r = reqwest::Client::new()
        .get(url)
        .bearer_auth(viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let row = &body["templates"][0];
    assert_eq!(row["template_id"], ONE_TIME, "{body}");
    assert_eq!(
        (
            &row["granted"],
            &row["used"],
            &row["remaining"],
            &row["state"]
        ),
        (&json!(1), &json!(0), &json!(1), &json!("accept")),
        "{body}"
    );
    serve.stop().await;
}

fn mock_env(world: &World) -> Vec<(&'static str, String)> {
    vec![
        ("WECHAT_API_BASE", world.mock.base_url().to_string()),
        ("WXNOTIFY_OA_APPID", mock_wechat::MOCK_OA_APPID.into()),
        ("WXNOTIFY_OA_SECRET", mock_wechat::MOCK_OA_SECRET.into()),
        ("WXNOTIFY_MP_APPID", mock_wechat::MOCK_MP_APPID.into()),
        ("WXNOTIFY_MP_SECRET", mock_wechat::MOCK_MP_SECRET.into()),
    ]
}

async fn templates_json(world: &World, args: &[&str]) -> Value {
    let out = crate::serve_support::wxnotify(&world.db, args, &mock_env(world)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {stdout} / {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[tokio::test]
async fn templates_sync_lists_subscribe_templates_with_their_channel_and_neither_sync_tombstones_the_other()
 {
    let world = world().await;
    let listing = templates_json(&world, &["templates", "sync", "--json"]).await;
    let app = &listing[0];
    let mp = app["subscribe_templates"].as_array().unwrap();
    assert_eq!(mp.len(), 2, "{listing}");
    assert_eq!(mp[0]["template_id"], ONE_TIME);
    assert_eq!(mp[0]["channel"], "mp_subscribe");
    assert_eq!(mp[0]["long_term"], false);
    assert_eq!(mp[0]["placeholders"], json!(["thing1", "time2", "phrase3"]));
    assert_eq!(
        mp[0]["enum_values"],
        json!({"phrase3": ["已发货", "已签收"]})
    );
    assert_eq!(mp[1]["template_id"], LONG_TERM);
    assert_eq!(mp[1]["long_term"], true);
    // The OA's templates keep their place, each with its channel (the fake lists no category
    // template, as WeChat: add a historical one).
    world.mock.add_template(mock_wechat::MockTemplate::new(
        "TPL_HISTORICAL",
        "旧模板",
        &["first", "keyword1", "remark"],
    ));
    let listing = templates_json(&world, &["templates", "sync", "--json"]).await;
    let oa = listing[0]["templates"].as_array().unwrap();
    assert_eq!(oa.len(), 1, "{listing}");
    assert_eq!(
        (&oa[0]["template_id"], &oa[0]["channel"]),
        (&json!("TPL_HISTORICAL"), &json!("oa_template"))
    );
    // The OA sync did not tombstone the subscribe templates, nor the other way round.
    assert_eq!(
        listing[0]["subscribe_templates"].as_array().unwrap().len(),
        2
    );
    assert_eq!(listing[0]["subscribe_removed"], json!([]));
    assert_eq!(listing[0]["removed"], json!([]));

    // A subscribe template deleted on the Mini Program's side is kept as removed.
    assert!(world.mock.delete_mp_template(LONG_TERM));
    let listing = templates_json(&world, &["templates", "sync", "--json"]).await;
    assert_eq!(
        listing[0]["subscribe_templates"].as_array().unwrap().len(),
        1
    );
    assert_eq!(listing[0]["subscribe_removed"][0]["template_id"], LONG_TERM);
    assert_eq!(listing[0]["templates"].as_array().unwrap().len(), 1);
    // The text listing has the channel column.
    let out =
        crate::serve_support::wxnotify(&world.db, &["templates", "list"], &mock_env(&world)).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("mp_subscribe  {ONE_TIME}  one-time")),
        "{text}"
    );
    assert!(text.contains("oa_template   TPL_HISTORICAL"), "{text}");
}

#[tokio::test]
async fn an_accept_of_a_synced_long_term_template_is_a_long_term_grant() {
    let world = world().await;
    let (base, _state) = world.serve().await;
    world
        .mock
        .set_mp_callback(Some(mp_callback(&base, plain(), PushFormat::Xml)));
    let synced = wxnotify_services::templates::sync_subscribe_app(
        &world.db.pool,
        &world.client,
        &world.settings.apps[0],
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(synced.len(), 2);
    world
        .mock
        .subscribe_popup(
            14,
            &BTreeMap::from([
                (ONE_TIME.to_owned(), "accept".to_owned()),
                (LONG_TERM.to_owned(), "accept".to_owned()),
            ]),
        )
        .await
        .unwrap();
    let grants = grants_of(&world.db.pool, &world.app, &mock_wechat::mp_openid(14))
        .await
        .unwrap();
    let long: Vec<(&str, bool)> = grants
        .iter()
        .map(|g| (g.template_id.as_str(), g.long_term))
        .collect();
    assert_eq!(long, vec![(ONE_TIME, false), (LONG_TERM, true)]);
}

/// A sent subscribe delivery as the ledger records it (the worker's part, written by hand).
async fn subscribe_delivery(world: &World, job: &str, person: u64, msgid: Option<i64>) {
    sqlx::query(
        "INSERT INTO deliveries (job_id, app, recipient_kind, recipient, template_id, lane, state,
                                 msgid, channel, mp_openid, mp_template_id, sent_at)
         VALUES ($1, 'default', 'mp_openid', $2, $3, 'jobs', 'sent', $4, 'mp_subscribe', $2, $3,
                 now() - interval '2 seconds')",
    )
    .bind(job)
    .bind(mock_wechat::mp_openid(person))
    .bind(ONE_TIME)
    .bind(msgid)
    .execute(&world.db.pool)
    .await
    .unwrap();
}

async fn receipt(world: &World, job: &str) -> Option<String> {
    sqlx::query_scalar("SELECT receipt_status FROM deliveries WHERE job_id = $1")
        .bind(job)
        .fetch_one(&world.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn subscribe_receipts_join_their_delivery_by_msgid_or_by_person_template_and_time() {
    let world = world().await;
    let (base, _state) = world.serve().await;
    world
        .mock
        .set_mp_callback(Some(mp_callback(&base, plain(), PushFormat::Json)));
    let send = |person: u64, msgid: Option<u64>| mock_wechat::AcceptedSubscribe {
        touser: mock_wechat::mp_openid(person),
        template_id: ONE_TIME.into(),
        msgid,
        page: None,
        miniprogram_state: None,
        data: json!({}),
        accepted_at_ms: 0,
    };
    // By msgid.
    subscribe_delivery(&world, "job-by-msgid", 15, Some(2_864_323_726_461_255_999)).await;
    subscribe_delivery(&world, "job-other", 15, Some(2_864_323_726_461_255_998)).await;
    let pushed = world
        .mock
        .push_sent_receipt(&send(15, Some(2_864_323_726_461_255_999)), 0, "success")
        .await
        .unwrap();
    assert!(pushed.answered, "{pushed:?}");
    assert_eq!(
        receipt(&world, "job-by-msgid").await.as_deref(),
        Some("success")
    );
    assert_eq!(receipt(&world, "job-other").await, None);

    // Without a msgid: the oldest subscribe delivery to that person and template without one.
    subscribe_delivery(&world, "job-older", 16, None).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    subscribe_delivery(&world, "job-newer", 16, None).await;
    sqlx::query("UPDATE deliveries SET sent_at = now() WHERE job_id = 'job-newer'")
        .execute(&world.db.pool)
        .await
        .unwrap();
    world
        .mock
        .push_sent_receipt(
            &send(16, None),
            10_002,
            "fail:user refuse to accept the msg",
        )
        .await
        .unwrap();
    assert_eq!(
        receipt(&world, "job-older").await.as_deref(),
        Some("fail:user refuse to accept the msg")
    );
    assert_eq!(receipt(&world, "job-newer").await, None);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    world
        .mock
        .push_sent_receipt(&send(16, None), 0, "success")
        .await
        .unwrap();
    assert_eq!(
        receipt(&world, "job-newer").await.as_deref(),
        Some("success")
    );
}

/// POSTs a subscribe message to the fake with `token`; (errcode, the whole answer).
async fn subscribe_send(world: &World, token: &str, body: &Value) -> (i64, Value) {
    let mut url = world
        .mock
        .base_url()
        .join("cgi-bin/message/subscribe/send")
        .unwrap();
    url.query_pairs_mut().append_pair("access_token", token);
    let answer: Value = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (answer["errcode"].as_i64().unwrap_or(0), answer)
}

#[tokio::test]
async fn the_fake_spends_a_grant_per_subscribe_message_and_answers_like_wechat_without_one() {
    let world = World::with_vars(
        MockConfig {
            followers: 20,
            subscribe_msgid_omit_every: 2,
            ..MockConfig::default()
        },
        &[],
    )
    .await;
    let mp = &world.settings.apps[0];
    let token = world
        .client
        .stable_token(
            mp.mp_appid.as_ref().unwrap(),
            mp.mp_secret.as_ref().unwrap(),
            false,
        )
        .await
        .unwrap()
        .token;
    let token = token.expose();
    let message = |person: u64, template: &str, phrase: &str, page: &str| {
        json!({
            "touser": mock_wechat::mp_openid(person),
            "template_id": template,
            "page": page,
            "data": {"thing1": {"value": "书"}, "time2": {"value": "2026-12-08 10:00"},
                     "phrase3": {"value": phrase}},
        })
    };
    let ok = message(17, ONE_TIME, "已发货", "pages/order/detail?id=7");
    assert_eq!(
        subscribe_send(&world, token, &ok).await.0,
        43101,
        "no grant yet"
    );
    world
        .mock
        .subscribe_popup_event(17, &popup(ONE_TIME, "accept"))
        .unwrap();
    let bad_enum = message(17, ONE_TIME, "已取消", "pages/index/index");
    let (code, answer) = subscribe_send(&world, token, &bad_enum).await;
    assert_eq!(code, 47003);
    assert!(
        answer["errmsg"]
            .as_str()
            .unwrap()
            .contains("data.phrase3.value"),
        "{answer}"
    );
    let bad_page = message(17, ONE_TIME, "已发货", "pages/missing");
    assert_eq!(subscribe_send(&world, token, &bad_page).await.0, 41030);
    // Neither refusal spent the grant: the message goes, once.
    let (code, answer) = subscribe_send(&world, token, &ok).await;
    assert_eq!((code, &answer["errmsg"]), (0, &json!("ok")));
    assert!(
        answer["msgid"].is_u64(),
        "the first answer has a msgid: {answer}"
    );
    assert_eq!(subscribe_send(&world, token, &ok).await.0, 43101, "spent");
    // A long-term grant sends many; every second answer has no msgid (as configured).
    world
        .mock
        .subscribe_popup_event(18, &popup(LONG_TERM, "accept"))
        .unwrap();
    let long = json!({"touser": mock_wechat::mp_openid(18), "template_id": LONG_TERM,
                      "data": {"thing1": {"value": "办理中"}, "time2": {"value": "2026-12-08 10:00"}}});
    let mut msgids = Vec::new();
    for _ in 0..3 {
        let (code, answer) = subscribe_send(&world, token, &long).await;
        assert_eq!(code, 0, "{answer}");
        msgids.push(answer.get("msgid").is_some());
    }
    assert_eq!(msgids, vec![false, true, false]);
    // The OA's token is not the Mini Program's.
    let oa = world
        .client
        .stable_token(&mp.oa_appid, &mp.oa_secret, false)
        .await
        .unwrap()
        .token;
    assert_eq!(subscribe_send(&world, oa.expose(), &long).await.0, 48001);
    // The books: one message to person 17, three to person 18.
    let counts = world.mock.subscribe_sends_per_person();
    assert_eq!(counts, BTreeMap::from([(17, 1), (18, 3)]));
    assert_eq!(world.mock.stats().subscribe_sends_accepted, 4);
}

#[tokio::test]
async fn the_fake_pushes_again_while_the_push_url_gives_no_answer_then_stops() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    let world = World::with_vars(
        MockConfig {
            followers: 20,
            mp_push_retry_delay: Duration::from_millis(10),
            ..MockConfig::default()
        },
        &[],
    )
    .await;
    // A push URL that fails twice (HTTP 503, as a server that is not answering), then answers.
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let app = axum::Router::new().route(
        "/wechat/mp-callback",
        axum::routing::post(move || {
            let seen = seen.clone();
            async move {
                if seen.fetch_add(1, Ordering::SeqCst) < 2 {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "")
                } else {
                    (axum::http::StatusCode::OK, "success")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    world
        .mock
        .set_mp_callback(Some(mp_callback(&base, plain(), PushFormat::Xml)));
    let pushed = world
        .mock
        .subscribe_popup(19, &popup(ONE_TIME, "accept"))
        .await
        .unwrap();
    assert_eq!((pushed.attempts, pushed.answered), (3, true), "{pushed:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Nobody listening: 1 + 3 retries, then the fake gives up (the grant stays).
    world.mock.set_mp_callback(Some(mp_callback(
        &Url::parse(&format!(
            "http://127.0.0.1:{}/",
            crate::serve_support::free_port()
        ))
        .unwrap(),
        plain(),
        PushFormat::Xml,
    )));
    let pushed = world
        .mock
        .subscribe_popup(19, &popup(ONE_TIME, "accept"))
        .await
        .unwrap();
    assert_eq!((pushed.attempts, pushed.answered), (4, false), "{pushed:?}");
    assert_eq!(world.mock.grants(Some(19))[0].remaining, 2);
}

#[tokio::test]
async fn an_event_its_retries_and_the_report_arriving_together_count_once() {
    let world = world().await;
    let (base, _state) = world.serve().await;
    world
        .mock
        .set_mp_callback(Some(mp_callback(&base, plain(), PushFormat::Xml)));
    let key = wxnotify_api::producer::api_keys::create(&world.db.pool, &world.app, None)
        .await
        .unwrap()
        .key;
    let mut tasks = Vec::new();
    for person in 0..12u64 {
        let event = world
            .mock
            .subscribe_popup_event(person, &popup(ONE_TIME, "accept"))
            .unwrap();
        // WeChat's push and a retry of it, each signed afresh, and the Mini Program's report.
        for _ in 0..2 {
            let event = event.clone();
            let callback = mp_callback(&base, plain(), PushFormat::Xml);
            tasks.push(tokio::spawn(async move {
                let body = event.push.to_xml();
                let ts = chrono::Utc::now().timestamp().to_string();
                let nonce = rand::random::<u64>().to_string();
                let mut url = callback.url.clone();
                url.query_pairs_mut()
                    .append_pair("signature", &signature(MP_TOKEN, &ts, &nonce))
                    .append_pair("timestamp", &ts)
                    .append_pair("nonce", &nonce);
                let r = reqwest::Client::new()
                    .post(url)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }));
        }
        let (base, key) = (base.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut body = results(ONE_TIME, "accept");
            body["mp_openid"] = json!(mock_wechat::mp_openid(person));
            let (status, body) = report(&base, Some(&key), &body).await;
            assert_eq!(status, 200, "{body}");
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for person in 0..12u64 {
        assert_eq!(
            ledger(&world, person, ONE_TIME).await,
            Some((1, "accept".into())),
            "person {person}"
        );
    }
}
