//! `message/template/send`: the success body, every refusal, dedupe, the templates list.

use serde_json::json;
use wxnotify_sandbox::mock_wechat::{
    FIRST_MSGID, MOCK_MP_APPID, MockConfig, MockTemplate, mp_openid, oa_openid,
};

use super::support::{Fake, raw_msgid, shipped, with_id};

#[tokio::test]
async fn an_accepted_send_answers_errcode_0_and_a_msgid_above_2_pow_53() {
    let fake = Fake::default().await;
    let token = fake.oa_token().await;
    let raw = fake.send(&token, &shipped(0)).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.content_type.as_deref(), Some("text/plain"));
    assert!(
        raw.text
            .starts_with(r#"{"errcode":0,"errmsg":"ok","msgid":"#),
        "{}",
        raw.text
    );
    let msgid = raw_msgid(&raw.text);
    assert!(msgid > 1 << 53);
    assert_eq!(msgid, FIRST_MSGID);
    let sends = fake.mock.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].msgid, msgid);
    assert_eq!(sends[0].touser, oa_openid(0));
    assert_eq!(sends[0].data["thing1"]["value"], "订单已发货");
    assert_eq!(
        sends[0].miniprogram.as_ref().unwrap()["appid"],
        MOCK_MP_APPID
    );
    let next = raw_msgid(&fake.send(&token, &shipped(1)).await.text);
    assert_eq!(next, msgid + 1);
}

#[tokio::test]
async fn sends_to_unfollowed_or_unknown_people_are_43004_and_40003() {
    let fake = Fake::default().await;
    let token = fake.oa_token().await;
    let msg = fake.send(&token, &shipped(19)).await.assert_err(43004);
    assert!(msg.starts_with("require subscribe rid: "), "{msg}");
    let mut to_mp = shipped(0);
    to_mp["touser"] = json!(mp_openid(0));
    fake.send(&token, &to_mp).await.assert_err(40003);
    fake.mock.unsubscribe(0);
    fake.send(&token, &shipped(0)).await.assert_err(43004);
    fake.mock.subscribe(0);
    fake.send(&token, &shipped(0)).await.json();
    assert_eq!(fake.mock.stats().sends_accepted, 1);
}

#[tokio::test]
async fn bad_templates_data_and_pagepaths_are_40037_47003_and_40165() {
    let fake = Fake::default().await;
    let token = fake.oa_token().await;
    let mut unknown = shipped(0);
    unknown["template_id"] = json!("TPL_NOPE");
    fake.send(&token, &unknown).await.assert_err(40037);
    let mut missing = shipped(0);
    missing["data"]["time2"] = json!({"value": ""});
    let msg = fake.send(&token, &missing).await.assert_err(47003);
    assert!(
        msg.starts_with("argument invalid! data.time2.value is empty rid: "),
        "{msg}"
    );
    let mut long = shipped(0);
    long["data"]["thing1"]["value"] = json!("这是一个超过二十个字符的非常非常长的商品名称啊");
    let msg = fake.send(&token, &long).await.assert_err(47003);
    assert!(
        msg.starts_with("argument invalid! data.thing1.value invalid rid: "),
        "{msg}"
    );
    let mut slash = shipped(0);
    slash["miniprogram"]["pagepath"] = json!("/pages/order/detail?id=1");
    fake.send(&token, &slash).await.assert_err(40165);
    let query = [("access_token", token.as_str())];
    let path = "/cgi-bin/message/template/send";
    fake.post(path, &query, "touser=x").await.assert_err(47001);
    assert!(fake.mock.sends().is_empty());
}

#[tokio::test]
async fn extra_data_keys_are_ignored_and_the_mp_token_is_refused() {
    let fake = Fake::default().await;
    let token = fake.oa_token().await;
    let mut extra = shipped(0);
    extra["data"]["remark"] = json!({"value": "legacy"});
    fake.send(&token, &extra).await.json();
    assert_eq!(fake.mock.stats().sends_accepted, 1);
    let mp = fake.mp_token().await;
    fake.send(&mp, &shipped(0)).await.assert_err(48001);
}

#[tokio::test]
async fn the_same_client_msg_id_to_the_same_person_is_not_sent_again() {
    let fake = Fake::default().await;
    let token = fake.oa_token().await;
    let first = raw_msgid(&fake.send(&token, &with_id(shipped(0), "job-1")).await.text);
    let again = raw_msgid(&fake.send(&token, &with_id(shipped(0), "job-1")).await.text);
    assert_eq!(first, again, "the original msgid comes back");
    let other = raw_msgid(&fake.send(&token, &with_id(shipped(1), "job-1")).await.text);
    assert_ne!(other, first, "another recipient is another message");
    let stats = fake.mock.stats();
    assert_eq!(stats.sends_accepted, 2);
    assert_eq!(stats.duplicate_sends_dropped, 1);
    assert_eq!(fake.mock.sends().len(), 2);
    assert_eq!(fake.mock.sends()[0].client_msg_id.as_deref(), Some("job-1"));
}

#[tokio::test]
async fn private_templates_list_historical_templates_and_not_category_ones_like_wechat() {
    let fake = Fake::default().await;
    let token = fake.oa_token().await;
    let path = "/cgi-bin/template/get_all_private_template";
    let v = fake.get_with(&token, path, &[]).await.assert_ok();
    assert_eq!(
        v["template_list"],
        json!([]),
        "the default templates are category templates"
    );
    fake.mock.add_template(MockTemplate::new(
        "TPL_OLD",
        "旧模板",
        &["first", "keyword1", "keyword2", "remark"],
    ));
    let v = fake.get_with(&token, path, &[]).await.assert_ok();
    let list = v["template_list"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["template_id"], "TPL_OLD");
    // Unlisted, the category templates are still known to sends.
    let sent = fake.send(&token, &shipped(0)).await.json();
    assert_eq!(sent["errcode"], 0, "{sent}");
}

#[tokio::test]
async fn private_templates_list_every_template_with_its_placeholders_on_request() {
    let fake = Fake::start(MockConfig {
        list_category_templates: true,
        ..MockConfig::default()
    })
    .await;
    let token = fake.oa_token().await;
    let path = "/cgi-bin/template/get_all_private_template";
    let v = fake.get_with(&token, path, &[]).await.assert_ok();
    let list = v["template_list"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["template_id"], "TPL_ORDER_SHIPPED");
    assert_eq!(
        list[0]["content"],
        "内容：{{thing1.DATA}}\n时间：{{time2.DATA}}"
    );
    let content = list[1]["content"].as_str().unwrap();
    for key in ["amount1", "thing2", "time3"] {
        assert!(
            content.contains(&format!("{{{{{key}.DATA}}}}")),
            "{content}"
        );
    }
    for field in ["title", "primary_industry", "deputy_industry", "example"] {
        assert!(list[0][field].is_string(), "{field}");
    }
}

#[tokio::test]
async fn concurrent_sends_with_one_client_msg_id_are_accepted_exactly_once() {
    let fake = Fake::default().await;
    let token = fake.oa_token().await;
    let body = with_id(shipped(3), "burst");
    let answers = futures::future::join_all((0..20).map(|_| fake.send(&token, &body))).await;
    let msgids: std::collections::HashSet<u64> =
        answers.iter().map(|raw| raw_msgid(&raw.text)).collect();
    assert_eq!(msgids.len(), 1, "{msgids:?}");
    let stats = fake.mock.stats();
    assert_eq!(
        (stats.sends_accepted, stats.duplicate_sends_dropped),
        (1, 19)
    );
}
