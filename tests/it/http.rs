//! `serve` on port 0 against the fake WeChat: Mini Program login, the OA callback (handshake,
//! events in plaintext and safe mode, retries, refusals), health and metrics, and secrets.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use url::Url;
use wxnotify_core::wechat::client::TemplateMessage;
use wxnotify_core::wechat::crypto::{AesKey, msg_signature, signature};
use wxnotify_core::wechat::event::encrypted_envelope;
use wxnotify_sandbox::mock_wechat::{
    self, Endpoint, Fault, FaultRule, MockConfig, MockEvent, PushMode, deliver_xml,
};

use crate::users_support::{AES_KEY, CALLBACK_TOKEN, World, eventually, plain, safe};

async fn login(base: &Url, body: Value) -> (u16, Value, String) {
    let response = reqwest::Client::new()
        .post(base.join("v1/miniprogram/login").unwrap())
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

fn callback(base: &Url) -> Url {
    base.join("wechat/callback").unwrap()
}

async fn follower(world: &World, person: u64) -> Option<(bool, Option<String>)> {
    sqlx::query_as("SELECT subscribed, unionid FROM oa_followers WHERE oa_openid = $1")
        .bind(mock_wechat::oa_openid(person))
        .fetch_optional(&world.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn login_with_a_fresh_code_answers_openid_unionid_and_notifiable() {
    let world = World::new(MockConfig {
        followers: 100,
        ..MockConfig::default()
    })
    .await;
    world.sync(&World::fast_options()).await.unwrap();
    let (base, _) = world.serve().await;

    let (status, body, _) = login(&base, json!({ "code": world.mock.issue_login_code(3) })).await;
    assert_eq!(status, 200, "{body}");
    let session = body["session"]
        .as_str()
        .expect("a session for the Mini Program's reports");
    assert!(session.starts_with("wxs_"), "{body}");
    assert!(body["session_expires_at"].is_string(), "{body}");
    let mut rest = body.clone();
    for key in ["session", "session_expires_at"] {
        rest.as_object_mut().unwrap().remove(key);
    }
    assert_eq!(
        rest,
        json!({ "openid": mock_wechat::mp_openid(3), "unionid": mock_wechat::unionid(3, world.mock.config()), "notifiable": true })
    );
    let stored: (Option<String>, Option<String>) =
        sqlx::query_as("SELECT unionid, session_key FROM mp_users WHERE mp_openid = $1")
            .bind(mock_wechat::mp_openid(3))
            .fetch_one(&world.db.pool)
            .await
            .unwrap();
    assert_eq!(stored.0, mock_wechat::unionid(3, world.mock.config()));
    let session_key = stored.1.expect("the session key is kept server side");
    assert!(!body.to_string().contains(&session_key));
}

#[tokio::test]
async fn notifiable_is_false_without_a_subscribed_follower_or_without_a_unionid() {
    let world = World::new(MockConfig {
        followers: 100,
        ..MockConfig::default()
    })
    .await;
    let (base, _) = world.serve().await;
    let (status, body, _) = login(&base, json!({ "code": world.mock.issue_login_code(4) })).await;
    assert_eq!(
        (status, &body["notifiable"]),
        (200, &json!(false)),
        "not synced yet: {body}"
    );

    world.sync(&World::fast_options()).await.unwrap();
    let (_, body, _) = login(&base, json!({ "code": world.mock.issue_login_code(9) })).await;
    assert_eq!(body["unionid"], Value::Null, "person 9 has no unionid");
    assert_eq!(body["notifiable"], json!(false));

    // Person 5 unfollows: the event arrives and the next login says so.
    world
        .mock
        .push_event(
            &callback(&base),
            &MockEvent::Unsubscribe { person: 5 },
            &plain(),
        )
        .await
        .unwrap();
    let (_, body, _) = login(
        &base,
        json!({ "code": world.mock.issue_login_code(5), "app": "default" }),
    )
    .await;
    assert_eq!(body["notifiable"], json!(false), "{body}");
    let (_, body, _) = login(&base, json!({ "code": world.mock.issue_login_code(6) })).await;
    assert_eq!(body["notifiable"], json!(true), "{body}");
}

#[tokio::test]
async fn a_used_code_is_refused_without_calling_wechat_again() {
    let world = World::new(MockConfig {
        followers: 10,
        ..MockConfig::default()
    })
    .await;
    let (base, _) = world.serve().await;
    let code = world.mock.issue_login_code(1);
    assert_eq!(login(&base, json!({ "code": code })).await.0, 200);
    let (status, body, _) = login(&base, json!({ "code": code })).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("call wx.login() again for a fresh code"),
        "{body}"
    );
    assert_eq!(world.mock.stats().calls_to(Endpoint::JsCode2Session), 1);
}

#[tokio::test]
async fn concurrent_logins_with_one_code_share_one_exchange() {
    let world = World::new(MockConfig {
        followers: 10,
        ..MockConfig::default()
    })
    .await;
    let (base, _) = world.serve().await;
    world.mock.set_faults(
        FaultRule::new(Fault::Latency(std::time::Duration::from_millis(300)))
            .on(Endpoint::JsCode2Session)
            .into(),
    );
    let code = world.mock.issue_login_code(2);
    let answers =
        futures::future::join_all((0..5).map(|_| login(&base, json!({ "code": code })))).await;
    for (status, body, _) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["openid"], json!(mock_wechat::mp_openid(2)));
    }
    assert_eq!(world.mock.stats().calls_to(Endpoint::JsCode2Session), 1);
}

#[tokio::test]
async fn a_bad_code_is_a_400_that_asks_for_a_fresh_one_and_wechat_trouble_is_a_429_or_503() {
    let world = World::new(MockConfig {
        followers: 10,
        ..MockConfig::default()
    })
    .await;
    let (base, _) = world.serve().await;
    let (status, body, _) = login(&base, json!({ "code": "never-issued-code" })).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("wx.login()"),
        "{body}"
    );
    for bad in [json!({}), json!({ "code": "" }), json!({ "code": "a b" })] {
        assert_eq!(login(&base, bad).await.0, 400);
    }
    let (status, _, _) = login(&base, json!({ "code": "x", "app": "nope" })).await;
    assert_eq!(status, 404);

    world.mock.set_faults(
        FaultRule::new(Fault::Errcode(45011))
            .on(Endpoint::JsCode2Session)
            .into(),
    );
    let response = reqwest::Client::new()
        .post(base.join("v1/miniprogram/login").unwrap())
        .json(&json!({ "code": world.mock.issue_login_code(1) }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "60");

    for fault in [Fault::Errcode(-1), Fault::DropConnection] {
        world
            .mock
            .set_faults(FaultRule::new(fault).on(Endpoint::JsCode2Session).into());
        let (status, body, _) =
            login(&base, json!({ "code": world.mock.issue_login_code(1) })).await;
        assert_eq!(status, 503);
        assert_eq!(
            body,
            json!({ "error": "a service wxnotify depends on is unavailable; try again later" })
        );
    }
}

#[tokio::test]
async fn the_callback_handshake_echoes_echostr_only_for_a_good_signature() {
    let world = World::new(MockConfig {
        followers: 10,
        ..MockConfig::default()
    })
    .await;
    let (base, _) = world.serve().await;
    let get = |query: Vec<(&'static str, &'static str)>, path: &'static str| {
        let mut url = base.join(path).unwrap();
        url.query_pairs_mut().extend_pairs(query);
        async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // Signed like the official worked example (docs/wechat.md §7.1), at the current time (a
    // timestamp outside the window is refused).
    let now: &'static str = chrono::Utc::now().timestamp().to_string().leak();
    let sig: &'static str = signature(CALLBACK_TOKEN, now, "1514711492").leak();
    let good = vec![
        ("signature", sig),
        ("timestamp", now),
        ("nonce", "1514711492"),
        ("echostr", "4375120948345356249"),
    ];
    assert_eq!(
        get(good.clone(), "wechat/callback").await,
        (200, "4375120948345356249".into())
    );
    assert_eq!(get(good.clone(), "wechat/callback/default").await.0, 200);
    assert_eq!(get(good, "wechat/callback/other").await.0, 404);
    let bad = vec![
        ("signature", sig),
        ("timestamp", now),
        ("nonce", "1514711493"),
        ("echostr", "4375120948345356249"),
    ];
    assert_eq!(get(bad, "wechat/callback").await.0, 403);
    assert_eq!(get(vec![("echostr", "1")], "wechat/callback").await.0, 400);
}

#[tokio::test]
async fn a_subscribe_records_the_follower_at_once_and_its_unionid_in_the_background() {
    for mode in [plain(), safe()] {
        let world = World::new(MockConfig {
            followers: 10,
            ..MockConfig::default()
        })
        .await;
        let (base, _) = world.serve().await;
        let answer = world
            .mock
            .push_event(&callback(&base), &MockEvent::Subscribe { person: 7 }, &mode)
            .await
            .unwrap();
        let expected_body = if matches!(mode, PushMode::Plain { .. }) {
            "success"
        } else {
            ""
        };
        assert_eq!((answer.status, answer.body.as_str()), (200, expected_body));
        assert_eq!(follower(&world, 7).await.map(|f| f.0), Some(true));
        let unionid = mock_wechat::unionid(7, world.mock.config());
        eventually("the unionid of the new follower", || async {
            follower(&world, 7).await.and_then(|f| f.1) == unionid
        })
        .await;
    }
}

#[tokio::test]
async fn an_unsubscribe_marks_the_follower_unsubscribed_in_both_modes() {
    let world = World::new(MockConfig {
        followers: 10,
        ..MockConfig::default()
    })
    .await;
    world.sync(&World::fast_options()).await.unwrap();
    let (base, _) = world.serve().await;
    for (person, mode) in [(1, plain()), (2, safe())] {
        assert_eq!(follower(&world, person).await.map(|f| f.0), Some(true));
        let answer = world
            .mock
            .push_event(&callback(&base), &MockEvent::Unsubscribe { person }, &mode)
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        let (subscribed, unionid) = follower(&world, person).await.unwrap();
        assert!(!subscribed);
        assert!(unionid.is_some(), "the unionid is kept");
    }
}

#[tokio::test]
async fn a_template_receipt_is_stored_on_the_delivery_with_that_msgid() {
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
        client_msg_id: Some("job-1"),
    };
    let msgid = world.client.send_template(&token, &message).await.unwrap();
    sqlx::query(
        "INSERT INTO deliveries (job_id, app, recipient_kind, recipient, template_id, lane, state, msgid)
         VALUES ('job-1', 'default', 'oa_openid', $1, 'TPL_ORDER_SHIPPED', 'jobs', 'sent', $2)",
    )
    .bind(touser.as_str())
    .bind(msgid)
    .execute(&world.db.pool)
    .await
    .unwrap();
    let receipt = MockEvent::TemplateSendJobFinish {
        msgid: msgid as u64,
        status: "failed:user block".into(),
    };
    let answer = world
        .mock
        .push_event(&callback(&base), &receipt, &safe())
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    let stored: (Option<String>, bool) = sqlx::query_as(
        "SELECT receipt_status, receipt_at IS NOT NULL FROM deliveries WHERE job_id = 'job-1'",
    )
    .fetch_one(&world.db.pool)
    .await
    .unwrap();
    assert_eq!(stored, (Some("failed:user block".into()), true));

    // A receipt for a send whose msgid the ledger has not recorded yet is kept, not lost.
    let early = world
        .client
        .send_template(
            &token,
            &TemplateMessage {
                client_msg_id: Some("job-2"),
                ..message
            },
        )
        .await
        .unwrap();
    let receipt = MockEvent::TemplateSendJobFinish {
        msgid: early as u64,
        status: "success".into(),
    };
    assert_eq!(
        world
            .mock
            .push_event(&callback(&base), &receipt, &plain())
            .await
            .unwrap()
            .status,
        200
    );
    let kept: String = sqlx::query_scalar("SELECT status FROM delivery_receipts WHERE msgid = $1")
        .bind(early)
        .fetch_one(&world.db.pool)
        .await
        .unwrap();
    assert_eq!(kept, "success");
}

#[tokio::test]
async fn a_retried_event_is_recognised_and_not_applied_twice() {
    let world = World::new(MockConfig {
        followers: 10,
        ..MockConfig::default()
    })
    .await;
    let (base, _) = world.serve().await;
    let url = callback(&base);
    let subscribe = world
        .mock
        .event(&MockEvent::Subscribe { person: 3 })
        .unwrap();
    assert_eq!(
        world
            .mock
            .deliver(&url, &subscribe, &plain())
            .await
            .unwrap()
            .status,
        200
    );
    world
        .mock
        .push_event(&url, &MockEvent::Unsubscribe { person: 3 }, &plain())
        .await
        .unwrap();
    // WeChat retries the subscribe (another timestamp and nonce, same event): still "success",
    // and the person stays unsubscribed.
    let again = world.mock.deliver(&url, &subscribe, &safe()).await.unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(follower(&world, 3).await.map(|f| f.0), Some(false));
    assert_eq!(world.count("SELECT count(*) FROM callback_events").await, 2);
}

#[tokio::test]
async fn a_bad_signature_a_tampered_aes_payload_or_malformed_xml_is_refused_and_stores_nothing() {
    let world = World::new(MockConfig {
        followers: 10,
        ..MockConfig::default()
    })
    .await;
    let (base, _) = world.serve().await;
    let url = callback(&base);
    let push = world
        .mock
        .event(&MockEvent::Subscribe { person: 4 })
        .unwrap();
    let wrong_token = PushMode::Plain {
        token: "not-the-token".into(),
    };
    assert_eq!(
        world
            .mock
            .deliver(&url, &push, &wrong_token)
            .await
            .unwrap()
            .status,
        403
    );
    let wrong_key = PushMode::Safe {
        token: CALLBACK_TOKEN.into(),
        encoding_aes_key: "B".repeat(43),
    };
    assert_eq!(
        world
            .mock
            .deliver(&url, &push, &wrong_key)
            .await
            .unwrap()
            .status,
        400
    );
    let malformed = deliver_xml(&url, "<xml><FromUserName>oX</From", "oX", &plain())
        .await
        .unwrap();
    assert_eq!(malformed.status, 400);

    // A payload tampered with after encryption, signed again by someone who knows the token.
    let key = AesKey::from_encoding_aes_key(AES_KEY).unwrap();
    let encrypt = key.encrypt(push.xml.as_bytes(), mock_wechat::MOCK_OA_APPID);
    let mut bytes = base64_decode(&encrypt);
    bytes[40] ^= 1;
    let tampered = base64_encode(&bytes);
    assert_eq!(safe_post(&url, &tampered, None).await, 400);
    // A good payload whose msg_signature does not match.
    assert_eq!(safe_post(&url, &encrypt, Some("0".repeat(40))).await, 403);
    // A good payload for another appid.
    let foreign = key.encrypt(push.xml.as_bytes(), "wxsomeoneelse0001");
    assert_eq!(safe_post(&url, &foreign, None).await, 400);
    // Too big a body.
    let huge = format!(
        "<xml><FromUserName>{}</FromUserName></xml>",
        "a".repeat(100_000)
    );
    assert_eq!(
        deliver_xml(&url, &huge, "oX", &plain())
            .await
            .unwrap()
            .status,
        413
    );

    assert_eq!(world.count("SELECT count(*) FROM callback_events").await, 0);
    assert_eq!(world.count("SELECT count(*) FROM oa_followers").await, 0);
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// POSTs a safe-mode envelope with good signatures (or the given msg_signature).
async fn safe_post(url: &Url, encrypt: &str, msg_sig: Option<String>) -> u16 {
    let (ts, nonce) = (
        chrono::Utc::now().timestamp().to_string(),
        rand::random::<u32>().to_string(),
    );
    let (ts, nonce) = (ts.as_str(), nonce.as_str());
    let mut url = url.clone();
    url.query_pairs_mut()
        .append_pair("signature", &signature(CALLBACK_TOKEN, ts, nonce))
        .append_pair("timestamp", ts)
        .append_pair("nonce", nonce)
        .append_pair("encrypt_type", "aes")
        .append_pair(
            "msg_signature",
            &msg_sig.unwrap_or_else(|| msg_signature(CALLBACK_TOKEN, ts, nonce, encrypt)),
        );
    reqwest::Client::new()
        .post(url)
        .body(encrypted_envelope(
            mock_wechat::MOCK_OA_ORIGINAL_ID,
            encrypt,
        ))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn health_readiness_and_metrics_answer_on_the_api_port() {
    let world = World::new(MockConfig {
        followers: 10,
        ..MockConfig::default()
    })
    .await;
    let (base, _) = world.serve().await;
    login(&base, json!({ "code": world.mock.issue_login_code(1) })).await;
    for (path, needle) in [
        ("healthz", "ok"),
        ("readyz", "ready"),
        ("metrics", "wxnotify_logins_total"),
    ] {
        let r = reqwest::get(base.join(path).unwrap()).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert!(r.text().await.unwrap().contains(needle), "{path}");
    }
}

/// Every log line of wxnotify in this test binary (a thread-local subscriber would miss events
/// whose callsites other tests' threads registered first).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber once, as the process's global one.
fn captured_logs() -> &'static Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "wxnotify_api=debug,wxnotify_services::followers=debug,wxnotify_core::wechat::client=debug,wxnotify_core::wechat::token=debug",
            ))
            .with_writer(move || writer.clone())
            .try_init()
            .expect("no other global subscriber in the test binary");
        logs
    })
}

#[tokio::test]
async fn session_keys_tokens_and_callback_secrets_never_reach_responses_or_logs() {
    let logs = captured_logs();

    let world = World::new(MockConfig {
        followers: 10,
        ..MockConfig::default()
    })
    .await;
    let (base, state) = world.serve().await;
    let mut bodies = String::new();
    for person in [1, 2] {
        bodies += &login(
            &base,
            json!({ "code": world.mock.issue_login_code(person) }),
        )
        .await
        .2;
    }
    bodies += &login(&base, json!({ "code": "never-issued" })).await.2;
    world.mock.set_faults(
        FaultRule::new(Fault::Errcode(-1))
            .on(Endpoint::JsCode2Session)
            .into(),
    );
    bodies += &login(&base, json!({ "code": world.mock.issue_login_code(3) }))
        .await
        .2;
    world.mock.clear_faults();
    world.mock.invalidate_tokens();
    world
        .mock
        .push_event(
            &callback(&base),
            &MockEvent::Subscribe { person: 5 },
            &safe(),
        )
        .await
        .unwrap();
    eventually("the unionid", || async {
        follower(&world, 5).await.and_then(|f| f.1).is_some()
    })
    .await;
    state.background().close();
    state.background().wait().await;

    let session_keys: Vec<String> = sqlx::query_scalar("SELECT session_key FROM mp_users")
        .fetch_all(&world.db.pool)
        .await
        .unwrap();
    let tokens: Vec<String> =
        sqlx::query_scalar("SELECT token FROM access_tokens WHERE token IS NOT NULL")
            .fetch_all(&world.db.pool)
            .await
            .unwrap();
    assert_eq!(session_keys.len(), 2);
    assert!(!tokens.is_empty());
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("Mini Program login"),
        "the logs were captured: {logs}"
    );
    let mut secrets = session_keys;
    secrets.extend(tokens);
    secrets.extend([
        mock_wechat::MOCK_MP_SECRET.into(),
        mock_wechat::MOCK_OA_SECRET.into(),
        AES_KEY.into(),
    ]);
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret leaked into the logs"
        );
        assert!(
            !bodies.contains(secret.as_str()),
            "a secret leaked into a response"
        );
    }
}
