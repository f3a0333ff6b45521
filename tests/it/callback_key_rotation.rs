//! Changing the EncodingAESKey: with `WXNOTIFY_ENCODING_AES_KEY_PREVIOUS` set, a safe-mode push
//! the current key cannot open is opened with the previous one (and counted under
//! `key="previous"`, so operators know when it can go); a push neither key opens is refused.

use url::Url;
use wxnotify_sandbox::mock_wechat::{self, MockConfig, MockEvent, PushFormat, PushMode};

use crate::callback_json::counter;
use crate::users_support::{AES_KEY, CALLBACK_TOKEN, World};

/// The key the console shows after the change; the test app's usual key is the previous one.
const NEW_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

fn sealed_with(key: &str) -> PushMode {
    PushMode::Safe {
        token: CALLBACK_TOKEN.into(),
        encoding_aes_key: key.into(),
    }
}

async fn rotated_world() -> World {
    World::with_vars(
        MockConfig {
            followers: 10,
            ..MockConfig::default()
        },
        &[
            ("WXNOTIFY_ENCODING_AES_KEY", NEW_KEY),
            ("WXNOTIFY_ENCODING_AES_KEY_PREVIOUS", AES_KEY),
        ],
    )
    .await
}

fn callback(base: &Url) -> Url {
    base.join("wechat/callback").unwrap()
}

async fn subscribed(world: &World, person: u64) -> Option<bool> {
    sqlx::query_scalar("SELECT subscribed FROM oa_followers WHERE oa_openid = $1")
        .bind(mock_wechat::oa_openid(person))
        .fetch_optional(&world.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_push_encrypted_with_the_previous_key_is_accepted_and_counted_under_previous() {
    let world = rotated_world().await;
    world.sync(&World::fast_options()).await.unwrap();
    let (base, _) = world.serve().await;
    // WeChat still encrypts with the old key (XML and JSON), then with the new one.
    for (person, key, format) in [
        (1, AES_KEY, PushFormat::Xml),
        (2, AES_KEY, PushFormat::Json),
        (3, NEW_KEY, PushFormat::Json),
    ] {
        let push = world
            .mock
            .event(&MockEvent::Unsubscribe { person })
            .unwrap();
        let answer = world
            .mock
            .deliver_as(&callback(&base), &push, &sealed_with(key), format)
            .await
            .unwrap();
        // No passive reply: the empty answer, which needs no encryption with either key.
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, ""),
            "person {person}"
        );
        assert_eq!(
            subscribed(&world, person).await,
            Some(false),
            "person {person}"
        );
    }
    let decrypted = |key: &'static str| {
        let base = base.clone();
        async move {
            counter(
                &base,
                "wxnotify_callback_decrypted_total",
                &[("app", "default"), ("key", key)],
            )
            .await
        }
    };
    assert!(decrypted("previous").await >= 2.0);
    assert!(decrypted("current").await >= 1.0);
}

#[tokio::test]
async fn a_push_encrypted_with_neither_key_is_refused_and_stores_nothing() {
    let world = rotated_world().await;
    world.sync(&World::fast_options()).await.unwrap();
    let (base, _) = world.serve().await;
    let push = world
        .mock
        .event(&MockEvent::Unsubscribe { person: 4 })
        .unwrap();
    for format in [PushFormat::Xml, PushFormat::Json] {
        let answer = world
            .mock
            .deliver_as(
                &callback(&base),
                &push,
                &sealed_with(&"B".repeat(43)),
                format,
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 400, "{}", answer.body);
    }
    assert_eq!(subscribed(&world, 4).await, Some(true));
    assert_eq!(world.count("SELECT count(*) FROM callback_events").await, 0);
    assert!(
        counter(
            &base,
            "wxnotify_callback_refused_total",
            &[("app", "default"), ("reason", "undecryptable")]
        )
        .await
            >= 2.0
    );

    // Once the previous key is removed, its pushes are refused as well.
    let after = World::with_vars(
        MockConfig {
            followers: 10,
            ..MockConfig::default()
        },
        &[("WXNOTIFY_ENCODING_AES_KEY", NEW_KEY)],
    )
    .await;
    let (base, _) = after.serve().await;
    let push = after
        .mock
        .event(&MockEvent::Unsubscribe { person: 4 })
        .unwrap();
    let answer = after
        .mock
        .deliver(&callback(&base), &push, &sealed_with(AES_KEY))
        .await
        .unwrap();
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(after.count("SELECT count(*) FROM callback_events").await, 0);
}
