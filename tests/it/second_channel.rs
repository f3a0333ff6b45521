//! The second channel end to end: jobs with `mp_subscribe` through RabbitMQ, the worker and the
//! fake WeChat. The OA's template message reaches followers; the Mini Program's subscribe
//! message reaches the others while they hold a grant, counted in `mp_grants` (set up here by
//! hand, beside the fake's own grants from its popup); the rest die `no_channel`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use wxnotify_core::domain::{Job, MpSubscribe, OpenId, Recipient, TemplateData};
use wxnotify_sandbox::mock_wechat::{self, Endpoint, Fault, FaultRule};
use wxnotify_worker::WorkerConfig;

use crate::system::System;
use crate::worker::job;

const WAIT: Duration = Duration::from_secs(30);
/// The fake's one-time subscribe template.
pub(crate) const ONE_TIME: &str = "MP_ORDER_SHIPPED";
/// The fake's long-term subscribe template.
const LONG_TERM: &str = "MP_SERVICE_NOTICE";

fn mp(person: u64) -> Recipient {
    Recipient::MpOpenid(OpenId::parse(mock_wechat::mp_openid(person)).unwrap())
}

/// The subscribe message of `template` with data the fake accepts.
pub(crate) fn subscribe(template: &str) -> MpSubscribe {
    let mut pairs = vec![("thing1", "订单已发货"), ("time2", "2026-11-24 10:00")];
    if template == ONE_TIME {
        pairs.push(("phrase3", "已发货"));
    }
    MpSubscribe {
        template_id: template.parse().unwrap(),
        data: TemplateData::from_pairs(&pairs).unwrap(),
        page: Some("pages/order/detail?id=1".into()),
        miniprogram_state: None,
    }
}

/// A job with the OA template message and the subscribe message.
fn both(person: u64, template: &str) -> Job {
    let mut j = job(mp(person));
    j.mp_subscribe = Some(subscribe(template));
    j
}

/// A job with only the subscribe message.
fn only_subscribe(person: u64, template: &str) -> Job {
    let mut j = both(person, template);
    j.template_id = None;
    j.data = None;
    j
}

/// Person `person` holds `n` grants of `template` both at the fake WeChat (accepted in its popup)
/// and in wxnotify's grant ledger.
async fn holds(sys: &System, person: u64, template: &str, n: u32, long_term: bool) {
    accept_in_popup(sys, person, template, n).await;
    grant_in_ledger(sys, person, template, n.into(), long_term).await;
}

/// A worker whose retries come within a fifth of a second.
fn quick_retries() -> WorkerConfig {
    let mut config = WorkerConfig::default();
    config.retry.min_delay = Duration::from_millis(100);
    config.retry.max_delay = Duration::from_millis(200);
    config
}

/// The person accepts `template` `times` times in the fake's popup (WeChat's side of the grant).
pub(crate) async fn accept_in_popup(sys: &System, person: u64, template: &str, times: u32) {
    let http = reqwest::Client::new();
    for _ in 0..times {
        let answer = http
            .post(format!("{}mock/mp/popup", sys.mock.base_url()))
            .json(&json!({"person": person, "results": {template: "accept"}}))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{answer:?}");
    }
}

/// wxnotify's count of the person's grants for `template` (as the grant sources would record it).
pub(crate) async fn grant_in_ledger(
    sys: &System,
    person: u64,
    template: &str,
    granted: i64,
    long_term: bool,
) {
    sqlx::query(
        "INSERT INTO mp_grants (app, mp_openid, template_id, granted, long_term)
         VALUES ('default', $1, $2, $3, $4)",
    )
    .bind(mock_wechat::mp_openid(person))
    .bind(template)
    .bind(granted)
    .bind(long_term)
    .execute(&sys.db.pool)
    .await
    .unwrap();
}

/// (granted, used, voided, state) of the person's grant row.
pub(crate) async fn grant_row(
    sys: &System,
    person: u64,
    template: &str,
) -> (i64, i64, i64, String) {
    sqlx::query_as(
        "SELECT granted, used, voided, state FROM mp_grants
         WHERE app = 'default' AND mp_openid = $1 AND template_id = $2",
    )
    .bind(mock_wechat::mp_openid(person))
    .bind(template)
    .fetch_one(&sys.db.pool)
    .await
    .unwrap()
}

/// The person no longer follows the OA, at WeChat and in wxnotify's follower table.
pub(crate) async fn unfollow(sys: &System, person: u64) {
    sys.mock.unsubscribe(person);
    let n = sqlx::query(
        "UPDATE oa_followers SET subscribed = false
         WHERE unionid = (SELECT unionid FROM mp_users WHERE mp_openid = $1)",
    )
    .bind(mock_wechat::mp_openid(person))
    .execute(&sys.db.pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(n, 1, "person {person} was a follower");
}

/// (state, channel, dead reason, last errcode) of a job's ledger row.
async fn ledger(sys: &System, j: &Job) -> (String, Option<String>, Option<String>, Option<i64>) {
    sqlx::query_as(
        "SELECT state, channel, dead_reason, last_errcode FROM deliveries WHERE job_id = $1",
    )
    .bind(j.id.as_str())
    .fetch_one(&sys.db.pool)
    .await
    .unwrap()
}

/// The subscribe messages the fake accepted, per person.
pub(crate) async fn fake_counts(sys: &System) -> BTreeMap<u64, u64> {
    let counts: BTreeMap<String, u64> =
        reqwest::get(format!("{}mock/mp/counts", sys.mock.base_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    counts
        .into_iter()
        .map(|(k, v)| (k.parse().unwrap(), v))
        .collect()
}

/// The subscribe messages the fake accepted.
async fn fake_sends(sys: &System) -> Vec<Value> {
    reqwest::get(format!("{}mock/mp/sends", sys.mock.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_follower_gets_the_oa_message_and_a_non_follower_with_a_grant_the_subscribe_message() {
    let sys = System::seeded(10).await;
    for person in [1, 2] {
        holds(&sys, person, ONE_TIME, 1, false).await;
    }
    unfollow(&sys, 2).await;
    let follower = both(1, ONE_TIME);
    let stranger = both(2, ONE_TIME);
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(&[follower.clone(), stranger.clone()]).await;
    sys.wait_finished(2, WAIT).await;
    worker.stop().await;

    let (state, channel, _, _) = ledger(&sys, &follower).await;
    assert_eq!(
        (state.as_str(), channel.as_deref()),
        ("sent", Some("oa_template"))
    );
    assert!(
        sys.mock
            .sends()
            .iter()
            .any(|s| s.client_msg_id.as_deref() == Some(follower.id.as_str())),
        "the follower got the OA template message"
    );
    assert_eq!(
        grant_row(&sys, 1, ONE_TIME).await.1,
        0,
        "the follower's grant is left for later"
    );

    let (state, channel, _, _) = ledger(&sys, &stranger).await;
    assert_eq!(
        (state.as_str(), channel.as_deref()),
        ("sent", Some("mp_subscribe"))
    );
    assert_eq!(grant_row(&sys, 2, ONE_TIME).await.1, 1, "one grant used");
    let sends = fake_sends(&sys).await;
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0]["touser"], mock_wechat::mp_openid(2));
    assert_eq!(sends[0]["template_id"], ONE_TIME);
    assert_eq!(sends[0]["page"], "pages/order/detail?id=1");
    let (mp_openid, mp_template): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT mp_openid, mp_template_id FROM deliveries WHERE job_id = $1")
            .bind(stranger.id.as_str())
            .fetch_one(&sys.db.pool)
            .await
            .unwrap();
    assert_eq!(mp_openid, Some(mock_wechat::mp_openid(2)));
    assert_eq!(mp_template.as_deref(), Some(ONE_TIME));
}

#[tokio::test]
async fn two_jobs_racing_for_one_grant_one_is_sent_and_one_has_no_channel() {
    let sys = System::seeded(10).await;
    holds(&sys, 3, ONE_TIME, 1, false).await;
    let jobs: Vec<Job> = (0..2).map(|_| only_subscribe(3, ONE_TIME)).collect();
    // Two workers, so the claims may come from two transactions as well as one batch.
    let a = sys.start_worker(WorkerConfig::default());
    let b = sys.start_worker(WorkerConfig::default());
    sys.publish(&jobs).await;
    sys.wait_finished(2, WAIT).await;
    a.stop().await;
    b.stop().await;

    let mut ends = Vec::new();
    for j in &jobs {
        let (state, _, reason, _) = ledger(&sys, j).await;
        ends.push((state, reason));
    }
    ends.sort();
    assert_eq!(
        ends,
        [
            ("dead".to_owned(), Some("no_channel".to_owned())),
            ("sent".to_owned(), None)
        ]
    );
    assert_eq!(
        grant_row(&sys, 3, ONE_TIME).await,
        (1, 1, 0, "accept".into())
    );
    assert_eq!(
        fake_counts(&sys).await.get(&3),
        Some(&1),
        "one message reached person 3"
    );
    let letter: (Option<i64>, String) =
        sqlx::query_as("SELECT errcode, errmsg FROM dead_letters WHERE reason = 'no_channel'")
            .fetch_one(&sys.db.pool)
            .await
            .unwrap();
    assert_eq!(letter.0, None, "the loser was never sent: {letter:?}");
    assert!(letter.1.contains("no grant"), "{letter:?}");
}

#[tokio::test]
async fn a_43101_answer_writes_the_count_off_and_the_job_has_no_channel() {
    let sys = System::seeded(10).await;
    // wxnotify counts two grants WeChat does not hold (the person never accepted there).
    grant_in_ledger(&sys, 4, ONE_TIME, 2, false).await;
    let first = only_subscribe(4, ONE_TIME);
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(std::slice::from_ref(&first)).await;
    sys.wait_finished(1, WAIT).await;
    let (state, _, reason, errcode) = ledger(&sys, &first).await;
    assert_eq!(
        (state.as_str(), reason.as_deref(), errcode),
        ("dead", Some("no_channel"), Some(43101))
    );
    assert_eq!(
        grant_row(&sys, 4, ONE_TIME).await,
        (2, 0, 2, "accept".into()),
        "nothing used, everything written off: none left"
    );
    // The next job of the person is not sent at all.
    let second = only_subscribe(4, ONE_TIME);
    sys.publish(std::slice::from_ref(&second)).await;
    sys.wait_finished(2, WAIT).await;
    worker.stop().await;
    let (state, _, reason, errcode) = ledger(&sys, &second).await;
    assert_eq!(
        (state.as_str(), reason.as_deref(), errcode),
        ("dead", Some("no_channel"), None)
    );
    assert!(fake_counts(&sys).await.is_empty());
}

#[tokio::test]
async fn a_lost_answer_on_a_subscribe_send_ends_outcome_unknown_and_is_not_resent() {
    let sys = System::seeded(10).await;
    holds(&sys, 5, ONE_TIME, 3, false).await;
    sys.mock.set_faults(
        FaultRule::new(Fault::AcceptThenDrop)
            .on(Endpoint::SubscribeSend)
            .times(1)
            .into(),
    );
    let j = only_subscribe(5, ONE_TIME);
    let worker = sys.start_worker(quick_retries());
    sys.publish(std::slice::from_ref(&j)).await;
    sys.wait_finished(1, WAIT).await;
    // Time for a resend, were there one.
    tokio::time::sleep(Duration::from_millis(800)).await;
    worker.stop().await;
    let (state, channel, reason, _) = ledger(&sys, &j).await;
    assert_eq!(
        (state.as_str(), channel.as_deref(), reason.as_deref()),
        ("dead", Some("mp_subscribe"), Some("outcome_unknown"))
    );
    assert_eq!(
        fake_counts(&sys).await.get(&5),
        Some(&1),
        "sent once, never again"
    );
    assert_eq!(
        grant_row(&sys, 5, ONE_TIME).await,
        (3, 1, 0, "accept".into()),
        "the grant of the lost answer stays used"
    );
    let channel: Option<String> =
        sqlx::query_scalar("SELECT channel FROM dead_letters WHERE job_id = $1")
            .bind(j.id.as_str())
            .fetch_one(&sys.db.pool)
            .await
            .unwrap();
    assert_eq!(channel.as_deref(), Some("mp_subscribe"));
}

#[tokio::test]
async fn a_transient_answer_gives_the_grant_back_and_the_retry_sends() {
    let sys = System::seeded(10).await;
    holds(&sys, 6, ONE_TIME, 1, false).await;
    sys.mock.set_faults(
        FaultRule::new(Fault::Errcode(-1))
            .on(Endpoint::SubscribeSend)
            .times(1)
            .into(),
    );
    let j = only_subscribe(6, ONE_TIME);
    let worker = sys.start_worker(quick_retries());
    sys.publish(std::slice::from_ref(&j)).await;
    sys.wait_finished(1, WAIT).await;
    worker.stop().await;
    let (state, channel, _, errcode) = ledger(&sys, &j).await;
    assert_eq!(
        (state.as_str(), channel.as_deref(), errcode),
        ("sent", Some("mp_subscribe"), Some(-1)),
        "retried after -1, then sent"
    );
    assert_eq!(
        grant_row(&sys, 6, ONE_TIME).await,
        (1, 1, 0, "accept".into())
    );
    assert_eq!(fake_counts(&sys).await.get(&6), Some(&1));
}

#[tokio::test]
async fn a_long_term_grant_sends_many() {
    let sys = System::seeded(10).await;
    holds(&sys, 7, LONG_TERM, 1, true).await;
    let jobs: Vec<Job> = (0..3).map(|_| only_subscribe(7, LONG_TERM)).collect();
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(&jobs).await;
    sys.wait_finished(3, WAIT).await;
    worker.stop().await;
    for j in &jobs {
        assert_eq!(ledger(&sys, j).await.0, "sent");
    }
    assert_eq!(
        grant_row(&sys, 7, LONG_TERM).await,
        (1, 3, 0, "accept".into())
    );
    assert_eq!(fake_counts(&sys).await.get(&7), Some(&3));
}

#[tokio::test]
async fn a_template_the_person_rejected_is_not_sent_to() {
    let sys = System::seeded(10).await;
    grant_in_ledger(&sys, 8, ONE_TIME, 5, false).await;
    sqlx::query("UPDATE mp_grants SET state = 'reject'")
        .execute(&sys.db.pool)
        .await
        .unwrap();
    unfollow(&sys, 8).await;
    let j = both(8, ONE_TIME);
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(std::slice::from_ref(&j)).await;
    sys.wait_finished(1, WAIT).await;
    worker.stop().await;
    let (state, channel, reason, _) = ledger(&sys, &j).await;
    assert_eq!(
        (state.as_str(), channel, reason.as_deref()),
        ("dead", None, Some("no_channel"))
    );
    assert_eq!(
        grant_row(&sys, 8, ONE_TIME).await,
        (5, 0, 0, "reject".into())
    );
    assert!(fake_sends(&sys).await.is_empty());
    assert!(
        !sys.mock
            .sends()
            .iter()
            .any(|s| s.client_msg_id.as_deref() == Some(j.id.as_str())),
        "nor the OA message to a person who left"
    );
}

#[tokio::test]
async fn the_status_and_the_outcome_webhooks_name_the_channel() {
    let sys = System::seeded(10).await;
    sqlx::query(
        "INSERT INTO app_webhooks (app, url, secret, send_sent)
         VALUES ('default', 'https://hooks.example.com/wx', 'whsec_test', true)",
    )
    .execute(&sys.db.pool)
    .await
    .unwrap();
    holds(&sys, 2, ONE_TIME, 1, false).await;
    unfollow(&sys, 2).await;
    let follower = both(1, ONE_TIME);
    let stranger = both(2, ONE_TIME);
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(&[follower.clone(), stranger.clone()]).await;
    sys.wait_finished(2, WAIT).await;
    worker.stop().await;

    let app = wxnotify_core::domain::AppName::default_app();
    let ids = [follower.id.as_str(), stranger.id.as_str()];
    let statuses = wxnotify_api::producer::notification_store::statuses(&sys.db.pool, &app, &ids)
        .await
        .unwrap();
    let status = |id: &str| {
        let s = statuses.iter().find(|s| s.id == id).expect("a status");
        serde_json::to_value(s).unwrap()
    };
    assert_eq!(status(ids[0])["channel"], "oa_template");
    assert_eq!(status(ids[1])["channel"], "mp_subscribe");
    assert_eq!(status(ids[1])["state"], "sent");

    let hooks: Vec<(String, Value)> = sqlx::query_as(
        "SELECT job_id, payload FROM webhook_outbox WHERE event = 'sent' ORDER BY job_id",
    )
    .fetch_all(&sys.db.pool)
    .await
    .unwrap();
    let channel_of = |id: &str| {
        hooks
            .iter()
            .find(|(j, _)| j == id)
            .map(|(_, p)| p["channel"].clone())
            .expect("a sent event")
    };
    assert_eq!(channel_of(ids[0]), "oa_template");
    assert_eq!(channel_of(ids[1]), "mp_subscribe");
}

/// A worker killed (-9) while it held a subscribe grant: its send may have been made, so the
/// job taken over is never sent again and the grant stays used.
#[tokio::test]
async fn a_dead_workers_subscribe_claim_is_not_sent_again() {
    use wxnotify_core::queue::Lane;
    use wxnotify_services::ledger::{Admission, Grant, Ledger};

    let sys = System::seeded(10).await;
    holds(&sys, 3, ONE_TIME, 2, false).await;
    let j = only_subscribe(3, ONE_TIME);
    // The claim as a killed worker leaves it: a grant reserved, live lease, no heartbeat.
    let dead_worker = Ledger::new(sys.db.pool.clone());
    let Admission::Attempt { grant, .. } = dead_worker.claim(&j, Lane::Jobs).await.unwrap() else {
        panic!("the first claim is an attempt");
    };
    assert_eq!(
        grant,
        Grant::Reserved(OpenId::parse(mock_wechat::mp_openid(3)).unwrap())
    );
    assert_eq!(
        grant_row(&sys, 3, ONE_TIME).await.1,
        1,
        "reserved with the claim"
    );
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(std::slice::from_ref(&j)).await;
    sys.wait_finished(1, WAIT).await;
    worker.stop().await;
    let (state, channel, reason, _) = ledger(&sys, &j).await;
    assert_eq!(
        (state.as_str(), channel.as_deref(), reason.as_deref()),
        ("dead", Some("mp_subscribe"), Some("outcome_unknown"))
    );
    assert!(
        fake_counts(&sys).await.is_empty(),
        "not sent by the worker that took over"
    );
    assert_eq!(
        grant_row(&sys, 3, ONE_TIME).await,
        (2, 1, 0, "accept".into()),
        "the dead claim's grant stays used, and no second one was taken"
    );
}

#[tokio::test]
async fn a_subscribe_message_that_breaks_its_template_is_refused_before_sending_and_its_grant_given_back()
 {
    let sys = System::seeded(10).await;
    // The subscribe template as `templates sync` stores it: `phrase3` takes only its enum values.
    sqlx::query(
        "INSERT INTO templates (app, template_id, title, content, placeholders, source, channel,
                                long_term, enum_values)
         VALUES ('default', $1, '订单发货通知',
                 '商品:{{thing1.DATA}}\n时间:{{time2.DATA}}\n状态:{{phrase3.DATA}}',
                 ARRAY['thing1', 'time2', 'phrase3'], 'api', 'mp_subscribe', false,
                 '{\"phrase3\": [\"已发货\", \"已签收\"]}')",
    )
    .bind(ONE_TIME)
    .execute(&sys.db.pool)
    .await
    .unwrap();
    holds(&sys, 6, ONE_TIME, 2, false).await;
    let good = only_subscribe(6, ONE_TIME);
    let mut bad = only_subscribe(6, ONE_TIME);
    bad.mp_subscribe.as_mut().unwrap().data = TemplateData::from_pairs(&[
        ("thing1", "订单"),
        ("time2", "2026-11-24 10:00"),
        ("phrase3", "已取消"),
    ])
    .unwrap();
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(&[good.clone(), bad.clone()]).await;
    sys.wait_finished(2, WAIT).await;
    worker.stop().await;

    let (state, channel, _, _) = ledger(&sys, &good).await;
    assert_eq!(
        (state.as_str(), channel.as_deref()),
        ("sent", Some("mp_subscribe"))
    );
    let (state, _, reason, errcode) = ledger(&sys, &bad).await;
    assert_eq!(
        (state.as_str(), reason.as_deref(), errcode),
        ("dead", Some("payload_rejected"), None),
        "refused by wxnotify's check, never sent"
    );
    let (errmsg,): (String,) = sqlx::query_as("SELECT errmsg FROM dead_letters WHERE job_id = $1")
        .bind(bad.id.as_str())
        .fetch_one(&sys.db.pool)
        .await
        .unwrap();
    assert!(
        errmsg.contains("phrase3"),
        "the refusal names the field: {errmsg}"
    );
    assert_eq!(
        grant_row(&sys, 6, ONE_TIME).await,
        (2, 1, 0, "accept".into()),
        "only the sent message used a grant"
    );
    assert_eq!(
        fake_counts(&sys).await.get(&6),
        Some(&1),
        "one message reached person 6"
    );
}
