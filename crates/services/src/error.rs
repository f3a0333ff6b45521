//! The error of the calls the worker's upkeep makes for the services (template sync, quota
//! read, review reconciliation).

use wxnotify_core::wechat::TokenError;

/// Why an upkeep call (template sync, quota read, reconciliation) failed.
#[derive(Debug, thiserror::Error)]
pub enum UpkeepError {
    /// WeChat refused, could not be reached, or no token could be had.
    #[error(transparent)]
    Wechat(#[from] TokenError),
    /// Postgres failed.
    #[error("Postgres: {0}")]
    Db(#[from] sqlx::Error),
}
