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
    world
        .mock
        .set_mp_callback(Some(mp_callback(&serve.base, safe(), PushFormat::Json)));
    let pushed = world
        .mock
        .subscribe_popup(11, &popup(ONE_TIME, "accept"))
        .await
        .unwrap();
    assert!(pushed.answered, "{pushed:?}");
    assert_eq!(pushed.status, Some(200));

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
