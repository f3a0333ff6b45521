//! The OA callback with the console's data format set to JSON: plaintext and safe-mode JSON
//! pushes go through the same signature, window, replay and de-duplication checks as XML, update
//! followers and receipts the same way, and events wxnotify does not act on are acknowledged.

use serde_json::json;
use url::Url;
use wxnotify_core::wechat::client::TemplateMessage;
use wxnotify_core::wechat::crypto::{AesKey, msg_signature, signature};
use wxnotify_sandbox::mock_wechat::{
    self, MockConfig, MockEvent, PushFormat, PushMode, deliver_body,
};

use crate::users_support::{AES_KEY, CALLBACK_TOKEN, World, eventually, plain, safe};

fn callback(base: &Url) -> Url {
    base.join("wechat/callback").unwrap()
}

fn json_world() -> MockConfig {
    MockConfig {
        followers: 20,
        push_format: PushFormat::Json,
        ..MockConfig::default()
    }
}

async fn follower(world: &World, person: u64) -> Option<(bool, Option<String>)> {
    sqlx::query_as("SELECT subscribed, unionid FROM oa_followers WHERE oa_openid = $1")
        .bind(mock_wechat::oa_openid(person))
        .fetch_optional(&world.db.pool)
        .await
        .unwrap()
}

/// The value of the counter `name` whose labels include every one of `labels` (0 if absent).
pub async fn counter(base: &Url, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = reqwest::get(base.join("metrics").unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// POSTs `body` signed for `(ts, nonce)` in plaintext mode.
async fn post_signed(base: &Url, ts: &str, nonce: &str, body: &str) -> (u16, String) {
    let mut url = callback(base);
    url.query_pairs_mut()
        .append_pair("signature", &signature(CALLBACK_TOKEN, ts, nonce))
        .append_pair("timestamp", ts)
        .append_pair("nonce", nonce);
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// POSTs a JSON safe-mode envelope of `encrypt` for `(ts, nonce)`, with good signatures unless
/// `msg_sig` is given.
async fn post_sealed(
    base: &Url,
    ts: &str,
    nonce: &str,
    encrypt: &str,
    msg_sig: Option<&str>,
) -> (u16, String) {
    let mut url = callback(base);
    let good = msg_signature(CALLBACK_TOKEN, ts, nonce, encrypt);
    url.query_pairs_mut()
        .append_pair("signature", &signature(CALLBACK_TOKEN, ts, nonce))
        .append_pair("timestamp", ts)
        .append_pair("nonce", nonce)
        .append_pair("encrypt_type", "aes")
        .append_pair("msg_signature", msg_sig.unwrap_or(&good));
    let r = reqwest::Client::new()
        .post(url)
        .body(PushFormat::Json.envelope(mock_wechat::MOCK_OA_ORIGINAL_ID, encrypt))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn seal(body: &str, appid: &str) -> String {
    AesKey::from_encoding_aes_key(AES_KEY)
        .unwrap()
        .encrypt(body.as_bytes(), appid)
}

fn now() -> String {
    chrono::Utc::now().timestamp().to_string()
}

#[tokio::test]
async fn json_pushes_in_plaintext_and_safe_mode_update_followers_like_xml() {
    let world = World::new(json_world()).await;
    world.sync(&World::fast_options()).await.unwrap();
    let (base, state) = world.serve().await;
    let push = world
        .mock
        .event(&MockEvent::Unsubscribe { person: 1 })
        .unwrap();
    assert!(
        push.json.starts_with('{') && push.json.contains(r#""Event":"unsubscribe""#),
        "the fake pushes JSON: {}",
        push.json
    );
    // The fake is set to JSON: `deliver` sends the JSON body (the XML one stays unused).
    let answer = world
        .mock
        .deliver(&callback(&base), &push, &plain())
        .await
        .unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    assert_eq!(follower(&world, 1).await.map(|f| f.0), Some(false));

    let answer = world
        .mock
        .push_event(
            &callback(&base),
            &MockEvent::Unsubscribe { person: 2 },
            &safe(),
        )
        .await
        .unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    let (subscribed, unionid) = follower(&world, 2).await.unwrap();
    assert!(!subscribed);
    assert!(unionid.is_some(), "the unionid is kept");

    // Person 19 never followed (every 20th); a safe-mode JSON subscribe records them and the
    // unionid comes in the background.
    assert_eq!(follower(&world, 19).await, None);
    let answer = world
        .mock
        .push_event(
            &callback(&base),
            &MockEvent::Subscribe { person: 19 },
            &safe(),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(follower(&world, 19).await.map(|f| f.0), Some(true));
    let unionid = mock_wechat::unionid(19, world.mock.config());
    eventually("the unionid of the new follower", || async {
        follower(&world, 19).await.and_then(|f| f.1) == unionid
    })
    .await;
    state.background().close();
    state.background().wait().await;
    assert_eq!(world.count("SELECT count(*) FROM callback_events").await, 3);
    assert!(
        counter(
            &base,
            "wxnotify_callback_events_total",
            &[("format", "json"), ("outcome", "applied")]
        )
        .await
            >= 3.0
    );
}

#[tokio::test]
async fn a_json_template_receipt_is_stored_in_safe_and_plaintext_mode() {
    let world = World::new(MockConfig {
        followers: 10,
        ..MockConfig::default()
    })
    .await;
    let (base, _) = world.serve().await;
    let token = world.tokens.get(&world.app).await.unwrap();
    let touser = wxnotify_core::domain::OpenId::parse(mock_wechat::oa_openid(1)).unwrap();
    let template = wxnotify_core::domain::TemplateId::parse("TPL_ORDER_SHIPPED").unwrap();
    let data: wxnotify_core::domain::TemplateData =
        serde_json::from_value(json!({ "thing1": "shipped", "time2": "2026-11-24 10:00" }))
            .unwrap();
    let message = TemplateMessage {
        touser: &touser,
        template_id: &template,
        data: &data,
        url: None,
        miniprogram: None,
        client_msg_id: Some("job-json-1"),
    };
    let msgid = world.client.send_template(&token, &message).await.unwrap();
    sqlx::query(
        "INSERT INTO deliveries (job_id, app, recipient_kind, recipient, template_id, lane, state, msgid)
         VALUES ('job-json-1', 'default', 'oa_openid', $1, 'TPL_ORDER_SHIPPED', 'jobs', 'sent', $2)",
    )
    .bind(touser.as_str())
    .bind(msgid)
    .execute(&world.db.pool)
    .await
    .unwrap();
    // The fake is set to XML; this one push is JSON.
    let receipt = world
        .mock
        .event(&MockEvent::TemplateSendJobFinish {
            msgid: msgid as u64,
            status: "failed:user block".into(),
        })
        .unwrap();
    assert!(receipt.json.contains(&format!(r#""MsgID":{msgid}"#)));
    let answer = world
        .mock
        .deliver_as(&callback(&base), &receipt, &safe(), PushFormat::Json)
        .await
        .unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    let stored: (Option<String>, bool) = sqlx::query_as(
        "SELECT receipt_status, receipt_at IS NOT NULL FROM deliveries WHERE job_id = 'job-json-1'",
    )
    .fetch_one(&world.db.pool)
    .await
    .unwrap();
    assert_eq!(stored, (Some("failed:user block".into()), true));

    // A plaintext JSON receipt for a send the ledger has not recorded yet is kept.
    let early = world
        .client
        .send_template(
            &token,
            &TemplateMessage {
                client_msg_id: Some("job-json-2"),
                ..message
            },
        )
        .await
        .unwrap();
    let receipt = world
        .mock
        .event(&MockEvent::TemplateSendJobFinish {
            msgid: early as u64,
            status: "success".into(),
        })
        .unwrap();
    let answer = world
        .mock
        .deliver_as(&callback(&base), &receipt, &plain(), PushFormat::Json)
        .await
        .unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    let kept: String = sqlx::query_scalar("SELECT status FROM delivery_receipts WHERE msgid = $1")
        .bind(early)
        .fetch_one(&world.db.pool)
        .await
        .unwrap();
    assert_eq!(kept, "success");
}

#[tokio::test]
async fn a_json_push_with_a_bad_signature_or_payload_is_refused_like_xml_and_stores_nothing() {
    let world = World::new(json_world()).await;
    let (base, _) = world.serve().await;
    let push = world
        .mock
        .event(&MockEvent::Subscribe { person: 4 })
        .unwrap();
    let wrong_token = PushMode::Plain {
        token: "not-the-token".into(),
    };
    let answer = world
        .mock
        .deliver(&callback(&base), &push, &wrong_token)
        .await
        .unwrap();
    assert_eq!(answer.status, 403, "{}", answer.body);
    let wrong_token = PushMode::Safe {
        token: "not-the-token".into(),
        encoding_aes_key: AES_KEY.into(),
    };
    let answer = world
        .mock
        .deliver(&callback(&base), &push, &wrong_token)
        .await
        .unwrap();
    assert_eq!(answer.status, 403, "{}", answer.body);

    // Safe mode: a good envelope whose msg_signature does not match.
    let sealed = seal(&push.json, mock_wechat::MOCK_OA_APPID);
    let (status, body) = post_sealed(
        &base,
        &now(),
        &rand::random::<u32>().to_string(),
        &sealed,
        Some(&"0".repeat(40)),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("msg_signature"), "{body}");
    // Signed, but for another appid: 400.
    let foreign = seal(&push.json, "wxsomeoneelse0001");
    let (status, _) = post_sealed(
        &base,
        &now(),
        &rand::random::<u32>().to_string(),
        &foreign,
        None,
    )
    .await;
    assert_eq!(status, 400);
    // Malformed JSON, a JSON push without CreateTime, and a body in neither format: 400.
    for body in [
        r#"{"FromUserName":"oX","#.to_owned(),
        json!({ "FromUserName": mock_wechat::oa_openid(4), "MsgType": "event", "Event": "subscribe" })
            .to_string(),
        "FromUserName=oX".to_owned(),
    ] {
        let answer = deliver_body(&callback(&base), &body, "oX", &plain(), PushFormat::Json)
            .await
            .unwrap();
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
    }
    assert_eq!(world.count("SELECT count(*) FROM callback_events").await, 0);
    assert_eq!(world.count("SELECT count(*) FROM oa_followers").await, 0);
}

#[tokio::test]
async fn a_replayed_json_push_is_applied_once() {
    let world = World::new(json_world()).await;
    world.sync(&World::fast_options()).await.unwrap();
    let (base, _) = world.serve().await;
    let push = world
        .mock
        .event(&MockEvent::Unsubscribe { person: 5 })
        .unwrap();
    // The very same request twice (WeChat's retry of a request whose answer it lost): answered
    // both times, applied once.
    let (ts, nonce) = (now(), "50001".to_string());
    assert_eq!(
        post_signed(&base, &ts, &nonce, &push.json).await,
        (200, "success".into())
    );
    assert_eq!(
        post_signed(&base, &ts, &nonce, &push.json).await,
        (200, "success".into())
    );
    assert_eq!(world.count("SELECT count(*) FROM callback_events").await, 1);
    // A retry signed afresh (new timestamp and nonce, same event), in safe mode this time.
    let again = world
        .mock
        .deliver(&callback(&base), &push, &safe())
        .await
        .unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(world.count("SELECT count(*) FROM callback_events").await, 1);
    // The same query with another JSON body (a forged subscribe) is a replay: refused.
    let forged = world
        .mock
        .event(&MockEvent::Subscribe { person: 5 })
        .unwrap();
    assert_eq!(post_signed(&base, &ts, &nonce, &forged.json).await.0, 403);
    assert_eq!(follower(&world, 5).await.map(|f| f.0), Some(false));
    // A safe-mode JSON request sent twice is applied once too; its query reused with another
    // ciphertext is refused.
    let receipt_like = world
        .mock
        .event(&MockEvent::Unsubscribe { person: 6 })
        .unwrap();
    let sealed = seal(&receipt_like.json, mock_wechat::MOCK_OA_APPID);
    let (ts, nonce) = (now(), "50002".to_string());
    assert_eq!(post_sealed(&base, &ts, &nonce, &sealed, None).await.0, 200);
    assert_eq!(post_sealed(&base, &ts, &nonce, &sealed, None).await.0, 200);
    assert_eq!(world.count("SELECT count(*) FROM callback_events").await, 2);
    let resealed = seal(&receipt_like.json, mock_wechat::MOCK_OA_APPID);
    assert_eq!(
        post_sealed(&base, &ts, &nonce, &resealed, None).await.0,
        403
    );
    // Outside the timestamp window: refused in JSON as in XML.
    let old = (chrono::Utc::now().timestamp() - 400).to_string();
    assert_eq!(post_signed(&base, &old, "50003", &push.json).await.0, 403);
}

#[tokio::test]
async fn events_wxnotify_does_not_act_on_are_acknowledged_in_both_formats() {
    let world = World::new(json_world()).await;
    let (base, _) = world.serve().await;
    // The official guide's JSON example (an event named debug_demo), then other events and a
    // message, in JSON and XML, plaintext and safe mode.
    let debug_demo = r#"{
    "ToUserName": "gh_97417a04a28d",
    "FromUserName": "o9AgO5Kd5ggOC-bXrbNODIiE3bGY",
    "CreateTime": 1714037059,
    "MsgType": "event",
    "Event": "debug_demo",
    "debug_str": "hello world"
}"#;
    let click = r#"{"ToUserName":"gh_1","FromUserName":"oClick1","CreateTime":1714037060,"MsgType":"event","Event":"CLICK","EventKey":"MENU_1"}"#;
    let text = r#"{"ToUserName":"gh_1","FromUserName":"oText1","CreateTime":1714037061,"MsgType":"text","Content":"hi","MsgId":23456789012345678}"#;
    let view_xml = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oView1]]></FromUserName><CreateTime>1714037062</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[VIEW]]></Event><EventKey><![CDATA[https://example.com]]></EventKey></xml>";
    for (body, format) in [
        (debug_demo, PushFormat::Json),
        (click, PushFormat::Json),
        (text, PushFormat::Json),
        (view_xml, PushFormat::Xml),
    ] {
        for mode in [plain(), safe()] {
            let answer = deliver_body(&callback(&base), body, "o", &mode, format)
                .await
                .unwrap();
            assert_eq!(answer.status, 200, "{body}: {}", answer.body);
        }
    }
    // Each was claimed once (the safe-mode copy is the same event).
    assert_eq!(world.count("SELECT count(*) FROM callback_events").await, 4);
    assert_eq!(world.count("SELECT count(*) FROM oa_followers").await, 0);
}
