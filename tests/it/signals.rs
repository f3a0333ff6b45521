//! The worker as operators run it: a process stopped with a real SIGTERM (what `docker stop`,
//! systemd and Kubernetes send) records every job in flight, exits 0 and logs no error.

use std::time::Duration;

use wxnotify_core::domain::{Job, OpenId, Recipient};
use wxnotify_sandbox::mock_wechat::{self, Endpoint, MockConfig};

use crate::system::System;
use crate::worker::job;

#[tokio::test]
async fn sigterm_stops_a_worker_process_after_recording_every_job_in_flight_and_logs_no_error() {
    let config = MockConfig {
        followers: 300,
        latency: Duration::from_millis(400),
        ..MockConfig::default()
    };
    let sys = System::new(config, 10_000).await;
    sys.seed_people(300).await;
    let jobs: Vec<Job> = (0..300u64)
        .filter(|i| (i + 1) % 10 != 0)
        .take(200)
        .map(|i| {
            job(Recipient::MpOpenid(
                OpenId::parse(mock_wechat::mp_openid(i)).unwrap(),
            ))
        })
        .collect();
    sys.publish(&jobs).await;
    let mut child = crate::resilience::worker_command(&sys)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the wxnotify binary runs");
    // The log is read while the worker runs, so a full pipe never blocks it.
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let log = tokio::spawn(async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
        text
    });
    // Wait until sends are in flight at the fake WeChat (each takes 400 ms there).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sys.mock.stats().calls_to(Endpoint::TemplateSend) < 20 {
        assert!(tokio::time::Instant::now() < deadline, "no sends started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = child.id().expect("the worker runs") as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the worker exits within 30 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    // A clean stop is not an incident: nothing at ERROR (lapin once logged a spurious
    // "Connection error" for channels dropped while the connection was closing).
    let log = log.await.unwrap();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "a clean stop logged errors: {errors:#?}");

    let states = sys.states().await;
    assert_eq!(
        states.get("sending"),
        None,
        "nothing left half done: {states:?}"
    );
    let sent = *states.get("sent").unwrap_or(&0);
    assert!(sent > 0 && sent < 200, "it stopped mid-run: {states:?}");
    assert_eq!(
        sys.mock.stats().sends_accepted as i64,
        sent,
        "every send WeChat accepted is recorded"
    );
}
