//! `wxnotify-sandbox bench --scenario campaign`: how long the audience snapshot of a large campaign
//! takes on this machine (a recipients file of Mini Program openids, each with its own template
//! field, and the followers audience), and the memory it needs; then (unless
//! `--send-seconds 0`) the file campaign is sent for a measured window beside a steady
//! transactional load, paused, resumed and cancelled ([`campaign_sends`](super::campaign_sends)).

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::campaign_sends::{self, Phases, SendFigures};
use crate::mock_wechat::{self, MockConfig, MockWechat};
use crate::scratch::{Scratch, seed_mapping};
use wxnotify_core::config::Settings;
use wxnotify_core::domain::{AppName, TemplateData, TemplateId};
use wxnotify_services::campaigns::audience;
use wxnotify_services::campaigns::model::Pacing;
use wxnotify_services::campaigns::store::{self, AudienceSource, NewCampaign};

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignBench {
    /// Recipients in the file (and followers seeded).
    pub recipients: u64,
    /// Seconds to seed the mapping (not part of the snapshot).
    pub seed_seconds: f64,
    /// Seconds to create a campaign from the NDJSON file: parse, COPY, resolve, insert.
    pub snapshot_file_seconds: f64,
    /// Of the file's recipients, reachable.
    pub reachable: u64,
    /// Unreachable.
    pub unreachable: u64,
    /// Seconds to create a campaign for every subscribed follower.
    pub snapshot_followers_seconds: f64,
    /// Followers in it.
    pub followers: u64,
    /// Peak resident set of this process (which parsed the file and streamed the COPY), MiB,
    /// read after the snapshot.
    pub peak_rss_mib: f64,
    /// The sending figures (none with `--send-seconds 0`).
    pub sending: Option<SendFigures>,
}

/// Runs the campaign benchmark with `n` recipients, sending for `send_seconds` (0: the
/// snapshot only).
pub async fn run(
    base: &Settings,
    n: u64,
    send_seconds: u64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let phases = Phases {
        baseline_seconds: (send_seconds / 2).clamp(10, 30),
        send_seconds,
    };
    let cfg = MockConfig {
        followers: n,
        latency: campaign_sends::LATENCY,
        max_recorded_sends: phases.sends_to_record(),
        ..MockConfig::default()
    };
    let mock = MockWechat::start(cfg.clone()).await?;
    let scratch = Scratch::create(base, "campaign", &mock, campaign_sends::RATE).await?;
    let result = async {
        let (mut r, campaign) = measure(&scratch, &cfg, n).await?;
        if !json {
            print_snapshot(&r);
        }
        if send_seconds > 0 {
            let sending = campaign_sends::measure(&scratch, &mock, campaign, n, phases).await?;
            if !json {
                print_sending(&sending);
            }
            r.sending = Some(sending);
        }
        anyhow::Ok(r)
    }
    .await;
    scratch.remove().await;
    mock.shutdown().await;
    let r = result?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_snapshot(r: &CampaignBench) {
    {
        println!(
            "campaign snapshot: {} recipients from an NDJSON file in {:.1} s ({} reachable, {} unreachable); {} followers in {:.1} s; peak RSS {:.0} MiB (mapping seeded in {:.1} s)",
            r.recipients,
            r.snapshot_file_seconds,
            r.reachable,
            r.unreachable,
            r.followers,
            r.snapshot_followers_seconds,
            r.peak_rss_mib,
            r.seed_seconds
        );
    }
}

fn print_sending(s: &SendFigures) {
    println!(
        "campaign sending ({} ms WeChat latency, {}/s app limit, {} transactional jobs/s beside it):",
        s.latency_ms,
        s.rate_limit,
        campaign_sends::TRANSACTIONAL_PER_SECOND
    );
    println!(
        "  rate         {:.0} campaign sends/s over {:.0} s = {:.1} % of the {:.0}/s the transactional lane leaves ({:.0} transactional/s)",
        s.campaign_per_second,
        s.window_seconds,
        s.campaign_percent_of_left,
        s.left_by_transactional,
        s.transactional_per_second
    );
    println!(
        "  transactional publish → WeChat answer p99: {:.0} ms during the campaign ({} jobs) vs {:.0} ms without ({} jobs): {:+.0} ms; {} not sent",
        s.during_p99_ms,
        s.during_jobs,
        s.baseline_p99_ms,
        s.baseline_jobs,
        s.p99_increase_ms,
        s.transactional_unsent
    );
    println!(
        "  pause        last campaign send {:.2} s after the pause ({} sends later than 2 s); resume: first send after {:.2} s",
        s.pause_seconds, s.sends_paused_after_2s, s.resume_seconds
    );
    println!(
        "  cancel       last campaign send {:.2} s after the cancel; of {} dispatched: {} sent, {} cancelled, {} dead, {} unsettled; {} sent twice",
        s.cancel_seconds, s.dispatched, s.sent, s.cancelled, s.dead, s.unsettled, s.sent_twice
    );
    println!(
        "  worker (with its dispatcher) peak RSS {:.1} MiB",
        s.worker_peak_rss_mib
    );
}

async fn measure(
    scratch: &Scratch,
    cfg: &MockConfig,
    n: u64,
) -> anyhow::Result<(CampaignBench, uuid::Uuid)> {
    let started = Instant::now();
    seed_mapping(&scratch.pool, n, cfg).await?;
    let seed_seconds = started.elapsed().as_secs_f64();
    let path = std::env::temp_dir().join(format!("wxnotify-bench-{}.ndjson", uuid::Uuid::new_v4()));
    {
        let file = std::fs::File::create(&path).context("writing the recipients file")?;
        let mut w = std::io::BufWriter::new(file);
        for i in 0..n {
            writeln!(
                w,
                "{{\"mp_openid\":\"{}\",\"data\":{{\"thing1\":\"Order {i}\"}}}}",
                mock_wechat::mp_openid(i)
            )?;
        }
        w.flush()?;
    }
    let new = NewCampaign {
        app: AppName::default_app(),
        template_id: TemplateId::parse("TPL_ORDER_SHIPPED")?,
        data: TemplateData::from_pairs(&[("thing1", "Winter sale"), ("time2", "2026-12-12")])
            .map_err(anyhow::Error::msg)?,
        url: None,
        miniprogram: None,
        not_after: None,
        pacing: Pacing {
            rate_per_second: 2000,
            window: None,
            time_zone: chrono_tz::UTC,
            start_at: None,
            daily_cap: None,
        },
        created_by: "bench".into(),
        name: None,
        truncate: false,
        mp_subscribe: None,
    };
    let started = Instant::now();
    let items = audience::read_file(&path)?;
    let file_report = store::create(&scratch.pool, &new, 2000, AudienceSource::File(items)).await;
    let snapshot_file_seconds = started.elapsed().as_secs_f64();
    std::fs::remove_file(&path).ok();
    let file_report = file_report?;
    let started = Instant::now();
    let followers = store::create(&scratch.pool, &new, 2000, AudienceSource::Followers).await?;
    let snapshot_followers_seconds = started.elapsed().as_secs_f64();
    let bench = CampaignBench {
        recipients: n,
        seed_seconds,
        snapshot_file_seconds,
        reachable: file_report.reachable,
        unreachable: file_report.audience - file_report.reachable,
        snapshot_followers_seconds,
        followers: followers.reachable,
        peak_rss_mib: self_peak_rss_mib().unwrap_or(0.0),
        sending: None,
    };
    Ok((bench, file_report.id))
}

/// Peak resident set (VmHWM) of this process, MiB.
fn self_peak_rss_mib() -> Option<f64> {
    let status = procfs::process::Process::myself().ok()?.status().ok()?;
    Some(status.vmhwm? as f64 / 1024.0)
}
