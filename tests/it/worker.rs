//! The delivery pipeline end to end: RabbitMQ, Postgres, the worker, the fake WeChat.

use std::time::Duration;

use wxnotify_core::domain::{Job, OpenId, Recipient, TemplateData, UnionId};
use wxnotify_sandbox::mock_wechat::{self, Endpoint, Fault, FaultPlan, FaultRule, MockConfig};
use wxnotify_worker::WorkerConfig;

use crate::system::System;

const SHIPPED: &str = "TPL_ORDER_SHIPPED";

/// A job for `to` with the shipped template, filled correctly.
pub fn job(to: Recipient) -> Job {
    job_with(
        to,
        SHIPPED,
        &[("thing1", "订单已发货"), ("time2", "2026-11-24 10:00")],
    )
}

/// A job with any template and data.
pub fn job_with(to: Recipient, template: &str, data: &[(&str, &str)]) -> Job {
    Job::new(
        to,
        template.parse().unwrap(),
        TemplateData::from_pairs(data).unwrap(),
    )
}

fn mp(i: u64) -> Recipient {
    Recipient::MpOpenid(OpenId::parse(mock_wechat::mp_openid(i)).unwrap())
}

fn quick_retries() -> WorkerConfig {
    let mut config = WorkerConfig::default();
    config.retry.min_delay = Duration::from_millis(200);
    config.retry.max_delay = Duration::from_secs(1);
    config
}

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn jobs_for_each_kind_of_recipient_are_sent_to_the_oa_openid() {
    let sys = System::seeded(10).await;
    let jobs = [
        job(mp(1)),
        job(Recipient::Unionid(
            UnionId::parse(mock_wechat::unionid(2, &sys.mock_config).unwrap()).unwrap(),
        )),
        job(Recipient::OaOpenid(
            OpenId::parse(mock_wechat::oa_openid(3)).unwrap(),
        )),
    ];
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(&jobs).await;
    sys.wait_finished(3, WAIT).await;
    let stats = worker.stop().await;
    assert_eq!(stats.sent, 3);
    let sends = sys.mock.sends();
    for (job, person) in jobs.iter().zip([1, 2, 3]) {
        let send = sends
            .iter()
            .find(|s| s.client_msg_id.as_deref() == Some(job.id.as_str()))
            .expect("WeChat got the job, with client_msg_id = job id");
        assert_eq!(send.touser, mock_wechat::oa_openid(person));
        assert_eq!(send.data["thing1"]["value"], "订单已发货");
        assert_eq!(sys.state(&job.id).await.as_deref(), Some("sent"));
    }
    let msgid: i64 = sqlx::query_scalar("SELECT msgid FROM deliveries WHERE job_id = $1")
        .bind(jobs[0].id.as_str())
        .fetch_one(&sys.db.pool)
        .await
        .unwrap();
    let sent = sends
        .iter()
        .find(|s| s.client_msg_id.as_deref() == Some(jobs[0].id.as_str()))
        .unwrap();
    assert_eq!(
        msgid as u64, sent.msgid,
        "the 64-bit msgid is stored exactly"
    );
}

#[tokio::test]
async fn unreachable_recipients_and_bad_jobs_die_with_their_reasons() {
    let config = MockConfig {
        followers: 40,
        unsubscribed_every: 15,
        ..MockConfig::default()
    };
    let sys = System::new(config, 1000).await;
    sys.seed_people(40).await;
    // Person 9 has no unionid; person 14 has one but unfollowed.
    let mut expired = job(mp(1));
    expired.not_after = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
    let jobs = [
        job(mp(9)),
        job(Recipient::MpOpenid(
            OpenId::parse("oNeverLoggedIn").unwrap(),
        )),
        job(Recipient::Unionid(
            UnionId::parse(mock_wechat::unionid(14, &sys.mock_config).unwrap()).unwrap(),
        )),
        expired,
        job_with(mp(2), "TPL_UNKNOWN", &[("thing1", "x")]),
        job_with(mp(3), SHIPPED, &[("thing1", "no time2 here")]),
    ];
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(&jobs).await;
    sys.publish_raw(b"{not json").await;
    sys.publish_raw(&vec![b'x'; 100_000]).await;
    sys.publish_raw(br#"{"id":"bad-types","to":{"mp_openid":1},"template_id":"t","data":{}}"#)
        .await;
    sys.publish_raw("{\"id\":\"nul\\u0000\",\"to\":\"\u{202e}\"}".as_bytes())
        .await;
    // The worker still serves after all that.
    let after = job(mp(4));
    sys.publish(std::slice::from_ref(&after)).await;
    sys.wait_finished(jobs.len() as i64 + 5, WAIT).await;
    worker.stop().await;
    let reasons = sys.dead_reasons().await;
    assert_eq!(reasons.get("no_unionid"), Some(&1), "{reasons:?}");
    assert_eq!(reasons.get("unknown_mp_user"), Some(&1), "{reasons:?}");
    assert_eq!(reasons.get("not_following"), Some(&1), "{reasons:?}");
    assert_eq!(reasons.get("expired"), Some(&1), "{reasons:?}");
    assert_eq!(
        reasons.get("payload_rejected"),
        Some(&2),
        "an unknown template and a missing key: {reasons:?}"
    );
    assert_eq!(reasons.get("malformed"), Some(&4), "{reasons:?}");
    assert_eq!(sys.state(&after.id).await.as_deref(), Some("sent"));
    let (errcode, errmsg): (Option<i64>, Option<String>) =
        sqlx::query_as("SELECT errcode, errmsg FROM dead_letters WHERE job_id = $1")
            .bind(jobs[4].id.as_str())
            .fetch_one(&sys.db.pool)
            .await
            .unwrap();
    // WeChat's list lacks category templates, so a template the catalog never saw is sent and
    // WeChat's 40037 decides, at once (tests/it/rules.rs has the rest of the template rules).
    assert_eq!(errcode, Some(40037));
    let errmsg = errmsg.unwrap();
    assert!(errmsg.contains("never listed"), "{errmsg}");
    let raw_kept: Option<String> = sqlx::query_scalar(
        "SELECT raw FROM dead_letters WHERE reason = 'malformed' AND raw LIKE '{not json%'",
    )
    .fetch_optional(&sys.db.pool)
    .await
    .unwrap();
    assert_eq!(raw_kept.as_deref(), Some("{not json"));
}

#[tokio::test]
async fn an_unfollowed_recipient_is_dead_and_marked_unsubscribed() {
    let sys = System::seeded(10).await;
    sys.mock.unsubscribe(5);
    let j = job(mp(5));
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(std::slice::from_ref(&j)).await;
    sys.wait_finished(1, WAIT).await;
    worker.stop().await;
    assert_eq!(sys.dead_reasons().await.get("recipient_rejected"), Some(&1));
    let subscribed: bool =
        sqlx::query_scalar("SELECT subscribed FROM oa_followers WHERE oa_openid = $1")
            .bind(mock_wechat::oa_openid(5))
            .fetch_one(&sys.db.pool)
            .await
            .unwrap();
    assert!(!subscribed, "43004 marks the follower unsubscribed");
}

#[tokio::test]
async fn transient_errors_are_retried_until_sent() {
    let sys = System::seeded(10).await;
    sys.mock.set_faults(FaultPlan {
        rules: vec![
            FaultRule::new(Fault::Errcode(-1))
                .on(Endpoint::TemplateSend)
                .times(2),
            FaultRule::new(Fault::HttpStatus(502))
                .on(Endpoint::TemplateSend)
                .times(1),
            FaultRule::new(Fault::DropConnection)
                .on(Endpoint::TemplateSend)
                .times(1),
        ],
    });
    let jobs: Vec<Job> = (0..4).map(|i| job(mp(i))).collect();
    let worker = sys.start_worker(quick_retries());
    sys.publish(&jobs).await;
    sys.wait_finished(4, WAIT).await;
    let stats = worker.stop().await;
    assert_eq!(stats.sent, 4);
    assert!(stats.retried >= 4, "{stats:?}");
    assert!(sys.dead_reasons().await.is_empty());
    let attempts: i64 = sqlx::query_scalar("SELECT sum(attempts) FROM deliveries")
        .fetch_one(&sys.db.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 8, "4 first attempts and 4 retries");
    let history: i64 =
        sqlx::query_scalar("SELECT count(*) FROM delivery_attempts WHERE outcome = 'retry'")
            .fetch_one(&sys.db.pool)
            .await
            .unwrap();
    assert_eq!(history, 4, "each failed attempt is in the history");
}

/// A system whose fake WeChat answers -1 to every send, and a job that has used up
/// `max_attempts` attempts on it and died; the worker is still running.
async fn a_job_dead_after_retries(
    max_attempts: u32,
) -> (System, crate::system::RunningWorker, Job) {
    let sys = System::seeded(10).await;
    sys.mock.set_faults(FaultPlan {
        rules: vec![FaultRule::new(Fault::Errcode(-1)).on(Endpoint::TemplateSend)],
    });
    let mut config = quick_retries();
    config.retry.max_attempts = max_attempts;
    let j = job(mp(1));
    let worker = sys.start_worker(config);
    sys.publish(std::slice::from_ref(&j)).await;
    sys.wait_finished(1, WAIT).await;
    (sys, worker, j)
}

#[tokio::test]
async fn retries_run_out_into_a_dead_letter() {
    let (sys, worker, j) = a_job_dead_after_retries(3).await;
    worker.stop().await;
    let (reason, errcode, attempts): (String, Option<i64>, i32) =
        sqlx::query_as("SELECT reason, errcode, attempts FROM dead_letters WHERE job_id = $1")
            .bind(j.id.as_str())
            .fetch_one(&sys.db.pool)
            .await
            .unwrap();
    assert_eq!(
        (reason.as_str(), errcode, attempts),
        ("retries_exhausted", Some(-1), 3)
    );
}

#[tokio::test]
async fn a_full_daily_quota_pauses_the_app_without_spending_attempts() {
    let sys = System::seeded(10).await;
    sys.mock.set_faults(FaultPlan {
        rules: vec![
            FaultRule::new(Fault::Errcode(45009))
                .on(Endpoint::TemplateSend)
                .times(1),
        ],
    });
    let mut config = quick_retries();
    config.retry.quota_pause = Duration::from_secs(1);
    let j = job(mp(1));
    let worker = sys.start_worker(config);
    sys.publish(std::slice::from_ref(&j)).await;
    sys.wait_finished(1, WAIT).await;
    let stats = worker.stop().await;
    assert_eq!(stats.sent, 1);
    assert!(stats.paused >= 1);
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM deliveries WHERE job_id = $1")
        .bind(j.id.as_str())
        .fetch_one(&sys.db.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 1, "the paused attempt was given back");
    let paused: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT paused_until FROM apps WHERE name = 'default'")
            .fetch_one(&sys.db.pool)
            .await
            .unwrap();
    assert!(
        paused.is_some(),
        "the pause is shared with other workers through Postgres"
    );
}

#[tokio::test]
async fn tokens_invalidated_mid_run_cause_one_refresh_and_nothing_dead() {
    let sys = System::seeded(200).await;
    let worker = sys.start_worker(WorkerConfig::default());
    let first: Vec<Job> = (0..50).map(|i| job(mp(i))).collect();
    sys.publish(&first).await;
    sys.wait_finished(50, WAIT).await;
    sys.mock.invalidate_tokens();
    let second: Vec<Job> = (50..150)
        .filter(|i| (i + 1) % 10 != 0)
        .map(|i| job(mp(i)))
        .collect();
    sys.publish(&second).await;
    sys.wait_finished(50 + second.len() as i64, WAIT).await;
    worker.stop().await;
    let stats = sys.mock.stats();
    assert_eq!(
        stats.tokens_minted_by(Endpoint::StableToken),
        2,
        "one fetch, one refresh: {stats:?}"
    );
    let dead_first = first
        .iter()
        .filter(|j| {
            j.to == mp(9) || j.to == mp(19) || j.to == mp(29) || j.to == mp(39) || j.to == mp(49)
        })
        .count();
    assert_eq!(
        sys.dead_reasons().await.values().sum::<i64>() as usize,
        dead_first,
        "only the people without unionid died"
    );
}

#[tokio::test]
async fn the_same_job_id_published_twice_is_sent_once() {
    let sys = System::seeded(10).await;
    let j = job(mp(1));
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(std::slice::from_ref(&j)).await;
    sys.wait_finished(1, WAIT).await;
    sys.publish(std::slice::from_ref(&j)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let dups: i32 = sqlx::query_scalar("SELECT duplicates FROM deliveries WHERE job_id = $1")
            .bind(j.id.as_str())
            .fetch_one(&sys.db.pool)
            .await
            .unwrap();
        if dups == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second copy was never seen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = worker.stop().await;
    assert_eq!((stats.sent, stats.duplicate), (1, 1));
    assert_eq!(sys.mock.stats().sends_accepted, 1, "WeChat saw one send");
}

#[tokio::test]
async fn ops_replay_a_dead_letter_and_it_is_sent_once() {
    let (sys, worker, j) = a_job_dead_after_retries(2).await;
    assert_eq!(sys.state(&j.id).await.as_deref(), Some("dead"));
    sys.mock.clear_faults();
    let dlq = |args: &[&str]| {
        use secrecy::ExposeSecret;
        std::process::Command::new(env!("CARGO_BIN_EXE_wxnotify"))
            .arg("dlq")
            .args(args)
            .env("DATABASE_URL", sys.db.url())
            .env("AMQP_URL", sys.settings.amqp_url.expose_secret())
            .env("WXNOTIFY_QUEUE_PREFIX", sys.topology.prefix())
            .env("RUST_LOG", "warn")
            .output()
            .expect("wxnotify dlq runs")
    };
    let listed = dlq(&["list", "--reason", "retries_exhausted", "--json"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(rows[0]["job_id"], j.id.as_str());
    assert_eq!(rows[0]["errcode"], -1);
    let replayed = dlq(&["replay", "--reason", "retries_exhausted"]);
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while sys.state(&j.id).await.as_deref() != Some("sent") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replayed job was not sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.stop().await;
    assert_eq!(sys.mock.stats().sends_accepted, 1);
    let again = dlq(&["list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        rows.as_array().unwrap().len(),
        0,
        "a replayed dead letter is no longer listed"
    );
}

#[tokio::test]
async fn twin_deliveries_of_one_dead_job_leave_one_dead_letter_and_one_duplicate() {
    let sys = System::seeded(10).await;
    let j = job(mp(9)); // person 9 has no unionid
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(&[j.clone(), j.clone()]).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while worker.stats.snapshot().finished() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "both copies get an outcome"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = worker.stop().await;
    assert_eq!(stats.duplicate, 1, "{stats:?}");
    assert_eq!(stats.dead.values().sum::<u64>(), 1, "{stats:?}");
    let letters: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters WHERE job_id = $1")
        .bind(j.id.as_str())
        .fetch_one(&sys.db.pool)
        .await
        .unwrap();
    assert_eq!(letters, 1, "one job, one dead letter");
}

#[tokio::test]
async fn a_receipt_that_arrived_before_the_send_was_recorded_lands_on_the_ledger() {
    let sys = System::seeded(10).await;
    // The callback stored WeChat's receipt for the msgid the fake will answer first, before the
    // worker recorded the send (WeChat's event and the send's answer race).
    sqlx::query("INSERT INTO delivery_receipts (app, msgid, status, reported_at) VALUES ('default', $1, 'success', now())")
        .bind(mock_wechat::FIRST_MSGID as i64)
        .execute(&sys.db.pool)
        .await
        .unwrap();
    let j = job(mp(1));
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(std::slice::from_ref(&j)).await;
    sys.wait_finished(1, WAIT).await;
    worker.stop().await;
    let status: Option<String> =
        sqlx::query_scalar("SELECT receipt_status FROM deliveries WHERE job_id = $1")
            .bind(j.id.as_str())
            .fetch_one(&sys.db.pool)
            .await
            .unwrap();
    assert_eq!(status.as_deref(), Some("success"));
}
