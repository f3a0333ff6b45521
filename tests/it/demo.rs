//! `wxnotify demo`, the README's first command, run as a newcomer runs it.

use std::time::Duration;

#[tokio::test]
async fn the_demo_runs_and_every_job_ends_in_the_state_it_must_have() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxnotify"))
        .args(["demo", "--jobs", "400", "--people", "400", "--json"])
        .env("DATABASE_URL", crate::support::server_url())
        .env("AMQP_URL", crate::support::amqp_url())
        .env_remove("WXNOTIFY_CONFIG")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), out)
        .await
        .expect("the demo finishes within 4 minutes")
        .expect("the demo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json output");
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
    ] {
        assert!(dead.contains_key(reason), "no {reason} in {dead:?}");
    }
    assert!(report["receipts_stored"].as_u64().unwrap() > 0);
}
