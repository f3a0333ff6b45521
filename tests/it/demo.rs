//! The demo, the README's first command, with the options a newcomer runs it with.

use std::time::Duration;

use wxnotify_core::config::Settings;
use wxnotify_sandbox::demo::{self, DemoOptions};

#[tokio::test]
async fn the_demo_runs_and_every_job_ends_in_the_state_it_must_have() {
    let vars = std::collections::HashMap::from([
        ("DATABASE_URL".to_string(), crate::support::server_url()),
        ("AMQP_URL".to_string(), crate::support::amqp_url()),
    ]);
    let base = Settings::from_lookup(|k| vars.get(k).cloned()).expect("settings");
    let options = DemoOptions {
        jobs: 400,
        people: 400,
        rate: 3000,
        latency_ms: 5,
        campaign: 300,
        json: true,
    };
    let report = tokio::time::timeout(Duration::from_secs(240), demo::report(&options, &base))
        .await
        .expect("the demo finishes within 4 minutes")
        .expect("the demo runs");
    let report = serde_json::to_value(&report).expect("a JSON report");
    assert_eq!(report["consistent"], true, "{report:#}");
    assert_eq!(report["mismatches"], serde_json::json!([]));
    // The mix really had every kind of outcome in it.
    assert!(
        report["worker"]["sent"].as_u64().unwrap() > 200,
        "{report:#}"
    );
    assert!(report["worker"]["duplicate"].as_u64().unwrap() >= 4);
    let dead = report["worker"]["dead"].as_object().unwrap();
    for reason in [
        "malformed",
        "no_unionid",
        "not_following",
        "expired",
        "payload_rejected",
        "no_channel",
    ] {
        assert!(dead.contains_key(reason), "no {reason} in {dead:?}");
    }
    assert!(report["receipts_stored"].as_u64().unwrap() > 0);
    // People who do not follow the OA and granted the subscribe template got it.
    assert!(
        report["wechat_subscribe_accepted"].as_u64().unwrap() > 0,
        "{report:#}"
    );
}
