//! Exactly once, even across crashes: claims that exclude twins, uncertain sends and
//! WeChat's resend window, broker dead letters by their last death, writes that recognise their
//! own earlier commit, one transaction per outcome, replays that keep counting.

use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicRejectOptions};
use wxnotify_core::domain::{OpenId, Recipient};
use wxnotify_core::queue::Lane;
use wxnotify_sandbox::mock_wechat::{self, Endpoint, Fault, FaultPlan, FaultRule};
use wxnotify_services::ledger::outcome::{DeadReason, Failure};
use wxnotify_services::ledger::{Admission, DeadJob, Ledger, Written};
use wxnotify_worker::WorkerConfig;

use crate::system::{RunningWorker, System};
use crate::worker::job;

const WAIT: Duration = Duration::from_secs(30);

fn mp(i: u64) -> Recipient {
    Recipient::MpOpenid(OpenId::parse(mock_wechat::mp_openid(i)).unwrap())
}

/// Polls `check` (a query) every 50 ms until it holds, or panics after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scalar_i64(sys: &System, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&sys.db.pool)
        .await
        .unwrap()
}

async fn wait_stats(
    worker: &RunningWorker,
    what: &str,
    done: impl Fn(&wxnotify_worker::StatsSnapshot) -> bool,
) {
    eventually(what, || {
        let s = worker.stats.snapshot();
        let ok = done(&s);
        async move { ok }
    })
    .await;
}

#[tokio::test]
async fn a_job_id_published_three_times_back_to_back_is_sent_once() {
    let sys = System::seeded(10).await;
    let j = job(mp(1));
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(&[j.clone(), j.clone(), j.clone()]).await;
    wait_stats(&worker, "all three copies settled", |s| {
        s.sent + s.duplicate >= 3
    })
    .await;
    let stats = worker.stop().await;
    assert_eq!((stats.sent, stats.duplicate), (1, 2), "{stats:?}");
    assert!(
        stats.busy >= 1,
        "a twin waited for the live claim: {stats:?}"
    );
    let wechat = sys.mock.stats();
    assert_eq!(
        wechat.calls_to(Endpoint::TemplateSend),
        1,
        "WeChat was asked once, not three times relying on client_msg_id: {wechat:?}"
    );
}

#[tokio::test]
async fn an_uncertain_send_past_the_resend_window_ends_outcome_unknown() {
    let sys = System::seeded(10).await;
    sys.mock.set_faults(FaultPlan {
        rules: vec![
            FaultRule::new(Fault::AcceptThenDrop)
                .on(Endpoint::TemplateSend)
                .times(1),
        ],
    });
    let mut config = WorkerConfig::default();
    // WeChat's window as seen by wxnotify: closed at once.
    config.retry.resend_window = Duration::ZERO;
    let j = job(mp(1));
    let worker = sys.start_worker(config);
    sys.publish(std::slice::from_ref(&j)).await;
    sys.wait_finished(1, WAIT).await;
    worker.stop().await;
    assert_eq!(
        sys.dead_reasons().await.get("outcome_unknown"),
        Some(&1),
        "{:?}",
        sys.dead_reasons().await
    );
    let (attempts, uncertain): (i32, bool) = sqlx::query_as(
        "SELECT attempts, uncertain_since IS NOT NULL FROM deliveries WHERE job_id = $1",
    )
    .bind(j.id.as_str())
    .fetch_one(&sys.db.pool)
    .await
    .unwrap();
    assert_eq!((attempts, uncertain), (1, true));
    let wechat = sys.mock.stats();
    assert_eq!(
        wechat.calls_to(Endpoint::TemplateSend),
        1,
        "never resent: {wechat:?}"
    );
    assert_eq!(wechat.sends_accepted, 1);
}

#[tokio::test]
async fn an_uncertain_send_inside_the_window_is_resent_and_counted_once() {
    let sys = System::seeded(10).await;
    sys.mock.set_faults(FaultPlan {
        rules: vec![
            FaultRule::new(Fault::AcceptThenDrop)
                .on(Endpoint::TemplateSend)
                .times(1),
        ],
    });
    let j = job(mp(1));
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(std::slice::from_ref(&j)).await;
    sys.wait_finished(1, WAIT).await;
    let stats = worker.stop().await;
    assert_eq!(stats.sent, 1, "{stats:?}");
    assert_eq!(
        sys.mock.stats().sends_accepted,
        1,
        "WeChat dropped the resend"
    );
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM deliveries WHERE job_id = $1")
        .bind(j.id.as_str())
        .fetch_one(&sys.db.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 2, "two sends made");
}

/// A claim held by a worker that stopped heartbeating (killed -9): the job is taken over, its
/// outcome marked uncertain from the old claim on, and the dead claim costs no attempt.
#[tokio::test]
async fn a_dead_workers_claim_is_taken_over_without_spending_an_attempt() {
    let sys = System::seeded(10).await;
    let j = job(mp(1));
    // The claim as a killed worker leaves it: live lease, no heartbeat.
    let dead_worker = Ledger::new(sys.db.pool.clone());
    let Admission::Attempt { claim, .. } = dead_worker.claim(&j, Lane::Jobs).await.unwrap() else {
        panic!("the first claim is an attempt");
    };
    assert_eq!(claim.attempt, 1);
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(std::slice::from_ref(&j)).await;
    sys.wait_finished(1, WAIT).await;
    worker.stop().await;
    let (state, attempts, uncertain): (String, i32, bool) = sqlx::query_as(
        "SELECT state, attempts, uncertain_since IS NOT NULL FROM deliveries WHERE job_id = $1",
    )
    .bind(j.id.as_str())
    .fetch_one(&sys.db.pool)
    .await
    .unwrap();
    assert_eq!((state.as_str(), attempts, uncertain), ("sent", 1, true));
}

/// A claim held by a live worker (heartbeating): a second delivery waits instead of sending.
#[tokio::test]
async fn a_live_claim_makes_a_twin_wait_instead_of_sending() {
    let sys = System::seeded(10).await;
    let j = job(mp(1));
    let other = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO workers (id, hostname, pid) VALUES ($1, 'twin', 1)")
        .bind(other)
        .execute(&sys.db.pool)
        .await
        .unwrap();
    let live = Ledger::for_worker(sys.db.pool.clone(), other);
    let Admission::Attempt { claim, .. } = live.claim(&j, Lane::Jobs).await.unwrap() else {
        panic!("the first claim is an attempt");
    };
    let mut config = WorkerConfig::default();
    config.retry.busy_wait = Duration::from_millis(500);
    let worker = sys.start_worker(config);
    sys.publish(std::slice::from_ref(&j)).await;
    wait_stats(&worker, "the twin waited twice", |s| s.busy >= 2).await;
    assert_eq!(sys.mock.stats().calls_to(Endpoint::TemplateSend), 0);
    // The live claim's worker records its send: the waiting twin is then a duplicate.
    sqlx::query("UPDATE workers SET heartbeat_at = now() WHERE id = $1")
        .bind(other)
        .execute(&sys.db.pool)
        .await
        .unwrap();
    let openid = OpenId::parse(mock_wechat::oa_openid(1)).unwrap();
    assert!(
        live.record_sent(&j, &claim, Some(&openid), Some(42))
            .await
            .unwrap()
    );
    wait_stats(&worker, "the twin is a duplicate", |s| s.duplicate >= 1).await;
    let stats = worker.stop().await;
    assert_eq!(stats.sent, 0, "{stats:?}");
    assert_eq!(sys.mock.stats().calls_to(Endpoint::TemplateSend), 0);
}

#[tokio::test]
async fn a_write_whose_reply_was_lost_is_not_counted_twice() {
    let sys = System::seeded(10).await;
    let ledger = Ledger::new(sys.db.pool.clone());
    let j = job(mp(1));
    let Admission::Attempt { claim, .. } = ledger.claim(&j, Lane::Jobs).await.unwrap() else {
        panic!("the first claim is an attempt");
    };
    let openid = OpenId::parse(mock_wechat::oa_openid(1)).unwrap();
    assert!(
        ledger
            .record_sent(&j, &claim, Some(&openid), Some(7))
            .await
            .unwrap()
    );
    // The same write again, as the consumer retries it when the commit's reply was lost.
    assert!(
        ledger
            .record_sent(&j, &claim, Some(&openid), Some(7))
            .await
            .unwrap(),
        "this claim's own committed write is recognised"
    );
    let (dups, attempts): (i32, i32) =
        sqlx::query_as("SELECT duplicates, attempts FROM deliveries WHERE job_id = $1")
            .bind(j.id.as_str())
            .fetch_one(&sys.db.pool)
            .await
            .unwrap();
    assert_eq!((dups, attempts), (0, 1));
    // Another delivery's claim finds it sent: a duplicate.
    assert_eq!(
        ledger.claim(&j, Lane::Jobs).await.unwrap(),
        Admission::Duplicate
    );
}

#[tokio::test]
async fn a_bulk_job_retried_once_then_over_the_delivery_limit_is_dead_delivery_limit_on_bulk() {
    let sys = System::seeded(10).await;
    let mut j = job(mp(1));
    j.campaign_id = Some(uuid::Uuid::new_v4());
    // Its first attempt failed: it waits in the shortest retry tier, which dead-letters it back
    // to the bulk lane (reason `expired`, the message's first death).
    sys.publisher
        .publish_retry(
            &j.to_json(),
            j.id.as_str(),
            Lane::Bulk,
            2,
            Duration::from_millis(500),
            Default::default(),
        )
        .await
        .unwrap();
    // Then it keeps failing a consumer on the bulk lane until the delivery limit (3 in tests).
    let connection =
        wxnotify_core::queue::connect(&sys.settings.amqp_url, "wxnotify-test-rejecter")
            .await
            .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let bulk = sys.topology.lane_queue(Lane::Bulk);
    let mut rejected = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let dead: u32 = channel
            .queue_declare(
                sys.topology.dead_queue().as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .unwrap()
            .message_count();
        if dead == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never dead-lettered"
        );
        match channel
            .basic_get(bulk.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            Some(msg) => {
                msg.delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: true })
                    .await
                    .unwrap();
                rejected += 1;
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(rejected >= 3, "{rejected}");
    let _ = connection.close(200, "done".into()).await;
    let mut config = WorkerConfig::default();
    config.consumer.lanes = vec![];
    let worker = sys.start_worker(config);
    sys.wait_finished(1, WAIT).await;
    worker.stop().await;
    assert_eq!(
        sys.dead_reasons().await.get("delivery_limit"),
        Some(&1),
        "{:?}",
        sys.dead_reasons().await
    );
    let lane: String = sqlx::query_scalar("SELECT lane FROM deliveries WHERE job_id = $1")
        .bind(j.id.as_str())
        .fetch_one(&sys.db.pool)
        .await
        .unwrap();
    assert_eq!(lane, "bulk");
}

#[tokio::test]
async fn the_same_malformed_message_delivered_again_is_one_dead_letter() {
    let sys = System::seeded(10).await;
    let worker = sys.start_worker(WorkerConfig::default());
    for _ in 0..2 {
        sys.publisher
            .publish_raw(
                &sys.topology.exchange(),
                Lane::Jobs.routing_key(),
                b"{not json",
                Default::default(),
                Some("bad-1"),
            )
            .await
            .unwrap();
    }
    wait_stats(&worker, "both deliveries settled", |s| {
        s.dead.values().sum::<u64>() + s.duplicate >= 2
    })
    .await;
    let stats = worker.stop().await;
    assert_eq!(
        (stats.dead.values().sum::<u64>(), stats.duplicate),
        (1, 1),
        "{stats:?}"
    );
    assert_eq!(
        scalar_i64(
            &sys,
            "SELECT count(*) FROM dead_letters WHERE reason = 'malformed'"
        )
        .await,
        1
    );
}

/// 43004's dead letter and the follower's unsubscribe are one transaction: when the second
/// fails, neither is written, and the retry writes both (not a duplicate with the follower still
/// subscribed).
#[tokio::test]
async fn a_43004_dead_letter_and_the_unsubscribe_commit_together() {
    let sys = System::seeded(10).await;
    sqlx::raw_sql(
        "CREATE SEQUENCE unsubscribe_failures;
         CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM nextval('unsubscribe_failures'); RAISE EXCEPTION 'followers unavailable'; END $$;
         CREATE TRIGGER refuse BEFORE UPDATE ON oa_followers FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .execute(&sys.db.pool)
    .await
    .unwrap();
    sys.mock.unsubscribe(5);
    let j = job(mp(5));
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(std::slice::from_ref(&j)).await;
    eventually("the unsubscribe failed once", || async {
        scalar_i64(
            &sys,
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM unsubscribe_failures",
        )
        .await
            > 0
    })
    .await;
    assert_eq!(
        scalar_i64(&sys, "SELECT count(*) FROM dead_letters").await,
        0,
        "nothing of the failed transaction stays"
    );
    sqlx::raw_sql("DROP TRIGGER refuse ON oa_followers")
        .execute(&sys.db.pool)
        .await
        .unwrap();
    sys.wait_finished(1, WAIT).await;
    let stats = worker.stop().await;
    assert_eq!(stats.duplicate, 0, "{stats:?}");
    assert_eq!(sys.dead_reasons().await.get("recipient_rejected"), Some(&1));
    let subscribed: bool =
        sqlx::query_scalar("SELECT subscribed FROM oa_followers WHERE oa_openid = $1")
            .bind(mock_wechat::oa_openid(5))
            .fetch_one(&sys.db.pool)
            .await
            .unwrap();
    assert!(!subscribed);
}

/// A 45009 pause that could not be written to Postgres holds in this worker: the heartbeat,
/// which reads no pause back, does not lift it.
#[tokio::test]
async fn a_quota_pause_that_failed_to_reach_postgres_is_not_undone_by_the_heartbeat() {
    let sys = System::seeded(10).await;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'apps unavailable'; END $$;
         CREATE TRIGGER refuse BEFORE UPDATE ON apps FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .execute(&sys.db.pool)
    .await
    .unwrap();
    sys.mock.set_faults(FaultPlan {
        rules: vec![
            FaultRule::new(Fault::Errcode(45009))
                .on(Endpoint::TemplateSend)
                .times(1),
        ],
    });
    let mut config = WorkerConfig::default();
    config.retry.quota_pause = Duration::from_secs(120);
    let worker = sys.start_worker(config);
    let first = job(mp(1));
    sys.publish(std::slice::from_ref(&first)).await;
    wait_stats(&worker, "the first job paused", |s| s.paused >= 1).await;
    // Two heartbeats pass (each reads the apps' pauses back from Postgres: none).
    let beat = || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
            "SELECT max(heartbeat_at) FROM workers",
        )
        .fetch_one(&sys.db.pool)
        .await
        .unwrap()
    };
    let before = beat().await;
    eventually("two heartbeats", || async {
        beat().await > before + chrono::Duration::milliseconds(900)
    })
    .await;
    let second = job(mp(2));
    sys.publish(std::slice::from_ref(&second)).await;
    wait_stats(&worker, "the second job settled", |s| {
        s.paused + s.sent >= 2
    })
    .await;
    let stats = worker.stop().await;
    assert_eq!((stats.paused, stats.sent), (2, 0), "{stats:?}");
    assert_eq!(sys.mock.stats().calls_to(Endpoint::TemplateSend), 1);
}

#[tokio::test]
async fn a_replayed_job_keeps_counting_attempts_and_dlq_show_shows_both_lives() {
    let sys = System::seeded(10).await;
    sys.mock.set_faults(FaultPlan {
        rules: vec![FaultRule::new(Fault::Errcode(-1)).on(Endpoint::TemplateSend)],
    });
    let mut config = WorkerConfig::default();
    config.retry.max_attempts = 2;
    let j = job(mp(1));
    let worker = sys.start_worker(config);
    sys.publish(std::slice::from_ref(&j)).await;
    sys.wait_finished(1, WAIT).await;
    let dlq = |args: &[&str]| {
        use secrecy::ExposeSecret;
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wxnotify"))
            .arg("dlq")
            .args(args)
            .env("DATABASE_URL", sys.db.url())
            .env("AMQP_URL", sys.settings.amqp_url.expose_secret())
            .env("WXNOTIFY_QUEUE_PREFIX", sys.topology.prefix())
            .env("RUST_LOG", "warn")
            .output()
            .expect("wxnotify dlq runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    dlq(&["replay", "--reason", "retries_exhausted"]);
    eventually("the second life died too", || async {
        scalar_i64(&sys, "SELECT count(*) FROM dead_letters").await == 2
    })
    .await;
    worker.stop().await;
    let (attempts, life): (i32, i32) =
        sqlx::query_as("SELECT attempts, life FROM deliveries WHERE job_id = $1")
            .bind(j.id.as_str())
            .fetch_one(&sys.db.pool)
            .await
            .unwrap();
    assert_eq!((attempts, life), (4, 2), "two lives of two attempts");
    let history: Vec<(i32, i32)> = sqlx::query_as(
        "SELECT attempt, life FROM delivery_attempts WHERE job_id = $1 ORDER BY attempt",
    )
    .bind(j.id.as_str())
    .fetch_all(&sys.db.pool)
    .await
    .unwrap();
    assert_eq!(history, [(1, 1), (2, 1), (3, 2), (4, 2)]);
    let newest: i64 = scalar_i64(&sys, "SELECT max(id) FROM dead_letters").await;
    let shown: serde_json::Value =
        serde_json::from_slice(&dlq(&["show", &newest.to_string(), "--json"])).unwrap();
    assert_eq!(shown["attempts"].as_array().unwrap().len(), 4, "{shown:#}");
    assert_eq!(shown["lives"].as_array().unwrap().len(), 2, "{shown:#}");
}

/// Shutdown with a send in flight: the worker keeps heartbeating until the send's outcome is
/// recorded, so its claim never looks like a dead worker's (a twin would be sent); it leaves the
/// `workers` table only after the drain.
#[tokio::test]
async fn a_stopping_worker_heartbeats_until_its_in_flight_sends_are_recorded() {
    let sys = System::seeded(10).await;
    sys.mock.set_faults(FaultPlan {
        rules: vec![
            FaultRule::new(Fault::Latency(Duration::from_secs(3)))
                .on(Endpoint::TemplateSend)
                .times(1),
        ],
    });
    let j = job(mp(1));
    let worker = sys.start_worker(WorkerConfig::default());
    sys.publish(std::slice::from_ref(&j)).await;
    eventually("the send is in flight", || async {
        sys.mock.stats().calls_to(Endpoint::TemplateSend) >= 1
    })
    .await;
    worker.shutdown.cancel();
    // More than a heartbeat period later the send is still in flight: the worker still
    // heartbeats.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(!worker.task.is_finished(), "the send is still in flight");
    let fresh = scalar_i64(
        &sys,
        "SELECT count(*) FROM workers WHERE heartbeat_at > now() - interval '1500 milliseconds'",
    )
    .await;
    assert_eq!(fresh, 1, "the draining worker's heartbeat is fresh");
    let stats = worker.stop().await;
    assert_eq!(stats.sent, 1, "{stats:?}");
    assert_eq!(sys.state(&j.id).await.as_deref(), Some("sent"));
    assert_eq!(
        scalar_i64(&sys, "SELECT count(*) FROM workers").await,
        0,
        "the worker left the table after the drain"
    );
}

/// Claims one job per person `0..n` and returns each with its claim.
async fn claimed(ledger: &Ledger, n: u64) -> Vec<(wxnotify_core::domain::Job, uuid::Uuid)> {
    let mut out = Vec::new();
    for i in 0..n {
        let j = job(mp(i));
        let Admission::Attempt { claim, .. } = ledger.claim(&j, Lane::Jobs).await.unwrap() else {
            panic!("a fresh job is claimed");
        };
        out.push((j, claim.id));
    }
    out
}

/// Records the deaths of `jobs` all at once (`not_following`, no send); each death's result.
async fn die_at_once(
    ledger: &Ledger,
    jobs: &[(wxnotify_core::domain::Job, uuid::Uuid)],
) -> Vec<Result<Written, wxnotify_core::batch::DbError>> {
    let failure = Failure::local("the person left the OA".to_owned());
    let keys: Vec<String> = jobs.iter().map(|(_, c)| format!("claim:{c}")).collect();
    let deaths: Vec<DeadJob<'_>> = jobs
        .iter()
        .zip(&keys)
        .map(|((j, c), key)| DeadJob {
            job: j,
            lane: Lane::Jobs,
            claim: Some(*c),
            sent: false,
            uncertain: false,
            reason: DeadReason::NotFollowing,
            failure: &failure,
            source: "worker",
            key,
            unsubscribe: None,
        })
        .collect();
    futures::future::join_all(deaths.iter().map(|d| ledger.record_dead(d))).await
}

#[tokio::test]
async fn deaths_at_once_share_statements_and_each_keeps_one_dead_letter() {
    let sys = System::seeded(120).await;
    let ledger = Ledger::new(sys.db.pool.clone());
    let jobs = claimed(&ledger, 120).await;
    sqlx::raw_sql(
        "CREATE SEQUENCE letter_statements;
         CREATE FUNCTION count_statement() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM nextval('letter_statements'); RETURN NULL; END $$;
         CREATE TRIGGER count_statement AFTER INSERT ON dead_letters
             FOR EACH STATEMENT EXECUTE FUNCTION count_statement();",
    )
    .execute(&sys.db.pool)
    .await
    .unwrap();
    let results = die_at_once(&ledger, &jobs).await;
    assert!(
        results.iter().all(|r| matches!(r, Ok(Written::Recorded))),
        "{results:?}"
    );
    let statements = scalar_i64(&sys, "SELECT last_value FROM letter_statements").await;
    assert!(
        statements < 20,
        "120 deaths at once took {statements} statements: they were not batched"
    );
    let state =
        "SELECT count(*) FROM deliveries WHERE state = 'dead' AND dead_reason = 'not_following'";
    assert_eq!(scalar_i64(&sys, state).await, 120);
    assert_eq!(
        scalar_i64(&sys, "SELECT count(*) FROM dead_letters").await,
        120
    );
    // The same deaths again, as the consumer retries a write whose reply was lost: each
    // recognises its own dead letter.
    let again = die_at_once(&ledger, &jobs).await;
    assert!(
        again.iter().all(|r| matches!(r, Ok(Written::Recorded))),
        "{again:?}"
    );
    assert_eq!(
        scalar_i64(&sys, "SELECT count(*) FROM dead_letters").await,
        120
    );
    // Another claim's death of a finished job writes nothing.
    let (j, _) = &jobs[0];
    let other = die_at_once(&ledger, &[(j.clone(), uuid::Uuid::new_v4())]).await;
    assert!(matches!(other[0], Ok(Written::Superseded)), "{other:?}");
}

#[tokio::test]
async fn a_death_postgres_refuses_fails_only_its_own_job() {
    let sys = System::seeded(30).await;
    let ledger = Ledger::new(sys.db.pool.clone());
    let jobs = claimed(&ledger, 30).await;
    let poison = jobs[17].0.id.as_str().to_owned();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SEQUENCE refusals;
         CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.job_id = '{poison}' THEN
                   PERFORM nextval('refusals'); RAISE EXCEPTION 'cannot store this one';
               END IF;
               RETURN NEW; END $$;
         CREATE TRIGGER refuse_one BEFORE INSERT ON dead_letters
             FOR EACH ROW EXECUTE FUNCTION refuse_one();"
    )))
    .execute(&sys.db.pool)
    .await
    .unwrap();
    let results = die_at_once(&ledger, &jobs).await;
    for (i, r) in results.iter().enumerate() {
        if i == 17 {
            assert!(r.is_err(), "the refused death fails: {r:?}");
        } else {
            assert!(matches!(r, Ok(Written::Recorded)), "job {i}: {r:?}");
        }
    }
    assert_eq!(
        scalar_i64(&sys, "SELECT count(*) FROM dead_letters").await,
        29
    );
    // Refused twice: in its batch with the others (the whole statement failed), then alone.
    assert_eq!(
        scalar_i64(&sys, "SELECT last_value FROM refusals").await,
        2,
        "the refused death shared a batch and was then tried alone"
    );
    let poisoned: String = sqlx::query_scalar("SELECT state FROM deliveries WHERE job_id = $1")
        .bind(&poison)
        .fetch_one(&sys.db.pool)
        .await
        .unwrap();
    assert_eq!(poisoned, "sending", "nothing of the refused death stays");
    // Once Postgres takes it, the retried death is recorded.
    sqlx::raw_sql("DROP TRIGGER refuse_one ON dead_letters")
        .execute(&sys.db.pool)
        .await
        .unwrap();
    let retried = die_at_once(&ledger, &jobs[17..18]).await;
    assert!(matches!(retried[0], Ok(Written::Recorded)), "{retried:?}");
    assert_eq!(
        scalar_i64(&sys, "SELECT count(*) FROM dead_letters").await,
        30
    );
}
