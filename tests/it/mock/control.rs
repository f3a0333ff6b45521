//! `/mock/…` over HTTP, and the counters.

use serde_json::json;
use wxnotify_sandbox::mock_wechat::{
    Endpoint, MOCK_MP_APPID, MOCK_MP_SECRET, MockStats, mp_openid,
};

use super::support::{Fake, raw_msgid, shipped};

#[tokio::test]
async fn stats_count_calls_errcodes_and_minted_tokens() {
    let fake = Fake::default().await;
    let token = fake.oa_token().await;
    fake.stable(false).await.assert_ok();
    fake.send(&token, &shipped(0)).await.json();
    fake.send(&token, &shipped(19)).await.assert_err(43004);
    let stats = fake.mock.stats();
    assert_eq!(stats.calls_to(Endpoint::TemplateSend), 2);
    assert_eq!(stats.calls_to(Endpoint::Token), 1);
    assert_eq!(stats.calls_to(Endpoint::UserGet), 0);
    assert_eq!(stats.answers_with(0), 3);
    assert_eq!(stats.answers_with(43004), 1);
    assert_eq!(stats.tokens_minted_by(Endpoint::Token), 1);
    assert_eq!(stats.tokens_minted_by(Endpoint::StableToken), 1);
    assert_eq!(stats.sends_accepted, 1);
}

#[tokio::test]
async fn the_control_api_drives_the_fake_over_http() {
    let fake = Fake::default().await;
    let token = fake.oa_token().await;
    let faults =
        r#"{"rules":[{"endpoint":"template_send","fault":{"errcode":43117},"remaining":1}]}"#;
    assert_eq!(fake.post("/mock/faults", &[], faults).await.status, 204);
    fake.send(&token, &shipped(0)).await.assert_err(43117);
    let msgid = raw_msgid(&fake.send(&token, &shipped(0)).await.text);

    let stats: MockStats = serde_json::from_str(&fake.get("/mock/stats", &[]).await.text).unwrap();
    assert_eq!(stats.answers_with(43117), 1);
    assert_eq!(stats.calls_to(Endpoint::TemplateSend), 2);
    let sends = fake.get("/mock/sends", &[]).await.text;
    assert!(
        sends.contains(&format!("\"msgid\":{msgid}")),
        "64-bit msgid kept exact: {sends}"
    );

    let code = fake
        .post("/mock/login_code", &[], r#"{"person":5}"#)
        .await
        .json();
    let query = [
        ("appid", MOCK_MP_APPID),
        ("secret", MOCK_MP_SECRET),
        ("js_code", code["code"].as_str().unwrap()),
        ("grant_type", "authorization_code"),
    ];
    let session = fake.get("/sns/jscode2session", &query).await.assert_ok();
    assert_eq!(session["openid"], mp_openid(5));

    assert_eq!(
        fake.post("/mock/unsubscribe", &[], r#"{"person":0}"#)
            .await
            .status,
        204
    );
    fake.send(&token, &shipped(0)).await.assert_err(43004);
    assert_eq!(
        fake.post("/mock/subscribe", &[], r#"{"person":0}"#)
            .await
            .status,
        204
    );

    assert_eq!(fake.post("/mock/tokens/expire", &[], "").await.status, 204);
    fake.send(&token, &shipped(0)).await.assert_err(42001);
    assert_eq!(
        fake.post("/mock/tokens/invalidate", &[], "").await.status,
        204
    );
    fake.send(&token, &shipped(0)).await.assert_err(40001);

    assert_eq!(fake.post("/mock/reset", &[], "").await.status, 204);
    assert_eq!(fake.mock.stats().calls_to(Endpoint::TemplateSend), 0);
    assert!(fake.mock.sends().is_empty());
}

#[tokio::test]
async fn deleting_the_faults_over_http_stops_them() {
    let fake = Fake::default().await;
    let all = json!({"rules":[{"fault":{"http_status":503}}]}).to_string();
    fake.post("/mock/faults", &[], &all).await;
    assert_eq!(fake.get("/cgi-bin/token", &[]).await.status, 503);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}mock/faults", fake.mock.base_url());
    assert_eq!(http.delete(url).send().await.unwrap().status(), 204);
    fake.oa_token().await;
}

#[tokio::test]
async fn reset_keeps_issued_tokens_working() {
    let fake = Fake::default().await;
    let token = fake.oa_token().await;
    fake.send(&token, &shipped(0)).await.json();
    fake.mock.reset();
    fake.send(&token, &shipped(0)).await.json();
    assert_eq!(fake.mock.stats().sends_accepted, 1);
}
