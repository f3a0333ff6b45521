//! What a sync run reports, and why it stops.

use serde::Serialize;

use wxnotify_core::domain::AppName;
use wxnotify_core::wechat::TokenError;

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
