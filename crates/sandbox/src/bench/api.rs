//! `wxnotify-sandbox bench --scenario api`: figures of the producer API on this machine. A scratch
//! database and queue prefix, `serve`'s router on port 0 in this process (served by `serve`'s
//! own accept loop with its default limits: TCP_NODELAY, timeouts, connection caps), an API
//! key, then:
//!
//! - **batch**: `--api-batches` sequential `POST /v1/notifications/batch` of 1,000 jobs each;
//!   jobs accepted per second per batch (200 once RabbitMQ confirmed all 1,000), median; then
//!   as many batches again from four producers at once: jobs accepted per second over the
//!   wall time (what the server accepts, not what one waiting client sees);
//! - **single**: `POST /v1/notifications` at a fixed 500 requests/s for `--api-seconds`, each
//!   request sent at its scheduled time whatever the earlier ones do (open loop), latency
//!   measured from that time (no coordinated omission): p50, p99, max.
//!
//! No worker runs: the jobs wait in the scratch queue, which is deleted at the end.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::mock_wechat::{self, MockConfig, MockWechat};
use crate::scratch::Scratch;
use wxnotify_api::producer::api_keys;
use wxnotify_api::producer::link::{ProducerApi, ProducerOptions};
use wxnotify_api::{AppState, health, router};
use wxnotify_core::config::Settings;
use wxnotify_core::domain::AppName;
use wxnotify_core::wechat::Wechat;
use wxnotify_core::wechat::client::ClientOptions;

/// The figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiBenchResult {
    /// Batches of 1,000 posted.
    pub batches: usize,
    /// Median jobs accepted per second within one batch request.
    pub batch_jobs_per_second_median: f64,
    /// The slowest batch, jobs per second.
    pub batch_jobs_per_second_min: f64,
    /// Producers posting the same number of batches at once.
    pub concurrent_producers: usize,
    /// Jobs accepted per second with them (all batches over the wall time).
    pub concurrent_jobs_per_second: f64,
    /// Single POSTs sent.
    pub single_requests: u64,
    /// Their rate, requests per second.
    pub single_rate: u32,
    /// Latency percentiles of the single POSTs, milliseconds.
    pub single_p50_ms: f64,
    /// 99th percentile.
    pub single_p99_ms: f64,
    /// Slowest.
    pub single_max_ms: f64,
    /// Single POSTs not answered 202.
    pub single_errors: u64,
}

/// Runs the scenario and prints its figures.
pub async fn run(
    base: &Settings,
    batches: usize,
    seconds: u64,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let mock = MockWechat::start(MockConfig {
        followers: 100,
        ..MockConfig::default()
    })
    .await?;
    let scratch = Scratch::create(base, "apibench", &mock, 1000).await?;
    let result = measure(&scratch, &mock, batches, seconds).await;
    scratch.remove().await;
    mock.shutdown().await;
    let r = result?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "api batch:  {} batches of 1,000 one at a time: median {:.0} jobs/s accepted (slowest batch {:.0} jobs/s)",
            r.batches, r.batch_jobs_per_second_median, r.batch_jobs_per_second_min
        );
        println!(
            "api batch:  {} batches of 1,000 from {} producers at once: {:.0} jobs/s accepted",
            r.batches, r.concurrent_producers, r.concurrent_jobs_per_second
        );
        println!(
            "api single: {} POSTs at {}/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} not 202",
            r.single_requests,
            r.single_rate,
            r.single_p50_ms,
            r.single_p99_ms,
            r.single_max_ms,
            r.single_errors
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Producers posting batches at once in the concurrent part of the batch figures.
const CONCURRENT_PRODUCERS: usize = 4;

/// Posts one batch of 1,000; its time to the answer. Every job must be accepted.
async fn post_batch(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    tag: &str,
    body: &serde_json::Value,
) -> anyhow::Result<Duration> {
    let body = serde_json::to_vec(body)?;
    let started = Instant::now();
    let response = http
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let answer: serde_json::Value = response.json().await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        status == 200 && answer["accepted"] == 1000,
        "batch {tag} not fully accepted: {status} {}",
        answer["accepted"]
    );
    Ok(elapsed)
}

async fn measure(
    scratch: &Scratch,
    mock: &MockWechat,
    batches: usize,
    seconds: u64,
) -> anyhow::Result<ApiBenchResult> {
    let settings = &scratch.settings;
    let mut settings_here = settings.clone();
    settings_here.wechat_api_base = mock.base_url();
    let Wechat { client, tokens } =
        Wechat::build(&settings_here, &scratch.pool, &ClientOptions::default())?;
    let producer = ProducerApi::new(
        scratch.pool.clone(),
        settings.amqp_url.clone(),
        scratch.topology.clone(),
        &settings.apps,
        ProducerOptions::default(),
    );
    let state = AppState::new(
        scratch.pool.clone(),
        client,
        tokens,
        &settings.apps,
        health::metrics_handle(),
    )?
    .with_producer(producer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // `serve`'s own accept loop and limits (TCP_NODELAY, timeouts, connection caps): the
    // figures are those of what ships.
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn({
        let stop = stop.clone();
        async move {
            wxnotify_api::server::serve(
                listener,
                router(state),
                &wxnotify_api::server::ServerLimits::default(),
                stop.cancelled_owned(),
            )
            .await
        }
    });
    let key = api_keys::create(&scratch.pool, &AppName::default_app(), Some("bench"))
        .await?
        .key;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let job = |id: String, person: u64| {
        json!({
            "id": id,
            "to": {"mp_openid": mock_wechat::mp_openid(person % 100)},
            "template_id": "TPL_ORDER_SHIPPED",
            "data": {"thing1": "订单已发货", "time2": "2026-11-24 10:00"}
        })
    };

    // Batches, one at a time (one warm-up batch first: connections and channels open).
    let batch_url = format!("http://{addr}/v1/notifications/batch");
    let post = |tag: String| {
        let (http, url, key) = (http.clone(), batch_url.clone(), key.clone());
        let body =
            json!({"jobs": (0..1000).map(|i| job(format!("{tag}-{i}"), i)).collect::<Vec<_>>()});
        async move { post_batch(&http, &url, &key, &tag, &body).await }
    };
    let mut rates = Vec::new();
    for b in 0..=batches {
        let elapsed = post(format!("b{b}")).await?;
        if b > 0 {
            rates.push(1000.0 / elapsed.as_secs_f64());
        }
    }
    // The same number of batches from several producers at once: what the server accepts.
    let started = Instant::now();
    let mut producers = tokio::task::JoinSet::new();
    for p in 0..CONCURRENT_PRODUCERS {
        let mine: Vec<_> = (p..batches)
            .step_by(CONCURRENT_PRODUCERS)
            .map(|b| post(format!("c{b}")))
            .collect();
        producers.spawn(async move {
            for batch in mine {
                batch.await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = producers.join_next().await {
        done??;
    }
    let concurrent_jobs_per_second = (batches * 1000) as f64 / started.elapsed().as_secs_f64();
    rates.sort_by(f64::total_cmp);

    // Single POSTs at a fixed rate, open loop.
    let rate = 500u32;
    let total = u64::from(rate) * seconds;
    let single_url = Arc::new(format!("http://{addr}/v1/notifications"));
    let key = Arc::new(key);
    let histogram = Arc::new(parking_lot::Mutex::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram")?,
    ));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let interval = Duration::from_secs(1) / rate;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        let at = start + interval * n as u32;
        let body = serde_json::to_vec(&job(format!("s-{n}"), n))?;
        let (http, url, key, histogram, errors) = (
            http.clone(),
            single_url.clone(),
            key.clone(),
            histogram.clone(),
            errors.clone(),
        );
        tasks.spawn(async move {
            tokio::time::sleep_until(at).await;
            let ok = http
                .post(url.as_str())
                .bearer_auth(key.as_str())
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16() == 202)
                .unwrap_or(false);
            let micros = at.elapsed().as_micros() as u64;
            histogram.lock().record(micros.max(1)).ok();
            if !ok {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    stop.cancel();
    let _ = server.await;
    let h = histogram.lock();
    let ms = |v: u64| v as f64 / 1000.0;
    Ok(ApiBenchResult {
        batches,
        batch_jobs_per_second_median: rates.get(rates.len() / 2).copied().unwrap_or(0.0),
        batch_jobs_per_second_min: rates.first().copied().unwrap_or(0.0),
        concurrent_producers: CONCURRENT_PRODUCERS,
        concurrent_jobs_per_second,
        single_requests: total,
        single_rate: rate,
        single_p50_ms: ms(h.value_at_quantile(0.5)),
        single_p99_ms: ms(h.value_at_quantile(0.99)),
        single_max_ms: ms(h.max()),
        single_errors: errors.load(std::sync::atomic::Ordering::Relaxed),
    })
}
