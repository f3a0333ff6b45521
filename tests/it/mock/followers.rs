//! `user/get` paging and its three end-of-list forms, `user/info`, `user/info/batchget`.

use serde_json::{Value, json};
use wxnotify_sandbox::mock_wechat::{EndOfList, MockConfig, mp_openid, oa_openid};

use super::support::Fake;

const USER_GET: &str = "/cgi-bin/user/get";

/// 10 people, person 4 and 9 unfollowed (every 5th), pages of 4: followers 0-3, 5-8.
fn small(end_of_list: EndOfList) -> MockConfig {
    MockConfig {
        followers: 10,
        unsubscribed_every: 5,
        page_size: 4,
        end_of_list,
        ..MockConfig::default()
    }
}

async fn page(fake: &Fake, token: &str, next: Option<&str>) -> Value {
    let extra: Vec<(&str, &str)> = next.map(|n| ("next_openid", n)).into_iter().collect();
    fake.get_with(token, USER_GET, &extra).await.assert_ok()
}

fn openids(range: impl IntoIterator<Item = u64>) -> Value {
    json!({ "openid": range.into_iter().map(oa_openid).collect::<Vec<_>>() })
}

#[tokio::test]
async fn user_get_pages_in_index_order_and_by_default_ends_with_a_page_without_data() {
    let fake = Fake::start(small(EndOfList::NoData)).await;
    let token = fake.oa_token().await;
    let first = fake.get_with(&token, USER_GET, &[]).await;
    assert!(
        first
            .text
            .starts_with(r#"{"total":8,"count":4,"data":{"openid":["#)
    );
    let first = first.assert_ok();
    assert_eq!(first["data"], openids([0, 1, 2, 3]));
    assert_eq!(first["next_openid"], oa_openid(3));
    let second = page(&fake, &token, Some(&oa_openid(3))).await;
    assert_eq!(second["data"], openids([5, 6, 7, 8]));
    assert_eq!(
        second["next_openid"],
        oa_openid(8),
        "the last data page names a next"
    );
    let end = page(&fake, &token, Some(&oa_openid(8))).await;
    assert_eq!(end, json!({"total": 8, "count": 0, "next_openid": ""}));
}

#[tokio::test]
async fn user_get_can_end_with_an_empty_next_openid_on_the_last_data_page() {
    let fake = Fake::start(small(EndOfList::EmptyNextOpenid)).await;
    let token = fake.oa_token().await;
    page(&fake, &token, None).await;
    let last = page(&fake, &token, Some(&oa_openid(3))).await;
    assert_eq!(last["count"], 4);
    assert_eq!(last["data"], openids([5, 6, 7, 8]));
    assert_eq!(last["next_openid"], "");
}

#[tokio::test]
async fn user_get_can_end_with_a_zero_count_page() {
    let fake = Fake::start(small(EndOfList::ZeroCount)).await;
    let token = fake.oa_token().await;
    let last = page(&fake, &token, Some(&oa_openid(3))).await;
    assert_eq!(last["next_openid"], oa_openid(8));
    let end = page(&fake, &token, Some(&oa_openid(8))).await;
    let expected =
        json!({"total": 8, "count": 0, "data": {"openid": []}, "next_openid": oa_openid(8)});
    assert_eq!(end, expected);
}

#[tokio::test]
async fn a_million_followers_are_paged_cheaply() {
    let cfg = MockConfig {
        followers: 1_000_000,
        ..MockConfig::default()
    };
    let fake = Fake::start(cfg).await;
    let token = fake.oa_token().await;
    let started = std::time::Instant::now();
    let first = page(&fake, &token, None).await;
    assert_eq!(first["total"], 950_000, "every 20th unfollowed");
    assert_eq!(first["count"], 10_000);
    // 10,000 followers skip 526 unfollowed people: the page ends at person 10,525.
    assert_eq!(first["next_openid"], oa_openid(10_525));
    let deep = page(&fake, &token, Some(&oa_openid(989_999))).await;
    assert_eq!(deep["count"], 9_500);
    assert_eq!(deep["data"]["openid"][0], oa_openid(990_000));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn user_get_refuses_a_next_openid_that_is_not_a_follower_openid() {
    let fake = Fake::start(small(EndOfList::NoData)).await;
    let token = fake.oa_token().await;
    let extra = [("next_openid", "oSomebodyElse")];
    fake.get_with(&token, USER_GET, &extra)
        .await
        .assert_err(40003);
}

#[tokio::test]
async fn user_info_describes_followers_unfollowers_and_people_without_unionid() {
    // Every 3rd person has no unionid (2, 5, …), every 20th unfollowed (19, 39, 59, …).
    let cfg = MockConfig {
        no_unionid_every: 3,
        ..MockConfig::default()
    };
    let fake = Fake::start(cfg).await;
    let token = fake.oa_token().await;
    let info = |person: u64| {
        let (fake, token) = (&fake, token.clone());
        async move {
            let openid = oa_openid(person);
            let extra = [("openid", openid.as_str()), ("lang", "zh_CN")];
            fake.get_with(&token, "/cgi-bin/user/info", &extra).await
        }
    };
    let follower = info(0).await;
    assert!(
        follower
            .text
            .starts_with(r#"{"subscribe":1,"openid":"oMockOA"#)
    );
    let v = follower.assert_ok();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let expected = [
        "subscribe",
        "openid",
        "language",
        "subscribe_time",
        "unionid",
        "remark",
        "groupid",
        "tagid_list",
        "subscribe_scene",
        "qr_scene",
        "qr_scene_str",
    ];
    assert_eq!(sorted(keys), sorted(expected.to_vec()));
    assert_eq!(v["unionid"], "oMockUN000000000000000000000");
    assert!(v["subscribe_time"].as_i64().unwrap() > 1_400_000_000);
    let no_union = info(2).await.assert_ok();
    assert!(no_union.get("unionid").is_none() && no_union["subscribe"] == 1);
    let gone = info(19).await.assert_ok();
    let union19 = wxnotify_sandbox::mock_wechat::unionid(19, fake.mock.config()).unwrap();
    assert_eq!(
        gone,
        json!({"subscribe": 0, "openid": oa_openid(19), "unionid": union19})
    );
    let gone_without_union = info(59).await.assert_ok();
    assert_eq!(
        gone_without_union,
        json!({"subscribe": 0, "openid": oa_openid(59)})
    );
    let extra = [("openid", mp_openid(0))];
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let path = "/cgi-bin/user/info";
    fake.get_with(&token, path, &extra).await.assert_err(40003);
    info(1000).await.assert_err(40003);
}

fn sorted(mut v: Vec<&str>) -> Vec<&str> {
    v.sort_unstable();
    v
}

#[tokio::test]
async fn batchget_answers_in_order_and_refuses_more_than_100_or_non_json() {
    let fake = Fake::default().await;
    let token = fake.oa_token().await;
    let query = [("access_token", token.as_str())];
    let path = "/cgi-bin/user/info/batchget";
    let list = |people: std::ops::Range<u64>| {
        let users: Vec<Value> = people
            .map(|i| json!({"openid": oa_openid(i), "lang": "zh_CN"}))
            .collect();
        json!({ "user_list": users }).to_string()
    };
    let v = fake.post(path, &query, &list(18..21)).await.assert_ok();
    let infos = v["user_info_list"].as_array().unwrap();
    assert_eq!(infos.len(), 3);
    assert_eq!(infos[1], json!({"subscribe": 0, "openid": oa_openid(19)}));
    assert_eq!(infos[2]["subscribe"], 1);
    fake.post(path, &query, &list(0..100)).await.assert_ok();
    fake.post(path, &query, &list(0..101))
        .await
        .assert_err(40032);
    fake.post(path, &query, &list(0..0)).await.assert_err(40032);
    fake.post(path, &query, "user_list=x")
        .await
        .assert_err(47001);
}

#[tokio::test]
async fn unfollowing_and_following_again_change_the_list_and_the_info() {
    let fake = Fake::start(small(EndOfList::NoData)).await;
    let token = fake.oa_token().await;
    fake.mock.unsubscribe(0);
    fake.mock.subscribe(4);
    let first = page(&fake, &token, None).await;
    assert_eq!(first["total"], 8);
    assert_eq!(first["data"], openids([1, 2, 3, 4]));
    let extra = [("openid", oa_openid(4))];
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let info = fake
        .get_with(&token, "/cgi-bin/user/info", &extra)
        .await
        .assert_ok();
    let now = chrono::Utc::now().timestamp();
    assert!((now - info["subscribe_time"].as_i64().unwrap()).abs() < 60);
}
