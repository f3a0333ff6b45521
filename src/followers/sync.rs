//! One follower sync pass: `user/get` pages → `user/info/batchget` details → batched upserts.
//!
//! Two halves run at once and meet in a channel of one page: the *fetcher* walks `user/get`
//! (10,000 openids a page) and resolves each page's details with batchget calls (100 openids
//! each, `concurrency` in flight, rate-limited); the *writer* stores each page with one multi-row
//! upsert in the transaction that moves the pass's cursor. At most about three pages are in
//! memory whatever the follower count. Transient WeChat errors are retried with exponential
//! backoff and jitter (backon); token errors are handled by [`TokenStore::with_token`]. When the
//! fetcher fails, the writer still stores what was fetched, so the next run resumes from there.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use futures::{StreamExt, TryStreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::mpsc;

use super::progress::Progress;
use super::store::{self, Pass};
use crate::domain::{AppName, OpenId};
use crate::wechat::client::{BATCHGET_MAX, UserInfo};
use crate::wechat::{ErrClass, PermanentKind, TokenError, TokenStore, WechatClient};

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

/// What a run did. `followers` etc. count the whole pass, including earlier runs of it.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// The app.
    pub app: String,
    /// The pass.
    pub pass_id: i64,
    /// Whether this run resumed an interrupted pass.
    pub resumed: bool,
    /// Whether the pass reached the end of the follower list.
    pub completed: bool,
    /// WeChat's follower count.
    pub total: u64,
    /// Followers stored by the pass.
    pub followers: u64,
    /// Of which with a unionid.
    pub with_unionid: u64,
    /// Of which without: the OA is not bound to an Open Platform account (or they cannot be
    /// joined to Mini Program users for another reason).
    pub without_unionid: u64,
    /// Followers absent from the completed pass, now marked unsubscribed.
    pub unsubscribed: u64,
    /// Pages stored by the pass.
    pub pages: u64,
    /// Followers stored by this run.
    pub followers_this_run: u64,
    /// Wall time of this run.
    pub seconds: f64,
}

impl SyncReport {
    /// The one-line summary printed at the end.
    pub fn summary(&self) -> String {
        let state = if self.completed {
            "complete"
        } else {
            "interrupted, run again to resume"
        };
        let mut line = format!(
            "{}: {} of {} followers synced ({state}; {} with unionid, {} without; {} marked unsubscribed) in {:.1} s",
            self.app,
            self.followers,
            self.total,
            self.with_unionid,
            self.without_unionid,
            self.unsubscribed,
            self.seconds
        );
        if self.without_unionid > 0 {
            line.push_str(
                ". Followers without unionid mean the OA is not bound to a WeChat Open Platform account: they cannot be joined to Mini Program users",
            );
        }
        line
    }
}

/// Why a sync stopped. The pass stays resumable in every case.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Another process is syncing this app.
    #[error("another sync-followers of app {0} is running; wait for it to finish")]
    Busy(AppName),
    /// WeChat kept failing or refused.
    #[error("WeChat {what} failed (the pass is saved; run again to resume): {source}")]
    Wechat {
        /// The endpoint.
        what: &'static str,
        /// The cause.
        #[source]
        source: TokenError,
    },
    /// Postgres failed.
    #[error("Postgres failed during the follower sync: {0}")]
    Db(#[from] sqlx::Error),
}

impl SyncError {
    /// The exit code of `sync-followers` for this error (`src/cli.rs`).
    pub fn exit_code(&self) -> u8 {
        use crate::cli::{EXIT_CONFIG, EXIT_FAILURE, EXIT_UNAVAILABLE};
        match self {
            SyncError::Busy(_) => EXIT_FAILURE,
            SyncError::Db(_) => EXIT_UNAVAILABLE,
            SyncError::Wechat { source, .. } => match source.class() {
                ErrClass::Transient | ErrClass::QuotaExhausted => EXIT_UNAVAILABLE,
                ErrClass::Permanent(PermanentKind::Config) => EXIT_CONFIG,
                _ => EXIT_FAILURE,
            },
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
    let clock = Instant::now();
    let _lock = store::try_lock_app(pool, app)
        .await?
        .ok_or_else(|| SyncError::Busy(app.clone()))?;
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

/// One page with its details, on its way to the writer.
struct FetchedPage {
    users: Vec<UserInfo>,
    /// Where the next page starts; `None` = this was the last page.
    next: Option<OpenId>,
    total: u64,
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

/// The fetcher: walks `user/get` and resolves details with batchget.
struct Fetcher<'a> {
    client: &'a WechatClient,
    tokens: &'a TokenStore,
    app: &'a AppName,
    concurrency: usize,
    /// Shared by every batchget in flight: WeChat's rate is per app, not per call site.
    limiter: DefaultDirectRateLimiter,
    backoff: ExponentialBuilder,
}

impl<'a> Fetcher<'a> {
    fn new(
        client: &'a WechatClient,
        tokens: &'a TokenStore,
        app: &'a AppName,
        opts: &SyncOptions,
    ) -> Self {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(opts.retry_min_delay)
            .with_max_delay(Duration::from_secs(30))
            .with_max_times(opts.max_retries)
            .with_jitter();
        Self {
            client,
            tokens,
            app,
            concurrency: opts.concurrency.max(1),
            limiter: RateLimiter::direct(Quota::per_second(opts.calls_per_second)),
            backoff,
        }
    }

    async fn run(
        &self,
        mut cursor: Option<OpenId>,
        max_pages: Option<u32>,
        tx: mpsc::Sender<FetchedPage>,
    ) -> Result<(), SyncError> {
        let mut pages = 0u32;
        loop {
            if max_pages.is_some_and(|max| pages >= max) {
                return Ok(());
            }
            let page = self.page(cursor.as_ref()).await?;
            let users = if page.openids.is_empty() {
                Vec::new()
            } else {
                self.details(&page.openids).await?
            };
            let next = page.next_openid;
            let fetched = FetchedPage {
                users,
                next: next.clone(),
                total: page.total,
            };
            if tx.send(fetched).await.is_err() {
                return Ok(()); // the writer failed; its error is the one reported
            }
            pages += 1;
            match next {
                Some(next) => cursor = Some(next),
                None => return Ok(()),
            }
        }
    }

    async fn page(
        &self,
        cursor: Option<&OpenId>,
    ) -> Result<crate::wechat::client::FollowerPage, SyncError> {
        let call = || {
            self.tokens.with_token(self.app, move |token| async move {
                self.client.user_get(&token, cursor).await
            })
        };
        self.retrying("user/get", call).await
    }

    /// Details of one page, `concurrency` batchget calls at a time.
    async fn details(&self, openids: &[OpenId]) -> Result<Vec<UserInfo>, SyncError> {
        let batches: Vec<Vec<UserInfo>> = futures::stream::iter(openids.chunks(BATCHGET_MAX))
            .map(|chunk| self.batch(chunk))
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        Ok(batches.into_iter().flatten().collect())
    }

    async fn batch(&self, openids: &[OpenId]) -> Result<Vec<UserInfo>, SyncError> {
        let call = || async {
            self.limiter.until_ready().await;
            self.tokens
                .with_token(self.app, |token| async move {
                    self.client.user_info_batch(&token, openids).await
                })
                .await
        };
        match (call
            .retry(self.backoff)
            .when(is_transient)
            .notify(self.notify("user/info/batchget")))
        .await
        {
            Ok(infos) => Ok(with_missing(openids, infos)),
            // One bad openid (e.g. someone who left since user/get) fails the whole call.
            Err(e) if e.class() == ErrClass::Permanent(PermanentKind::Recipient) => {
                tracing::debug!(error = %e, "batchget refused a batch; asking one by one");
                self.one_by_one(openids).await
            }
            Err(source) => Err(SyncError::Wechat {
                what: "user/info/batchget",
                source,
            }),
        }
    }

    async fn one_by_one(&self, openids: &[OpenId]) -> Result<Vec<UserInfo>, SyncError> {
        let mut out = Vec::with_capacity(openids.len());
        for openid in openids {
            let call = || async {
                self.limiter.until_ready().await;
                self.tokens
                    .with_token(self.app, |token| async move {
                        self.client.user_info(&token, openid).await
                    })
                    .await
            };
            match self.retrying("user/info", call).await {
                Ok(info) => out.push(info),
                Err(SyncError::Wechat { source, .. })
                    if source.class() == ErrClass::Permanent(PermanentKind::Recipient) =>
                {
                    tracing::debug!(openid = %openid, "not a follower any more; skipped");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn retrying<T, F, Fut>(&self, what: &'static str, call: F) -> Result<T, SyncError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, TokenError>>,
    {
        call.retry(self.backoff)
            .when(is_transient)
            .notify(self.notify(what))
            .await
            .map_err(|source| SyncError::Wechat { what, source })
    }

    fn notify(&self, what: &'static str) -> impl FnMut(&TokenError, Duration) + use<'a> {
        let app = self.app;
        move |error, delay| {
            tracing::warn!(app = %app, what, %error, retry_in_ms = delay.as_millis() as u64, "WeChat call failed; retrying");
        }
    }
}

fn is_transient(e: &TokenError) -> bool {
    e.class() == ErrClass::Transient
}

/// batchget may leave out someone `user/get` just listed; they follow, details unknown.
fn with_missing(requested: &[OpenId], mut infos: Vec<UserInfo>) -> Vec<UserInfo> {
    if infos.len() >= requested.len() {
        return infos;
    }
    let returned: HashSet<&OpenId> = infos.iter().map(|i| &i.openid).collect();
    let missing: Vec<UserInfo> = requested
        .iter()
        .filter(|o| !returned.contains(o))
        .map(|o| UserInfo {
            openid: o.clone(),
            subscribed: true,
            unionid: None,
            subscribe_time: None,
        })
        .collect();
    infos.extend(missing);
    infos
}
