//! `cgi-bin/token`, `stable_token` and how tokens are checked.

use std::time::Duration;

use wxnotify_sandbox::mock_wechat::{MOCK_OA_APPID, MOCK_OA_SECRET, MockConfig};

use super::support::Fake;

const TEMPLATES: &str = "/cgi-bin/template/get_all_private_template";

fn short_lived(ttl_ms: u64, overlap_ms: u64) -> MockConfig {
    MockConfig {
        token_ttl: Duration::from_millis(ttl_ms),
        token_overlap: Duration::from_millis(overlap_ms),
        force_refresh_spacing: Duration::ZERO,
        ..MockConfig::default()
    }
}

#[tokio::test]
async fn classic_token_answers_the_bare_token_body_as_text_plain() {
    let fake = Fake::default().await;
    let query = [
        ("grant_type", "client_credential"),
        ("appid", MOCK_OA_APPID),
        ("secret", MOCK_OA_SECRET),
    ];
    let v = fake.get("/cgi-bin/token", &query).await.assert_ok();
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    assert!(v["access_token"].as_str().unwrap().len() >= 64);
    assert_eq!(v["expires_in"], 7200);
}

#[tokio::test]
async fn classic_token_refuses_a_wrong_appid_secret_or_grant_type() {
    let fake = Fake::default().await;
    let call = |appid: &'static str, secret: &'static str, grant: &'static str| {
        let query = [("grant_type", grant), ("appid", appid), ("secret", secret)];
        let fake = &fake;
        async move { fake.get("/cgi-bin/token", &query).await }
    };
    let msg = call("wxnope", MOCK_OA_SECRET, "client_credential")
        .await
        .assert_err(40013);
    assert!(msg.starts_with("invalid appid rid: "), "{msg}");
    call(MOCK_OA_APPID, "wrong", "client_credential")
        .await
        .assert_err(40001);
    call(MOCK_OA_APPID, MOCK_OA_SECRET, "authorization_code")
        .await
        .assert_err(40002);
    fake.get("/cgi-bin/token", &[]).await.assert_err(40002);
}

#[tokio::test]
async fn a_new_classic_token_leaves_the_old_one_working_only_for_the_overlap() {
    let fake = Fake::start(short_lived(60_000, 1000)).await;
    let old = fake.oa_token().await;
    let new = fake.oa_token().await;
    assert_ne!(old, new, "every call mints a new token");
    fake.get_with(&old, TEMPLATES, &[]).await.assert_ok();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let msg = fake.get_with(&old, TEMPLATES, &[]).await.assert_err(40001);
    assert!(msg.contains("not latest"), "{msg}");
    fake.get_with(&new, TEMPLATES, &[]).await.assert_ok();
}

#[tokio::test]
async fn a_token_past_its_lifetime_answers_42001() {
    let fake = Fake::start(short_lived(600, 100)).await;
    let token = fake.oa_token().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let msg = fake
        .get_with(&token, TEMPLATES, &[])
        .await
        .assert_err(42001);
    assert!(msg.starts_with("access_token expired rid: "), "{msg}");
}

#[tokio::test]
async fn missing_unknown_and_foreign_tokens_are_41001_40001_and_48001() {
    let fake = Fake::default().await;
    fake.get(TEMPLATES, &[]).await.assert_err(41001);
    fake.get_with("", TEMPLATES, &[]).await.assert_err(41001);
    fake.get_with("nope", TEMPLATES, &[])
        .await
        .assert_err(40001);
    let mp = fake.mp_token().await;
    fake.get_with(&mp, TEMPLATES, &[]).await.assert_err(48001);
}

#[tokio::test]
async fn invalidated_tokens_answer_40001_and_expired_ones_42001() {
    let fake = Fake::default().await;
    let first = fake.oa_token().await;
    fake.mock.invalidate_tokens();
    fake.get_with(&first, TEMPLATES, &[])
        .await
        .assert_err(40001);
    let second = fake.oa_token().await;
    fake.get_with(&second, TEMPLATES, &[]).await.assert_ok();
    fake.mock.expire_tokens();
    fake.get_with(&second, TEMPLATES, &[])
        .await
        .assert_err(42001);
    let stable = fake.stable(false).await.assert_ok();
    let token = stable["access_token"].as_str().unwrap();
    fake.get_with(token, TEMPLATES, &[]).await.assert_ok();
}

#[tokio::test]
async fn stable_token_repeats_itself_then_hands_over_in_its_last_overlap() {
    // Lives 3 s; from 1 s on, a call hands over to the next token.
    let fake = Fake::start(short_lived(3000, 2000)).await;
    let first = fake.stable(false).await.assert_ok();
    let again = fake.stable(false).await.assert_ok();
    assert_eq!(first["access_token"], again["access_token"]);
    assert_eq!(first["expires_in"], 3);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let next = fake.stable(false).await.assert_ok();
    assert_ne!(next["access_token"], first["access_token"]);
    let old = first["access_token"].as_str().unwrap();
    fake.get_with(old, TEMPLATES, &[]).await.assert_ok();
    let still = fake.stable(false).await.assert_ok();
    assert_eq!(still["access_token"], next["access_token"]);
    assert_eq!(
        fake.mock
            .stats()
            .tokens_minted_by(wxnotify_sandbox::mock_wechat::Endpoint::StableToken),
        2
    );
}

#[tokio::test]
async fn stable_force_refresh_kills_the_current_token_and_mints_another() {
    let fake = Fake::start(short_lived(60_000, 1000)).await;
    let first = fake.stable(false).await.assert_ok();
    let forced = fake.stable(true).await.assert_ok();
    assert_ne!(first["access_token"], forced["access_token"]);
    let old = first["access_token"].as_str().unwrap();
    fake.get_with(old, TEMPLATES, &[]).await.assert_err(40001);
    let new = forced["access_token"].as_str().unwrap();
    fake.get_with(new, TEMPLATES, &[]).await.assert_ok();
}

#[tokio::test]
async fn stable_force_refresh_within_30_seconds_returns_the_current_token() {
    let fake = Fake::default().await;
    let first = fake.stable(true).await.assert_ok();
    let second = fake.stable(true).await.assert_ok();
    let third = fake.stable(true).await.assert_ok();
    assert_ne!(first["access_token"], second["access_token"]);
    assert_eq!(second["access_token"], third["access_token"]);
}

#[tokio::test]
async fn stable_and_classic_tokens_never_invalidate_each_other() {
    let fake = Fake::start(short_lived(60_000, 200)).await;
    let stable = fake.stable(false).await.assert_ok();
    let stable = stable["access_token"].as_str().unwrap().to_owned();
    let classic = fake.oa_token().await;
    fake.stable(true).await.assert_ok();
    fake.get_with(&classic, TEMPLATES, &[]).await.assert_ok();
    let classic_again = fake.oa_token().await;
    let stable_now = fake.stable(false).await.assert_ok();
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.get_with(&classic, TEMPLATES, &[])
        .await
        .assert_err(40001);
    fake.get_with(&classic_again, TEMPLATES, &[])
        .await
        .assert_ok();
    let token = stable_now["access_token"].as_str().unwrap();
    fake.get_with(token, TEMPLATES, &[]).await.assert_ok();
    assert_ne!(
        token, stable,
        "the forced refresh replaced the first stable token"
    );
}

#[tokio::test]
async fn stable_token_wants_json_and_the_right_secret() {
    let fake = Fake::default().await;
    let form =
        format!("grant_type=client_credential&appid={MOCK_OA_APPID}&secret={MOCK_OA_SECRET}");
    let path = "/cgi-bin/stable_token";
    fake.post(path, &[], &form).await.assert_err(47001);
    let wrong =
        format!(r#"{{"grant_type":"client_credential","appid":"{MOCK_OA_APPID}","secret":"x"}}"#);
    fake.post(path, &[], &wrong).await.assert_err(40125);
    let no_grant = format!(r#"{{"appid":"{MOCK_OA_APPID}","secret":"{MOCK_OA_SECRET}"}}"#);
    fake.post(path, &[], &no_grant).await.assert_err(40002);
}
