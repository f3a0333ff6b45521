//! WeChat's rules in the fake, on the wire: `openapi/quota/get` and 45009, 40249 and
//! interception for configured words, `queryblocktmplmsg` paging, templates deleted at run time.

use serde_json::json;
use wxnotify_sandbox::mock_wechat::MockConfig;

use super::support::{Fake, Raw, shipped};

/// An answer with `"errcode":0` (template/send, quota/get and queryblocktmplmsg carry it).
#[track_caller]
fn ok0(raw: Raw) -> serde_json::Value {
    let v = raw.json();
    assert_eq!(v["errcode"], 0, "{}", raw.text);
    v
}

fn with_thing(person: u64, thing: &str) -> serde_json::Value {
    let mut body = shipped(person);
    body["data"]["thing1"] = json!({ "value": thing });
    body
}

#[tokio::test]
async fn quota_get_counts_template_sends_and_refuses_unknown_or_sns_paths() {
    let fake = Fake::start(MockConfig {
        daily_quota: 2,
        ..MockConfig::default()
    })
    .await;
    let token = fake.oa_token().await;
    let quota = |path: &'static str| {
        let token = token.clone();
        let fake = &fake;
        async move {
            fake.post(
                "/cgi-bin/openapi/quota/get",
                &[("access_token", &token)],
                &json!({ "cgi_path": path }).to_string(),
            )
            .await
        }
    };
    ok0(fake.send(&token, &shipped(0)).await);
    let answer = ok0(quota("/cgi-bin/message/template/send").await);
    assert_eq!(
        answer["quota"],
        json!({"daily_limit": 2, "used": 1, "remain": 1})
    );
    ok0(fake.send(&token, &shipped(1)).await);
    let msg = fake.send(&token, &shipped(2)).await.assert_err(45009);
    assert!(msg.starts_with("reach max api daily quota limit"), "{msg}");
    quota("/cgi-bin/nope").await.assert_err(76021);
    quota("/sns/jscode2session").await.assert_err(76022);
}

#[tokio::test]
async fn a_blocked_word_is_40249_and_a_held_one_is_40252_then_listed_once_the_review_blocks_it() {
    let fake = Fake::start(MockConfig {
        blocked_words: vec!["违禁".into()],
        review_blocked_words: vec!["促销".into()],
        review_words: vec!["复审".into()],
        review_delay: std::time::Duration::from_millis(300),
        ..MockConfig::default()
    })
    .await;
    let token = fake.oa_token().await;
    fake.send(&token, &with_thing(0, "违禁品"))
        .await
        .assert_err(40249);
    for person in 0..3 {
        fake.send(&token, &with_thing(person, "大促销"))
            .await
            .assert_err(40252);
    }
    fake.send(&token, &with_thing(5, "复审中"))
        .await
        .assert_err(40252);
    ok0(fake.send(&token, &shipped(4)).await);
    assert_eq!(
        fake.mock.stats().sends_accepted,
        1,
        "a held message has no msgid"
    );
    let page = |largest_id: i64, limit: u32| {
        let token = token.clone();
        let fake = &fake;
        async move {
            ok0(fake
                .post(
                    "/wxa/sec/queryblocktmplmsg",
                    &[("access_token", &token)],
                    &json!({"tmpl_msg_id": "TPL_ORDER_SHIPPED", "largest_id": largest_id, "limit": limit})
                        .to_string(),
                )
                .await)
        }
    };
    // Before the review decides, nothing is listed.
    let undecided = page(0, 100).await;
    assert_eq!(undecided["msginfo"].as_array().unwrap().len(), 0);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let first = page(0, 2).await;
    let records = first["msginfo"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[0]["openid"],
        wxnotify_sandbox::mock_wechat::oa_openid(0)
    );
    let last = records[1]["id"].as_i64().unwrap();
    let rest = page(last, 100).await;
    assert_eq!(
        rest["msginfo"].as_array().unwrap().len(),
        1,
        "the message the review let through is not listed"
    );
    let held = fake.mock.held();
    assert_eq!(held.len(), 4);
    assert_eq!(held.iter().filter(|m| m.blocked).count(), 3);
}

#[tokio::test]
async fn a_template_deleted_over_http_answers_40037_and_leaves_the_list() {
    let fake = Fake::start(MockConfig {
        list_category_templates: true,
        ..MockConfig::default()
    })
    .await;
    let token = fake.oa_token().await;
    let url = format!("{}mock/templates/TPL_ORDER_SHIPPED", fake.mock.base_url());
    let deleted = reqwest::Client::new().delete(&url).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    fake.send(&token, &shipped(0)).await.assert_err(40037);
    let list = fake
        .get_with(&token, "/cgi-bin/template/get_all_private_template", &[])
        .await
        .assert_ok();
    assert_eq!(list["template_list"].as_array().unwrap().len(), 1);
    let again = reqwest::Client::new().delete(&url).send().await.unwrap();
    assert_eq!(again.status(), 404);
    let added = fake
        .post(
            "/mock/templates",
            &[],
            r#"{"id":"TPL_ORDER_SHIPPED","title":"订单发货提醒","keys":["thing1","time2"]}"#,
        )
        .await;
    assert_eq!(added.status, 204);
    ok0(fake.send(&token, &shipped(0)).await);
}
