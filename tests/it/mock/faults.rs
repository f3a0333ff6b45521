//! Injected faults: errcodes, latency, HTTP statuses, dropped connections.

use std::time::{Duration, Instant};

use wxnotify_sandbox::mock_wechat::{Endpoint, Fault, FaultPlan, FaultRule};

use super::support::{Fake, raw_msgid, shipped, with_id};

fn plan(rule: FaultRule) -> FaultPlan {
    rule.into()
}

#[tokio::test]
async fn an_errcode_fault_answers_the_canonical_errmsg_for_its_count_only() {
    let fake = Fake::default().await;
    let token = fake.oa_token().await;
    let rule = FaultRule::new(Fault::Errcode(45009))
        .on(Endpoint::TemplateSend)
        .times(2);
    fake.mock.set_faults(plan(rule));
    for _ in 0..2 {
        let msg = fake.send(&token, &shipped(0)).await.assert_err(45009);
        assert!(
            msg.starts_with("reach max api daily quota limit rid: "),
            "{msg}"
        );
    }
    fake.send(&token, &shipped(0)).await.json();
    let stats = fake.mock.stats();
    assert_eq!(stats.answers_with(45009), 2);
    assert_eq!(stats.sends_accepted, 1, "a refused send is not recorded");
    assert_eq!(stats.faults_injected, 2);
}

#[tokio::test]
async fn a_fault_on_one_endpoint_leaves_the_others_alone() {
    let fake = Fake::default().await;
    fake.mock.set_faults(plan(
        FaultRule::new(Fault::Errcode(-1)).on(Endpoint::TemplateSend),
    ));
    let token = fake.oa_token().await;
    let msg = fake.send(&token, &shipped(0)).await.assert_err(-1);
    assert!(msg.starts_with("system error rid: "), "{msg}");
    fake.mock.clear_faults();
    fake.send(&token, &shipped(0)).await.json();
}

#[tokio::test]
async fn a_rule_with_probability_zero_never_fires() {
    let fake = Fake::default().await;
    fake.mock
        .set_faults(plan(FaultRule::new(Fault::DropConnection).probability(0.0)));
    let token = fake.oa_token().await;
    for _ in 0..5 {
        fake.send(&token, &shipped(0)).await.json();
    }
    assert_eq!(fake.mock.stats().faults_injected, 0);
}

#[tokio::test]
async fn a_latency_fault_delays_the_answer() {
    let fake = Fake::default().await;
    let token = fake.oa_token().await;
    let latency = Fault::Latency(Duration::from_millis(300));
    fake.mock
        .set_faults(plan(FaultRule::new(latency).on(Endpoint::TemplateSend)));
    let started = Instant::now();
    fake.send(&token, &shipped(0)).await.json();
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn an_http_status_fault_answers_that_status() {
    let fake = Fake::default().await;
    fake.mock
        .set_faults(plan(FaultRule::new(Fault::HttpStatus(502))));
    let raw = fake.get("/cgi-bin/token", &[]).await;
    assert_eq!(raw.status, 502);
    assert!(!raw.text.contains("errcode"));
}

#[tokio::test]
async fn a_dropped_connection_gets_no_answer_and_sends_nothing() {
    let fake = Fake::default().await;
    let token = fake.oa_token().await;
    fake.mock
        .set_faults(plan(FaultRule::new(Fault::DropConnection).times(1)));
    let err = fake.try_send(&token, &shipped(0)).await.unwrap_err();
    assert!(!err.is_status(), "{err:?}");
    assert!(fake.mock.sends().is_empty());
    fake.send(&token, &shipped(0)).await.json();
}

#[tokio::test]
async fn accept_then_drop_records_the_send_and_a_retry_gets_the_original_msgid() {
    let fake = Fake::default().await;
    let token = fake.oa_token().await;
    let rule = FaultRule::new(Fault::AcceptThenDrop)
        .on(Endpoint::TemplateSend)
        .times(1);
    fake.mock.set_faults(plan(rule));
    let body = with_id(shipped(0), "job-42");
    fake.try_send(&token, &body).await.unwrap_err();
    let recorded = fake.mock.sends();
    assert_eq!(recorded.len(), 1, "accepted although unanswered");
    let retry = fake.send(&token, &body).await;
    assert_eq!(raw_msgid(&retry.text), recorded[0].msgid);
    assert_eq!(fake.mock.stats().duplicate_sends_dropped, 1);
}
