//! Real WeChat's answers that are neither "sent" nor "dead": messages held for content review
//! (40252) followed to their verdict, a repeated message (40241), and account-level refusals
//! (40164 on the token endpoint, 50002 on sends) that pause the app instead of killing jobs.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use wxnotify_api::producer::notification_store::{self, State};
use wxnotify_core::domain::{AppName, Job, OpenId, Recipient, TemplateData};
use wxnotify_core::wechat::client::ClientOptions;
use wxnotify_core::wechat::{TokenStore, WechatClient};
use wxnotify_sandbox::mock_wechat::{self, Endpoint, Fault, FaultRule, MockConfig};
use wxnotify_services::reviews::ReviewOptions;
use wxnotify_worker::WorkerConfig;

use crate::system::System;

const WAIT: Duration = Duration::from_secs(30);

fn shipped(person: u64, thing1: &str) -> Job {
    Job::new(
        Recipient::MpOpenid(OpenId::parse(mock_wechat::mp_openid(person)).unwrap()),
        "TPL_ORDER_SHIPPED".parse().unwrap(),
        TemplateData::from_pairs(&[("thing1", thing1), ("time2", "2026-11-24 10:00")]).unwrap(),
    )
}

async fn seeded_with(cfg: MockConfig, people: u64) -> System {
    let sys = System::new(
        MockConfig {
            followers: people,
            ..cfg
        },
        1000,
    )
    .await;
    sys.seed_people(people).await;
    sys
}

fn wechat(sys: &System) -> (TokenStore, WechatClient) {
    let client = WechatClient::new(
        sys.settings.wechat_api_base.clone(),
        &ClientOptions::default(),
    )
    .unwrap();
    let tokens = TokenStore::new(sys.db.pool.clone(), client.clone(), &sys.settings.apps);
    (tokens, client)
}

async fn api_state(sys: &System, job: &Job) -> State {
    let app = AppName::default_app();
    let statuses = notification_store::statuses(&sys.db.pool, &app, &[job.id.as_str()])
        .await
        .unwrap();
    statuses[0].state
}

async fn dead_letters(sys: &System) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(&sys.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_message_held_for_review_is_never_resent_and_ends_blocked_or_delivered_after_the_window()
{
    let sys = seeded_with(
        MockConfig {
            review_words: vec!["复审".into()],
            review_blocked_words: vec!["促销".into()],
            review_delay: Duration::from_millis(500),
            ..MockConfig::default()
        },
        10,
    )
    .await;
    let passes = shipped(1, "复审中的通知");
    let blocked = shipped(2, "双十一大促销");
    let fine = shipped(3, "订单已发货");
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(&[passes.clone(), blocked.clone(), fine.clone()])
        .await;
    sys.wait_finished(3, WAIT).await;
    assert_eq!(sys.state(&passes.id).await.as_deref(), Some("held"));
    assert_eq!(sys.state(&blocked.id).await.as_deref(), Some("held"));
    assert_eq!(sys.state(&fine.id).await.as_deref(), Some("sent"));
    assert_eq!(api_state(&sys, &passes).await, State::Held);
    assert_eq!(sys.mock.held().len(), 2, "WeChat held two messages");

    // A held job arriving again is a duplicate: WeChat is not asked twice.
    sys.publish(std::slice::from_ref(&passes)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = worker.stop().await;
    assert_eq!(stats.held, 2);
    assert!(stats.duplicate >= 1, "{stats:?}");
    assert_eq!(
        sys.mock.held().len(),
        2,
        "a held message is never sent again"
    );
    assert_eq!(sys.mock.stats().calls_to(Endpoint::TemplateSend), 3);

    // Within the review window: the blocked one ends as soon as WeChat lists it; the other
    // still waits for its verdict.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (tokens, client) = wechat(&sys);
    let app = AppName::default_app();
    let window = ReviewOptions {
        hold: Duration::from_secs(3600),
    };
    let report =
        wxnotify_services::reviews::reconcile_app(&sys.db.pool, &tokens, &client, &app, window)
            .await
            .unwrap();
    assert_eq!(
        (report.records, report.blocked, report.delivered),
        (1, 1, 0)
    );
    assert_eq!(sys.state(&blocked.id).await.as_deref(), Some("dead"));
    assert_eq!(sys.state(&passes.id).await.as_deref(), Some("held"));
    let (reason, errcode, source, has_job): (String, Option<i64>, String, bool) = sqlx::query_as(
        "SELECT reason, errcode, source, job IS NOT NULL FROM dead_letters WHERE job_id = $1",
    )
    .bind(blocked.id.as_str())
    .fetch_one(&sys.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (reason.as_str(), errcode, source.as_str(), has_job),
        ("content_blocked", Some(40252), "review", true)
    );

    // After the window: the one not blocked was delivered by WeChat: sent, without a msgid.
    let past = ReviewOptions {
        hold: Duration::from_millis(1),
    };
    let report =
        wxnotify_services::reviews::reconcile_app(&sys.db.pool, &tokens, &client, &app, past)
            .await
            .unwrap();
    assert_eq!(
        (report.records, report.blocked, report.delivered),
        (0, 0, 1)
    );
    let (state, msgid, held): (String, Option<i64>, bool) = sqlx::query_as(
        "SELECT state, msgid, held_at IS NOT NULL AND sent_at = held_at FROM deliveries WHERE job_id = $1",
    )
    .bind(passes.id.as_str())
    .fetch_one(&sys.db.pool)
    .await
    .unwrap();
    assert_eq!((state.as_str(), msgid, held), ("sent", None, true));
    assert_eq!(api_state(&sys, &passes).await, State::Sent);
    assert_eq!(dead_letters(&sys).await, 1);
}

#[tokio::test]
async fn a_40241_answer_ends_the_job_duplicate_with_wechats_message_and_it_is_not_resent() {
    let sys = seeded_with(
        MockConfig {
            repeat_window: Duration::from_secs(60),
            ..MockConfig::default()
        },
        10,
    )
    .await;
    let first = shipped(4, "订单已发货");
    let twin = shipped(4, "订单已发货");
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(std::slice::from_ref(&first)).await;
    sys.wait_finished(1, WAIT).await;
    sys.publish(std::slice::from_ref(&twin)).await;
    sys.wait_finished(2, WAIT).await;
    worker.stop().await;
    assert_eq!(sys.state(&first.id).await.as_deref(), Some("sent"));
    let (state, errcode, errmsg, attempts): (String, Option<i64>, Option<String>, i32) =
        sqlx::query_as(
            "SELECT state, last_errcode, last_errmsg, attempts FROM deliveries WHERE job_id = $1",
        )
        .bind(twin.id.as_str())
        .fetch_one(&sys.db.pool)
        .await
        .unwrap();
    assert_eq!(
        (state.as_str(), errcode, attempts),
        ("duplicate", Some(40241), 1)
    );
    assert!(errmsg.unwrap().contains("duplicate in 60 seconds"));
    assert_eq!(api_state(&sys, &twin).await, State::Duplicate);
    assert_eq!(sys.mock.stats().sends_accepted, 1);
    assert_eq!(sys.mock.stats().answers_with(40241), 1, "not sent again");
    assert_eq!(dead_letters(&sys).await, 0);
}

/// Waits until the default app is suspended with `errcode`; returns the pause reason.
async fn wait_suspended(sys: &System, errcode: i64) -> String {
    let deadline = Instant::now() + WAIT;
    let app = AppName::default_app();
    loop {
        let status = wxnotify_services::quota::status::app_statuses(
            &sys.db.pool,
            std::slice::from_ref(&app),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        if status[0].paused && status[0].pause_errcode == Some(errcode) {
            return status[0].pause_reason.clone().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the app was not suspended with {errcode}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Jobs to persons `0..n` (all of them follow).
fn jobs(n: u64) -> Vec<Job> {
    (0..n).map(|i| shipped(i, "订单已发货")).collect()
}

/// The account-level scenario: WeChat refuses the app with `errcode` on `endpoint`; jobs wait,
/// nothing dies; once WeChat answers normally every job is sent once, with no operator action.
async fn refused_then_recovered(endpoint: Endpoint, errcode: i64, fix_words: &str) {
    // Every 19th person unfollowed in the default mix: seed people who all follow.
    let sys = seeded_with(
        MockConfig {
            unsubscribed_every: 0,
            no_unionid_every: 0,
            ..MockConfig::default()
        },
        40,
    )
    .await;
    sys.mock
        .set_faults(FaultRule::new(Fault::Errcode(errcode)).on(endpoint).into());
    let mut config = WorkerConfig::default();
    config.retry.suspended_wait = Duration::from_secs(1);
    let worker = sys.start_worker(config);
    let jobs = jobs(40);
    sys.publish(&jobs).await;
    let reason = wait_suspended(&sys, errcode).await;
    assert!(reason.contains(&errcode.to_string()), "{reason}");
    assert!(reason.contains(fix_words), "the fix in words: {reason}");

    // Suspended for a while: nothing dies, nothing is sent, WeChat is probed about once per
    // interval (not once per job). The sends in flight when the suspension came land first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = sys.mock.stats().calls_to(endpoint);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let probes = sys.mock.stats().calls_to(endpoint) - before;
    assert!(
        (1..=8).contains(&probes),
        "{probes} calls to {endpoint:?} in 4 s"
    );
    assert_eq!(
        dead_letters(&sys).await,
        0,
        "no job dies for an account problem"
    );
    assert_eq!(sys.mock.stats().sends_accepted, 0);
    let attempts: i64 = sqlx::query_scalar("SELECT COALESCE(sum(attempts), 0) FROM deliveries")
        .fetch_one(&sys.db.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 0, "a refused account spends no attempt");

    // WeChat answers normally again: the app resumes by itself and every job goes once.
    sys.mock.clear_faults();
    sys.wait_finished(40, WAIT).await;
    let stats = worker.stop().await;
    assert_eq!(stats.sent, 40, "{stats:?}");
    let sent: HashSet<String> = sys
        .mock
        .sends()
        .into_iter()
        .filter_map(|s| s.client_msg_id)
        .collect();
    assert_eq!(sent.len(), 40);
    assert_eq!(sys.mock.stats().sends_accepted, 40, "each job once");
    assert_eq!(dead_letters(&sys).await, 0);
    let app = AppName::default_app();
    let status = wxnotify_services::quota::status::app_statuses(
        &sys.db.pool,
        std::slice::from_ref(&app),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert!(!status[0].paused, "{:?}", status[0]);
}

#[tokio::test]
async fn an_ip_missing_from_the_whitelist_pauses_the_app_and_every_job_goes_once_it_is_fixed() {
    refused_then_recovered(Endpoint::StableToken, 40164, "IP whitelist").await;
}

#[tokio::test]
async fn a_restricted_account_pauses_the_app_and_every_job_goes_once_wechat_lifts_it() {
    refused_then_recovered(Endpoint::TemplateSend, 50002, "restricted").await;
}
