//! One follower sync pass: `user/get` pages → `user/info/batchget` details → batched upserts.
//!
//! Two halves run at once and meet in a channel of one page: the *fetcher* walks `user/get`
//! (10,000 openids a page) and resolves each page's details with batchget calls (100 openids
//! each, `concurrency` in flight, rate-limited); the *writer* stores each page with one multi-row
//! upsert in the transaction that moves the pass's cursor. At most about three pages are in
//! memory whatever the follower count. Transient WeChat errors are retried with exponential
//! backoff and jitter (backon); token errors are handled by [`TokenStore::with_token`]. When the
//! fetcher fails, the writer still stores what was fetched, so the next run resumes from there.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::mpsc;

use super::fetch::{FetchedPage, Fetcher};
use super::progress::Progress;
use super::report::{SyncError, SyncReport};
use super::store::{self, Pass};
use wxnotify_core::domain::{AppName, OpenId};
use wxnotify_core::wechat::{TokenStore, WechatClient};

/// How a sync runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// batchget calls in flight at once.
    pub concurrency: usize,
    /// batchget (and fallback user/info) calls per second at most.
    pub calls_per_second: NonZeroU32,
    /// Stop after this many pages in this run (the next run resumes); `None` = to the end.
    pub max_pages: Option<u32>,
    /// Abandon an unfinished pass and start from the beginning.
    pub restart: bool,
    /// Retries of a transient failure before the run gives up (resumable).
    pub max_retries: usize,
    /// The first retry delay (doubling, with jitter, up to 30 s).
    pub retry_min_delay: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            calls_per_second: NonZeroU32::new(200).expect("non-zero"),
            max_pages: None,
            restart: false,
            max_retries: 6,
            retry_min_delay: Duration::from_millis(500),
        }
    }
}

/// Pulls every follower of `app` and their unionid into `oa_followers`, resuming an interrupted
/// pass. Followers absent from a pass that reached the end are marked unsubscribed.
#[tracing::instrument(skip_all, fields(app = %app), err(Display))]
pub async fn sync_followers(
    pool: &PgPool,
    client: &WechatClient,
    tokens: &TokenStore,
    app: &AppName,
    opts: &SyncOptions,
    progress: &Progress,
) -> Result<SyncReport, SyncError> {
    let lock = store::try_lock_app(pool, app)
        .await?
        .ok_or_else(|| SyncError::Busy(app.clone()))?;
    let outcome = run_locked(pool, client, tokens, app, opts, progress).await;
    if let Err(e) = lock.release().await {
        // The connection is gone with the value, which frees the lock on the server anyway.
        tracing::warn!(error = %e, "the follower sync lock was not released cleanly");
    }
    outcome
}

/// One run of the sync, with the app's lock held.
async fn run_locked(
    pool: &PgPool,
    client: &WechatClient,
    tokens: &TokenStore,
    app: &AppName,
    opts: &SyncOptions,
    progress: &Progress,
) -> Result<SyncReport, SyncError> {
    let clock = Instant::now();
    if opts.restart && store::abandon_pass(pool, app).await? {
        tracing::info!("unfinished pass abandoned (--restart)");
    }
    let (pass, resumed) = match store::resume_pass(pool, app).await? {
        Some(pass) => (pass, true),
        None => (store::start_pass(pool, app).await?, false),
    };
    tracing::info!(pass_id = pass.id, resumed, cursor = ?pass.cursor, "follower sync pass");
    progress.start(pass.total.map(|t| t as u64), pass.seen as u64);
    let fetcher = Fetcher::new(client, tokens, app, opts);
    let cursor = pass.cursor.clone().and_then(|c| OpenId::parse(c).ok());
    let (tx, rx) = mpsc::channel(1);
    let (fetched, written) = tokio::join!(
        fetcher.run(cursor, opts.max_pages, tx),
        write_pages(pool, app, &pass, rx, progress)
    );
    progress.finish();
    let run = written?;
    fetched?;
    let unsubscribed = if run.reached_end {
        store::complete_pass(pool, app, &pass).await?
    } else {
        0
    };
    let stored = store::load_pass(pool, pass.id).await?;
    let report = report(app, &stored, resumed, &run, unsubscribed, clock.elapsed());
    tracing::info!(
        followers = report.followers,
        without_unionid = report.without_unionid,
        unsubscribed,
        completed = report.completed,
        "follower sync run finished"
    );
    Ok(report)
}

fn report(
    app: &AppName,
    pass: &Pass,
    resumed: bool,
    run: &RunCounts,
    unsubscribed: i64,
    elapsed: Duration,
) -> SyncReport {
    SyncReport {
        app: app.to_string(),
        pass_id: pass.id,
        resumed,
        completed: run.reached_end,
        total: pass.total.unwrap_or(pass.seen) as u64,
        followers: pass.seen as u64,
        with_unionid: pass.with_unionid as u64,
        without_unionid: pass.without_unionid as u64,
        unsubscribed: unsubscribed as u64,
        pages: pass.pages as u64,
        followers_this_run: run.seen,
        seconds: elapsed.as_secs_f64(),
    }
}

#[derive(Debug, Default)]
struct RunCounts {
    seen: u64,
    reached_end: bool,
}

/// The writer: stores each page with its cursor, in order.
async fn write_pages(
    pool: &PgPool,
    app: &AppName,
    pass: &Pass,
    mut rx: mpsc::Receiver<FetchedPage>,
    progress: &Progress,
) -> Result<RunCounts, SyncError> {
    let mut run = RunCounts::default();
    while let Some(page) = rx.recv().await {
        if !page.users.is_empty() {
            let counts = store::store_page(
                pool,
                app,
                pass.id,
                &page.users,
                page.next.as_ref(),
                page.total,
            )
            .await?;
            run.seen += counts.seen as u64;
            progress.advance(counts.seen as u64, page.total);
            metrics::counter!("wxnotify_followers_synced_total", "app" => app.to_string())
                .increment(counts.seen as u64);
        }
        run.reached_end |= page.next.is_none();
    }
    Ok(run)
}
