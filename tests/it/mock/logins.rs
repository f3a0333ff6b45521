//! `sns/jscode2session` with codes issued by the test.

use std::time::Duration;

use wxnotify_sandbox::mock_wechat::{
    MOCK_MP_APPID, MOCK_MP_SECRET, MOCK_OA_APPID, MOCK_OA_SECRET, MockConfig, mp_openid,
};

use super::support::{Fake, Raw};

const PATH: &str = "/sns/jscode2session";

async fn login(fake: &Fake, appid: &str, secret: &str, code: &str) -> Raw {
    let query = [
        ("appid", appid),
        ("secret", secret),
        ("js_code", code),
        ("grant_type", "authorization_code"),
    ];
    fake.get(PATH, &query).await
}

#[tokio::test]
async fn a_login_code_gives_openid_session_key_and_unionid_once() {
    let fake = Fake::default().await;
    let code = fake.mock.issue_login_code(7);
    let v = login(&fake, MOCK_MP_APPID, MOCK_MP_SECRET, &code)
        .await
        .assert_ok();
    assert_eq!(v["openid"], mp_openid(7));
    assert_eq!(v["unionid"], "oMockUN000000000000000000007");
    assert_eq!(v["session_key"].as_str().unwrap().len(), 24);
    assert!(v.get("expires_in").is_none());
    let msg = login(&fake, MOCK_MP_APPID, MOCK_MP_SECRET, &code)
        .await
        .assert_err(40163);
    assert!(msg.starts_with("code been used rid: "), "{msg}");
}

#[tokio::test]
async fn a_person_without_unionid_logs_in_without_one() {
    let fake = Fake::default().await;
    let code = fake.mock.issue_login_code(9);
    let v = login(&fake, MOCK_MP_APPID, MOCK_MP_SECRET, &code)
        .await
        .assert_ok();
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
}

#[tokio::test]
async fn unknown_and_expired_codes_are_40029() {
    let cfg = MockConfig {
        login_code_ttl: Duration::from_millis(300),
        ..MockConfig::default()
    };
    let fake = Fake::start(cfg).await;
    login(&fake, MOCK_MP_APPID, MOCK_MP_SECRET, "made-up")
        .await
        .assert_err(40029);
    let code = fake.mock.issue_login_code(1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    login(&fake, MOCK_MP_APPID, MOCK_MP_SECRET, &code)
        .await
        .assert_err(40029);
}

#[tokio::test]
async fn a_wrong_secret_or_appid_does_not_use_the_code_up() {
    let fake = Fake::default().await;
    let code = fake.mock.issue_login_code(3);
    login(&fake, MOCK_MP_APPID, "wrong", &code)
        .await
        .assert_err(40125);
    login(&fake, "wxnope", MOCK_MP_SECRET, &code)
        .await
        .assert_err(40013);
    login(&fake, MOCK_OA_APPID, MOCK_OA_SECRET, &code)
        .await
        .assert_err(40013);
    login(&fake, MOCK_MP_APPID, MOCK_MP_SECRET, &code)
        .await
        .assert_ok();
}
