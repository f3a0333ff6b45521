//! Hostile clients: an API key over its request rate gets 429 with `Retry-After` while another
//! key is served; an address guessing console tokens is locked out (429) after five failures,
//! even when it then presents the right token.

use std::num::NonZeroU32;

use wxnotify_api::producer::api_keys;
use wxnotify_core::domain::AppName;

use crate::admin_support::{ADMIN_TOKEN, serve_admin};
use crate::producer_support::{Api, job_body};
use crate::system::System;

#[tokio::test]
async fn an_api_key_over_its_rate_gets_429_with_retry_after_and_another_key_is_still_served() {
    let sys = System::seeded(5).await;
    let amqp = sys.settings.amqp_url.clone();
    let topology = sys.topology.clone();
    let api = Api::serve_with_key_rate(sys, amqp, topology, &[], NonZeroU32::new(3)).await;
    let other = api_keys::create(&api.sys.db.pool, &AppName::default_app(), Some("other"))
        .await
        .unwrap();
    // Twelve requests at once: a burst of one second's worth (3) is served, and the rest of
    // what arrives before the bucket refills is refused.
    let bodies: Vec<_> = (0..12).map(|i| job_body(&format!("rate-{i}"), 1)).collect();
    let answers = futures::future::join_all(
        bodies
            .iter()
            .map(|b| api.post("v1/notifications", Some(&api.key), b)),
    )
    .await;
    let mut statuses = Vec::new();
    for a in &answers {
        statuses.push(a.status);
        if a.status == 429 {
            assert_eq!(a.body["code"], "rate_limited", "{}", a.body);
            let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=2).contains(&retry), "Retry-After {retry}");
        } else {
            assert_eq!(a.status, 202, "{}", a.body);
        }
    }
    let served = statuses.iter().filter(|s| **s == 202).count();
    assert!((3..12).contains(&served), "{statuses:?}");
    // Nothing refused was accepted: only the served requests have a ledger row.
    let accepted = served as i64;
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM api_notifications WHERE job_id LIKE 'rate-%'")
            .fetch_one(&api.sys.db.pool)
            .await
            .unwrap();
    assert_eq!(rows, accepted);
    // Another key of the same app has its own bucket.
    let a = api
        .post(
            "v1/notifications",
            Some(&other.key),
            &job_body("rate-other", 2),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    // The key's bucket refills.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let a = api
        .post(
            "v1/notifications",
            Some(&api.key),
            &job_body("rate-later", 3),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
}

/// The console's login form: its CSRF cookie and token, then a POST of `token`.
pub async fn console_login(
    http: &reqwest::Client,
    base: &url::Url,
    token: &str,
) -> reqwest::Response {
    console_login_from(http, base, token, None).await
}

/// [`console_login`] with the POST saying it came from `client` (`X-Forwarded-For`).
pub async fn console_login_from(
    http: &reqwest::Client,
    base: &url::Url,
    token: &str,
    client: Option<&str>,
) -> reqwest::Response {
    let page = http
        .get(base.join("admin/login").unwrap())
        .send()
        .await
        .unwrap();
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("wxn_login="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = cookie.trim_start_matches("wxn_login=").to_owned();
    let mut post = http.post(base.join("admin/login").unwrap());
    if let Some(client) = client {
        post = post.header("x-forwarded-for", client);
    }
    post.header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([("csrf", csrf.as_str()), ("token", token)])
                .finish(),
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn console_logins_after_five_failures_from_one_address_are_refused_429_even_with_the_token() {
    let sys = System::seeded(1).await;
    let (base, _state) = serve_admin(&sys, Some(ADMIN_TOKEN), None).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for i in 0..5 {
        let r = console_login(&http, &base, &format!("guess-{i}")).await;
        assert_eq!(r.status(), 401, "failure {i}");
    }
    let r = console_login(&http, &base, ADMIN_TOKEN).await;
    assert_eq!(
        r.status(),
        429,
        "locked: the right token is not even checked"
    );
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((50..=60).contains(&retry), "Retry-After {retry}");
    assert!(
        !r.headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().starts_with("wxn_session=")),
        "no session"
    );
    let body = r.text().await.unwrap();
    assert!(body.contains("Too many failed logins"), "{body}");
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM admin_sessions")
        .fetch_one(&sys.db.pool)
        .await
        .unwrap();
    assert_eq!(sessions, 0);
}

#[tokio::test]
async fn console_login_with_the_token_after_a_few_failures_works() {
    let sys = System::seeded(1).await;
    let (base, _state) = serve_admin(&sys, Some(ADMIN_TOKEN), None).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for i in 0..4 {
        assert_eq!(
            console_login(&http, &base, &format!("typo-{i}"))
                .await
                .status(),
            401
        );
    }
    let r = console_login(&http, &base, ADMIN_TOKEN).await;
    assert_eq!(r.status(), 303, "the fifth try, with the token, logs in");
}
