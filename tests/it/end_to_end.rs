//! The whole product in one story: a Mini Program user logs in, follows the OA, is notified by a
//! job addressed by their Mini Program openid, and WeChat's delivery receipt arrives.

use std::time::Duration;

use url::Url;
use wxnotify_core::domain::{OpenId, Recipient};
use wxnotify_core::wechat::client::ClientOptions;
use wxnotify_core::wechat::{TokenStore, WechatClient};
use wxnotify_sandbox::mock_wechat::{self, MockConfig, MockEvent, PushMode};
use wxnotify_worker::WorkerConfig;

use crate::system::{CALLBACK_TOKEN, System};
use crate::worker::job;

/// Serves `wxnotify serve`'s router for the system on 127.0.0.1:0.
async fn serve(sys: &System) -> Url {
    let client = WechatClient::new(sys.mock.base_url(), &ClientOptions::default()).unwrap();
    let tokens = TokenStore::new(sys.db.pool.clone(), client.clone(), &sys.settings.apps);
    let state = wxnotify_api::AppState::new(
        sys.db.pool.clone(),
        client,
        tokens,
        &sys.settings.apps,
        wxnotify_api::health::metrics_handle(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, wxnotify_api::router(state)).await });
    base
}

async fn eventually<F: AsyncFn() -> bool>(what: &str, check: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_user_logs_in_follows_is_notified_and_the_receipt_arrives() {
    let sys = System::new(
        MockConfig {
            followers: 10,
            ..MockConfig::default()
        },
        1000,
    )
    .await;
    let person = 3;
    sys.mock.unsubscribe(person); // not following yet
    let api = serve(&sys).await;
    let http = reqwest::Client::new();

    // 1. The Mini Program logs the user in.
    let login: serde_json::Value = http
        .post(api.join("/v1/miniprogram/login").unwrap())
        .json(&serde_json::json!({ "code": sys.mock.issue_login_code(person) }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(login["openid"], mock_wechat::mp_openid(person));
    assert_eq!(login["notifiable"], false, "not a follower yet");

    // 2. The user follows the OA: WeChat pushes `subscribe` to the callback.
    let mode = PushMode::Plain {
        token: CALLBACK_TOKEN.into(),
    };
    let callback = api.join("/wechat/callback").unwrap();
    let answer = sys
        .mock
        .push_event(&callback, &MockEvent::Subscribe { person }, &mode)
        .await
        .unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    eventually("the follower and their unionid are known", async || {
        let row: Option<(bool, Option<String>)> =
            sqlx::query_as("SELECT subscribed, unionid FROM oa_followers WHERE oa_openid = $1")
                .bind(mock_wechat::oa_openid(person))
                .fetch_optional(&sys.db.pool)
                .await
                .unwrap();
        row == Some((true, mock_wechat::unionid(person, &sys.mock_config)))
    })
    .await;

    // 3. A job addressed by the Mini Program openid reaches the OA openid.
    let j = job(Recipient::MpOpenid(
        OpenId::parse(mock_wechat::mp_openid(person)).unwrap(),
    ));
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(std::slice::from_ref(&j)).await;
    sys.wait_finished(1, Duration::from_secs(30)).await;
    worker.stop().await;
    assert_eq!(sys.state(&j.id).await.as_deref(), Some("sent"));
    let send = sys
        .mock
        .sends()
        .into_iter()
        .find(|s| s.client_msg_id.as_deref() == Some(j.id.as_str()))
        .unwrap();
    assert_eq!(send.touser, mock_wechat::oa_openid(person));

    // 4. WeChat reports the delivery; the receipt lands on the ledger row.
    let receipt = MockEvent::TemplateSendJobFinish {
        msgid: send.msgid,
        status: "success".into(),
    };
    let answer = sys
        .mock
        .push_event(&callback, &receipt, &mode)
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    eventually("the receipt is on the ledger", async || {
        let status: Option<String> =
            sqlx::query_scalar("SELECT receipt_status FROM deliveries WHERE job_id = $1")
                .bind(j.id.as_str())
                .fetch_one(&sys.db.pool)
                .await
                .unwrap();
        status.as_deref() == Some("success")
    })
    .await;
}
