//! The fetcher half of a sync pass: walks `user/get` and resolves each page's details with
//! `user/info/batchget` (`concurrency` calls in flight, rate-limited, transient failures retried
//! with exponential backoff and jitter; a batch refused for one bad openid is asked one by one).

use std::collections::HashSet;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::{StreamExt, TryStreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::mpsc;

use super::report::SyncError;
use super::sync::SyncOptions;
use wxnotify_core::domain::{AppName, OpenId};
use wxnotify_core::wechat::client::{BATCHGET_MAX, FollowerPage, UserInfo};
use wxnotify_core::wechat::{ErrClass, PermanentKind, TokenError, TokenStore, WechatClient};

/// One page with its details, on its way to the writer.
pub(super) struct FetchedPage {
    pub(super) users: Vec<UserInfo>,
    /// Where the next page starts; `None` = this was the last page.
    pub(super) next: Option<OpenId>,
    pub(super) total: u64,
}

/// The fetcher: walks `user/get` and resolves details with batchget.
pub(super) struct Fetcher<'a> {
    client: &'a WechatClient,
    tokens: &'a TokenStore,
    app: &'a AppName,
    concurrency: usize,
    /// Shared by every batchget in flight: WeChat's rate is per app, not per call site.
    limiter: DefaultDirectRateLimiter,
    backoff: ExponentialBuilder,
}

impl<'a> Fetcher<'a> {
    pub(super) fn new(
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

    pub(super) async fn run(
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

    async fn page(&self, cursor: Option<&OpenId>) -> Result<FollowerPage, SyncError> {
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
