//! The client against wiremock: every endpoint's request shape, every answer form of
//! `docs/wechat.md` §1 and §11, and every way a call can fail.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::domain::{AppId, FieldKey, MiniProgramLink, OpenId, TemplateData, TemplateId, UnionId};
use crate::wechat::{ErrClass, PermanentKind};

mod redaction;

const APPID: &str = "wx0123456789abcdef";
const SECRET: &str = "app-secret-0123456789";
const TOKEN: &str = "ACCESS_TOKEN_abc123";

fn client_for(server: &MockServer) -> WechatClient {
    client_with_timeout(&server.uri(), Duration::from_secs(5))
}

fn client_with_timeout(base: &str, timeout: Duration) -> WechatClient {
    let options = ClientOptions {
        timeout,
        connect_timeout: timeout,
        ..ClientOptions::default()
    };
    WechatClient::new(Url::parse(base).unwrap(), &options).unwrap()
}

fn appid() -> AppId {
    AppId::parse(APPID).unwrap()
}

fn secret() -> SecretString {
    SecretString::from(SECRET)
}

fn token() -> AccessToken {
    AccessToken::new(TOKEN)
}

fn openid(s: &str) -> OpenId {
    OpenId::parse(s).unwrap()
}

fn json_body(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

fn data(fields: &[(&str, &str)]) -> TemplateData {
    let fields: BTreeMap<FieldKey, String> = fields
        .iter()
        .map(|(k, v)| (FieldKey::parse(*k).unwrap(), (*v).to_owned()))
        .collect();
    TemplateData::new(fields).unwrap()
}

/// Sends a minimal template message (the endpoint that reliably returns an errcode).
async fn send_minimal(client: &WechatClient) -> Result<i64, WechatError> {
    let to = openid("oOA_user-1");
    let template = TemplateId::parse("tmpl-1").unwrap();
    let data = data(&[("thing1", "x")]);
    let msg = TemplateMessage {
        touser: &to,
        template_id: &template,
        data: &data,
        url: None,
        miniprogram: None,
        client_msg_id: None,
    };
    client.send_template(&token(), &msg).await
}

/// A server whose template/send answers `response`.
async fn send_answering(response: ResponseTemplate) -> (MockServer, Result<i64, WechatError>) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/cgi-bin/message/template/send"))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    let result = send_minimal(&client_for(&server)).await;
    (server, result)
}

fn only_request(requests: Option<Vec<Request>>) -> Request {
    let mut requests = requests.expect("request recording is on");
    assert_eq!(requests.len(), 1, "expected exactly one request");
    requests.remove(0)
}

// ---------------------------------------------------------------------------------------------
// Endpoints

#[tokio::test]
async fn classic_token_sends_the_credentials_in_the_query_and_reads_expires_in() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/cgi-bin/token"))
        .and(query_param("grant_type", "client_credential"))
        .and(query_param("appid", APPID))
        .and(query_param("secret", SECRET))
        .respond_with(json_body(
            r#"{"access_token":"T-classic","expires_in":7100}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let fetched = client_for(&server)
        .classic_token(&appid(), &secret())
        .await
        .unwrap();
    assert_eq!(fetched.token.expose(), "T-classic");
    assert_eq!(fetched.expires_in, Duration::from_secs(7100));
}

#[tokio::test]
async fn stable_token_posts_json_with_force_refresh_false_and_no_query() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/cgi-bin/stable_token"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "grant_type": "client_credential",
            "appid": APPID,
            "secret": SECRET,
            "force_refresh": false,
        })))
        .respond_with(json_body(
            r#"{"access_token":"T-stable","expires_in":7200}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let fetched = client_for(&server)
        .stable_token(&appid(), &secret(), false)
        .await
        .unwrap();
    assert_eq!(fetched.token.expose(), "T-stable");
    assert_eq!(fetched.expires_in, Duration::from_secs(7200));
    let request = only_request(server.received_requests().await);
    assert_eq!(request.url.query(), None, "the secret stays out of the URL");
}

#[tokio::test]
async fn user_get_starts_without_next_openid_and_returns_where_to_continue() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/cgi-bin/user/get"))
        .and(query_param("access_token", TOKEN))
        .and(query_param_is_missing("next_openid"))
        .respond_with(json_body(
            r#"{"total":3,"count":2,"data":{"openid":["o1","o2"]},"next_openid":"o2"}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/cgi-bin/user/get"))
        .and(query_param("next_openid", "o2"))
        .respond_with(json_body(
            r#"{"total":3,"count":1,"data":{"openid":["o3"]},"next_openid":""}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let client = client_for(&server);
    let first = client.user_get(&token(), None).await.unwrap();
    assert_eq!(first.total, 3);
    assert_eq!(first.openids, [openid("o1"), openid("o2")]);
    assert_eq!(first.next_openid, Some(openid("o2")));
    let last = client
        .user_get(&token(), first.next_openid.as_ref())
        .await
        .unwrap();
    assert_eq!(last.openids, [openid("o3")]);
    assert_eq!(last.next_openid, None, "an empty next_openid ends the list");
}

#[tokio::test]
async fn user_get_ends_when_data_is_absent_with_count_zero() {
    let server = MockServer::start().await;
    // What WeChat sends after a last full page: a non-empty next_openid but no `data`.
    Mock::given(path("/cgi-bin/user/get"))
        .respond_with(json_body(r#"{"total":2,"count":0,"next_openid":"o2"}"#))
        .mount(&server)
        .await;
    let page = client_for(&server)
        .user_get(&token(), Some(&openid("o2")))
        .await
        .unwrap();
    assert!(page.openids.is_empty());
    assert_eq!(page.total, 2);
    assert_eq!(page.next_openid, None);
}

#[tokio::test]
async fn user_get_ends_when_count_is_zero_even_with_data_and_next_openid() {
    let server = MockServer::start().await;
    Mock::given(path("/cgi-bin/user/get"))
        .respond_with(json_body(
            r#"{"total":2,"count":0,"data":{"openid":[]},"next_openid":"o2"}"#,
        ))
        .mount(&server)
        .await;
    let page = client_for(&server)
        .user_get(&token(), Some(&openid("o2")))
        .await
        .unwrap();
    assert!(page.openids.is_empty());
    assert_eq!(page.next_openid, None);
}

#[tokio::test]
async fn user_get_of_an_oa_without_followers_is_one_empty_page() {
    let server = MockServer::start().await;
    Mock::given(path("/cgi-bin/user/get"))
        .respond_with(json_body(r#"{"total":0,"count":0,"next_openid":""}"#))
        .mount(&server)
        .await;
    let page = client_for(&server).user_get(&token(), None).await.unwrap();
    assert_eq!(page.total, 0);
    assert!(page.openids.is_empty());
    assert_eq!(page.next_openid, None);
}

#[tokio::test]
async fn user_info_of_a_follower_has_unionid_and_subscribe_time() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/cgi-bin/user/info"))
        .and(query_param("access_token", TOKEN))
        .and(query_param("openid", "oFollower"))
        .and(query_param("lang", "zh_CN"))
        .respond_with(json_body(
            r#"{"subscribe":1,"openid":"oFollower","language":"zh_CN","subscribe_time":1382694957,
               "unionid":"uUnion-1","remark":"","groupid":0,"tagid_list":[128,2],
               "subscribe_scene":"ADD_SCENE_QR_CODE","qr_scene":98765,"qr_scene_str":""}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let info = client_for(&server)
        .user_info(&token(), &openid("oFollower"))
        .await
        .unwrap();
    assert_eq!(
        info,
        UserInfo {
            openid: openid("oFollower"),
            subscribed: true,
            unionid: Some(UnionId::parse("uUnion-1").unwrap()),
            subscribe_time: Some(1382694957),
        }
    );
}

#[tokio::test]
async fn user_info_of_an_unsubscribed_user_is_not_subscribed_but_keeps_the_unionid() {
    let server = MockServer::start().await;
    Mock::given(path("/cgi-bin/user/info"))
        .respond_with(json_body(
            r#"{"subscribe":0,"openid":"oGone","unionid":"uGone"}"#,
        ))
        .mount(&server)
        .await;
    let info = client_for(&server)
        .user_info(&token(), &openid("oGone"))
        .await
        .unwrap();
    assert!(!info.subscribed);
    assert_eq!(info.unionid, Some(UnionId::parse("uGone").unwrap()));
    assert_eq!(info.subscribe_time, None);
}

#[tokio::test]
async fn user_info_without_unionid_when_the_oa_is_not_bound() {
    let server = MockServer::start().await;
    Mock::given(path("/cgi-bin/user/info"))
        .respond_with(json_body(
            r#"{"subscribe":1,"openid":"oFree","language":"zh_CN","subscribe_time":5}"#,
        ))
        .mount(&server)
        .await;
    let info = client_for(&server)
        .user_info(&token(), &openid("oFree"))
        .await
        .unwrap();
    assert!(info.subscribed);
    assert_eq!(info.unionid, None);
    assert_eq!(info.subscribe_time, Some(5));
}

#[tokio::test]
async fn user_info_batch_refuses_more_than_100_openids_before_sending() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(json_body(r#"{"user_info_list":[]}"#))
        .expect(0)
        .mount(&server)
        .await;
    let many: Vec<OpenId> = (0..=BATCHGET_MAX)
        .map(|i| openid(&format!("o{i}")))
        .collect();
    let client = client_for(&server);
    let err = client.user_info_batch(&token(), &many).await.unwrap_err();
    assert!(matches!(err, WechatError::InvalidRequest { .. }), "{err:?}");
    assert!(matches!(err.class(), ErrClass::Permanent(_)));
    let err = client.user_info_batch(&token(), &[]).await.unwrap_err();
    assert!(matches!(err, WechatError::InvalidRequest { .. }), "{err:?}");
}

#[tokio::test]
async fn user_info_batch_posts_a_user_list_of_openid_and_lang() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/cgi-bin/user/info/batchget"))
        .and(query_param("access_token", TOKEN))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({"user_list": [
            {"openid": "o1", "lang": "zh_CN"},
            {"openid": "o2", "lang": "zh_CN"},
        ]})))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"user_info_list":[
                {"subscribe":1,"openid":"o1","unionid":"u1","subscribe_time":10,"language":"zh_CN"},
                {"subscribe":0,"openid":"o2","unionid":"u2"}]}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let infos = client_for(&server)
        .user_info_batch(&token(), &[openid("o1"), openid("o2")])
        .await
        .unwrap();
    assert_eq!(infos.len(), 2);
    assert!(infos[0].subscribed && infos[0].subscribe_time == Some(10));
    assert_eq!(infos[1].openid, openid("o2"));
    assert!(!infos[1].subscribed);
    assert_eq!(infos[1].unionid, Some(UnionId::parse("u2").unwrap()));
}

#[tokio::test]
async fn user_info_batch_takes_exactly_100_openids() {
    let server = MockServer::start().await;
    Mock::given(path("/cgi-bin/user/info/batchget"))
        .respond_with(json_body(r#"{"user_info_list":[]}"#))
        .expect(1)
        .mount(&server)
        .await;
    let hundred: Vec<OpenId> = (0..BATCHGET_MAX)
        .map(|i| openid(&format!("o{i}")))
        .collect();
    client_for(&server)
        .user_info_batch(&token(), &hundred)
        .await
        .unwrap();
    let request = only_request(server.received_requests().await);
    let body: serde_json::Value = request.body_json().unwrap();
    assert_eq!(body["user_list"].as_array().unwrap().len(), 100);
}

#[tokio::test]
async fn jscode2session_succeeds_without_errcode_or_expires_in() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/sns/jscode2session"))
        .and(query_param("appid", APPID))
        .and(query_param("secret", SECRET))
        .and(query_param("js_code", "login-code-1"))
        .and(query_param("grant_type", "authorization_code"))
        .and(query_param_is_missing("access_token"))
        .respond_with(
            // sns/* answers are served as text/plain.
            ResponseTemplate::new(200).set_body_string(
                r#"{"session_key":"c2Vzc2lvbl9rZXk=","openid":"oMP_1","unionid":"uU1"}"#,
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    let session = client_for(&server)
        .jscode2session(&appid(), &secret(), "login-code-1")
        .await
        .unwrap();
    assert_eq!(session.openid, openid("oMP_1"));
    assert_eq!(session.unionid, Some(UnionId::parse("uU1").unwrap()));
    assert_eq!(session.session_key.expose_secret(), "c2Vzc2lvbl9rZXk=");
    assert!(!format!("{session:?}").contains("c2Vzc2lvbl9rZXk="));
}

#[tokio::test]
async fn jscode2session_without_unionid_when_the_mini_program_is_not_bound() {
    let server = MockServer::start().await;
    Mock::given(path("/sns/jscode2session"))
        .respond_with(json_body(
            r#"{"session_key":"k","openid":"oMP_2","errcode":0,"errmsg":"ok"}"#,
        ))
        .mount(&server)
        .await;
    let session = client_for(&server)
        .jscode2session(&appid(), &secret(), "c")
        .await
        .unwrap();
    assert_eq!(session.unionid, None);
}

#[tokio::test]
async fn jscode2session_invalid_or_used_codes_are_permanent_for_that_code() {
    for code in [40029, 40163, 40226] {
        let server = MockServer::start().await;
        Mock::given(path("/sns/jscode2session"))
            .respond_with(json_body(&format!(
                r#"{{"errcode":{code},"errmsg":"invalid code, rid: 6600aa-11bb"}}"#
            )))
            .mount(&server)
            .await;
        let err = client_for(&server)
            .jscode2session(&appid(), &secret(), "used-code")
            .await
            .unwrap_err();
        assert_eq!(err.errcode(), Some(code));
        assert_eq!(
            err.class(),
            ErrClass::Permanent(PermanentKind::Code),
            "{code}"
        );
    }
}

#[tokio::test]
async fn send_template_posts_wechat_s_body_shape_with_cjk_unescaped() {
    let server = MockServer::start().await;
    let expected = json!({
        "touser": "oOA_user-1",
        "template_id": "tmpl-1",
        "url": "https://example.com/x",
        "miniprogram": {"appid": "wxMiniProgram01", "pagepath": "pages/order/detail?id=1"},
        "client_msg_id": "order-123-shipped",
        "data": {"thing1": {"value": "订单已发货"}, "time2": {"value": "2024-01-01 12:00"}},
    });
    Mock::given(method("POST"))
        .and(path("/cgi-bin/message/template/send"))
        .and(query_param("access_token", TOKEN))
        .and(header("content-type", "application/json"))
        .and(body_json(&expected))
        .respond_with(json_body(
            r#"{"errcode":0,"errmsg":"ok","msgid":200228332}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let to = openid("oOA_user-1");
    let template = TemplateId::parse("tmpl-1").unwrap();
    let data = data(&[("thing1", "订单已发货"), ("time2", "2024-01-01 12:00")]);
    let link = Url::parse("https://example.com/x").unwrap();
    let mp = MiniProgramLink {
        appid: AppId::parse("wxMiniProgram01").unwrap(),
        pagepath: "pages/order/detail?id=1".into(),
    };
    let msg = TemplateMessage {
        touser: &to,
        template_id: &template,
        data: &data,
        url: Some(&link),
        miniprogram: Some(&mp),
        client_msg_id: Some("order-123-shipped"),
    };
    let msgid = client_for(&server)
        .send_template(&token(), &msg)
        .await
        .unwrap();
    assert_eq!(msgid, 200228332);
    let request = only_request(server.received_requests().await);
    let raw = String::from_utf8(request.body).unwrap();
    assert!(raw.contains("订单已发货"), "CJK sent as UTF-8: {raw}");
    assert!(!raw.contains("\\u"), "nothing escaped: {raw}");
    assert!(!raw.contains(r#""path""#), "the key is pagepath: {raw}");
    assert!(
        !raw.contains("access_token"),
        "the token stays in the query"
    );
}

#[tokio::test]
async fn send_template_leaves_out_absent_optional_fields() {
    let (server, result) =
        send_answering(json_body(r#"{"errcode":0,"errmsg":"ok","msgid":1}"#)).await;
    assert_eq!(result.unwrap(), 1);
    let body: serde_json::Value = only_request(server.received_requests().await)
        .body_json()
        .unwrap();
    assert_eq!(
        body,
        json!({"touser": "oOA_user-1", "template_id": "tmpl-1", "data": {"thing1": {"value": "x"}}})
    );
}

#[tokio::test]
async fn send_template_returns_a_msgid_above_2_pow_53_exactly() {
    for msgid in [
        3487542469355618313_i64,
        271781022721654784,
        9007199254740993,
    ] {
        let (_server, result) = send_answering(json_body(&format!(
            r#"{{"errcode":0,"errmsg":"ok","msgid":{msgid}}}"#
        )))
        .await;
        assert_eq!(result.unwrap(), msgid);
    }
}

#[tokio::test]
async fn private_templates_come_with_their_placeholder_keys() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/cgi-bin/template/get_all_private_template"))
        .and(query_param("access_token", TOKEN))
        .respond_with(json_body(
            r#"{"template_list":[
                {"template_id":"tpl-A","title":"领取奖金提醒","primary_industry":"IT科技",
                 "deputy_industry":"互联网|电子商务",
                 "content":"{{result.DATA}}\n\n领奖金额:{{withdrawMoney.DATA}}\n领奖  时间:{{withdrawTime.DATA}}",
                 "example":"您已提交领奖申请"},
                {"template_id":"tpl-B","title":"订单发货","content":"商品：{{thing1.DATA}}\n时间：{{time2.DATA}}"}]}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let templates = client_for(&server)
        .private_templates(&token())
        .await
        .unwrap();
    assert_eq!(templates.len(), 2);
    assert_eq!(templates[0].template_id, "tpl-A");
    assert_eq!(templates[0].title, "领取奖金提醒");
    assert_eq!(
        templates[0].keys,
        ["result", "withdrawMoney", "withdrawTime"]
    );
    assert_eq!(templates[1].keys, ["thing1", "time2"]);
}

#[test]
fn placeholders_are_parsed_out_of_template_content() {
    let content = "{{first.DATA}}\n领奖金额:{{withdrawMoney.DATA}}\n时间：{{time2.DATA}}{{first.DATA}}{{bad}}";
    assert_eq!(template_keys(content), ["first", "withdrawMoney", "time2"]);
}

#[test]
fn tokens_never_print() {
    let t = AccessToken::new("SECRET-TOKEN");
    assert_eq!(format!("{t:?}"), "AccessToken(REDACTED)");
}

// ---------------------------------------------------------------------------------------------
// Errcodes

#[tokio::test]
async fn every_errcode_lands_in_its_class() {
    use ErrClass::*;
    use PermanentKind::*;
    let cases: &[(i64, ErrClass)] = &[
        (40001, TokenInvalid),
        (40014, TokenInvalid),
        (42001, TokenInvalid),
        (-1, Transient),
        (45011, Transient),
        (43117, Transient),
        (45009, QuotaExhausted),
        (40003, Permanent(Recipient)),
        (43004, Permanent(Recipient)),
        (43019, Permanent(Recipient)),
        (43101, Permanent(Recipient)),
        (40036, Permanent(Payload)),
        (40037, Permanent(Payload)),
        (40165, Permanent(Payload)),
        (40249, Permanent(Content)),
        (43116, Permanent(Payload)),
        (47003, Permanent(Payload)),
        (47001, Permanent(Payload)),
        (48001, AccountBlocked),
        (48004, AccountBlocked),
        (40013, AccountBlocked),
        (40164, AccountBlocked),
        (89503, AccountBlocked),
        (50002, AccountBlocked),
        (40252, HeldForReview),
        (40241, RepeatedContent),
        (45109, AccountBlocked),
        (12345, Permanent(Other)),
    ];
    let server = MockServer::start().await;
    let client = client_for(&server);
    for &(code, class) in cases {
        server.reset().await;
        Mock::given(path("/cgi-bin/message/template/send"))
            .respond_with(json_body(&format!(
                r#"{{"errcode":{code},"errmsg":"some text rid: 65eac940-1a79c8dc-1be683b5"}}"#
            )))
            .mount(&server)
            .await;
        let err = send_minimal(&client).await.unwrap_err();
        assert_eq!(err.errcode(), Some(code));
        assert_eq!(err.class(), class, "errcode {code}");
    }
}

#[tokio::test]
async fn errcode_40001_on_a_token_endpoint_means_a_wrong_secret() {
    let server = MockServer::start().await;
    Mock::given(path("/cgi-bin/token"))
        .respond_with(json_body(
            r#"{"errcode":40001,"errmsg":"invalid credential, access_token is invalid or not latest"}"#,
        ))
        .mount(&server)
        .await;
    Mock::given(path("/cgi-bin/stable_token"))
        .respond_with(json_body(
            r#"{"errcode":40125,"errmsg":"invalid appsecret"}"#,
        ))
        .mount(&server)
        .await;
    let client = client_for(&server);
    let classic = client.classic_token(&appid(), &secret()).await.unwrap_err();
    assert_eq!(classic.class(), ErrClass::AccountBlocked);
    let stable = client
        .stable_token(&appid(), &secret(), false)
        .await
        .unwrap_err();
    assert_eq!(stable.class(), ErrClass::AccountBlocked);
}

#[tokio::test]
async fn errcode_given_as_a_string_is_understood() {
    let (_server, result) = send_answering(json_body(
        r#"{"errcode":"45009","errmsg":"reach max api daily quota limit"}"#,
    ))
    .await;
    let err = result.unwrap_err();
    assert_eq!(err.errcode(), Some(45009));
    assert_eq!(err.class(), ErrClass::QuotaExhausted);
    let (_server, result) =
        send_answering(json_body(r#"{"errcode":"0","errmsg":"ok","msgid":7}"#)).await;
    assert_eq!(result.unwrap(), 7);
}

#[tokio::test]
async fn the_rid_of_an_errmsg_is_kept_for_wechat_support() {
    let (_server, result) = send_answering(json_body(
        r#"{"errcode":-1,"errmsg":"system error rid: 65eac940-1a79c8dc-1be683b5"}"#,
    ))
    .await;
    let err = result.unwrap_err();
    assert_eq!(err.rid(), Some("65eac940-1a79c8dc-1be683b5"));
    assert!(err.message().ends_with("rid: 65eac940-1a79c8dc-1be683b5"));
    assert!(err.to_string().contains("65eac940-1a79c8dc-1be683b5"));
    assert_eq!(err.class(), ErrClass::Transient);
}

// ---------------------------------------------------------------------------------------------
// Content types, bodies, statuses, transport

#[tokio::test]
async fn json_served_as_text_plain_or_text_html_is_read_as_json() {
    for mime in [
        "text/plain",
        "text/html; charset=gbk",
        "application/octet-stream",
    ] {
        let (_server, result) = send_answering(ResponseTemplate::new(200).set_body_raw(
            br#"{"errcode":43004,"errmsg":"require subscribe"}"#.to_vec(),
            mime,
        ))
        .await;
        let err = result.unwrap_err();
        assert_eq!(err.errcode(), Some(43004), "{mime}");
        assert_eq!(err.class(), ErrClass::Permanent(PermanentKind::Recipient));
        let (_server, result) = send_answering(
            ResponseTemplate::new(200)
                .set_body_raw(br#"{"errcode":0,"errmsg":"ok","msgid":42}"#.to_vec(), mime),
        )
        .await;
        assert_eq!(result.unwrap(), 42, "{mime}");
    }
}

#[tokio::test]
async fn an_empty_body_is_a_transient_transport_error() {
    let server = MockServer::start().await;
    Mock::given(path("/cgi-bin/token"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(Vec::new(), "text/html; charset=gbk"))
        .mount(&server)
        .await;
    let err = client_for(&server)
        .classic_token(&appid(), &secret())
        .await
        .unwrap_err();
    assert!(matches!(err, WechatError::Transport { .. }), "{err:?}");
    assert_eq!(err.class(), ErrClass::Transient);
}

#[tokio::test]
async fn a_non_json_body_is_a_transient_transport_error() {
    for body in [
        "<html><body>502 Bad Gateway</body></html>",
        "<xml><a>1</a></xml>",
        "ok",
    ] {
        let (_server, result) = send_answering(
            ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "text/html"),
        )
        .await;
        let err = result.unwrap_err();
        assert!(
            matches!(err, WechatError::Transport { .. }),
            "{body}: {err:?}"
        );
        assert_eq!(err.class(), ErrClass::Transient);
    }
}

#[tokio::test]
async fn a_success_without_the_expected_fields_is_a_transport_error() {
    let (_server, result) = send_answering(json_body(r#"{"errcode":0,"errmsg":"ok"}"#)).await;
    let err = result.unwrap_err();
    assert!(matches!(err, WechatError::Transport { .. }), "{err:?}");
}

#[tokio::test]
async fn http_5xx_is_transient_even_with_an_errcode_body() {
    for status in [500, 502, 503] {
        let (_server, result) = send_answering(
            ResponseTemplate::new(status).set_body_string(r#"{"errcode":40003,"errmsg":"x"}"#),
        )
        .await;
        let err = result.unwrap_err();
        assert!(
            matches!(err, WechatError::Transport { .. }),
            "{status}: {err:?}"
        );
        assert_eq!(err.class(), ErrClass::Transient, "{status}");
        assert!(err.to_string().contains(&status.to_string()), "{err}");
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed_but_is_a_transient_transport_error() {
    let server = MockServer::start().await;
    Mock::given(path("/elsewhere"))
        .respond_with(json_body(r#"{"errcode":0,"errmsg":"ok","msgid":1}"#))
        .expect(0)
        .mount(&server)
        .await;
    let (_server, result) = send_answering(
        ResponseTemplate::new(302).insert_header("location", format!("{}/elsewhere", server.uri())),
    )
    .await;
    let err = result.unwrap_err();
    assert!(matches!(err, WechatError::Transport { .. }), "{err:?}");
    assert_eq!(err.class(), ErrClass::Transient);
    assert!(err.to_string().contains("302"), "{err}");
}

#[tokio::test]
async fn a_timeout_is_transient() {
    let server = MockServer::start().await;
    Mock::given(path("/cgi-bin/message/template/send"))
        .respond_with(
            json_body(r#"{"errcode":0,"errmsg":"ok","msgid":1}"#).set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let client = client_with_timeout(&server.uri(), Duration::from_millis(200));
    let started = std::time::Instant::now();
    let err = send_minimal(&client).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout applied"
    );
    assert!(matches!(err, WechatError::Transport { .. }), "{err:?}");
    assert_eq!(err.class(), ErrClass::Transient);
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let port = closed_port();
    let client = client_with_timeout(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2));
    let err = send_minimal(&client).await.unwrap_err();
    assert!(matches!(err, WechatError::Transport { .. }), "{err:?}");
    assert_eq!(err.class(), ErrClass::Transient);
}

#[tokio::test]
async fn a_base_url_with_a_path_prefix_is_kept() {
    let server = MockServer::start().await;
    Mock::given(path("/wechat/cgi-bin/user/get"))
        .respond_with(json_body(r#"{"total":0,"count":0}"#))
        .expect(1)
        .mount(&server)
        .await;
    let client = client_with_timeout(&format!("{}/wechat/", server.uri()), Duration::from_secs(5));
    client.user_get(&token(), None).await.unwrap();
}

/// A local port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
