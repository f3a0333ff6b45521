//! Fetching an app's templates from WeChat (`get_all_private_template`) into the catalog.

use sqlx::PgPool;

use super::catalog::{self, Stored, SyncTrigger};
use crate::error::UpkeepError;
use wxnotify_core::domain::AppName;
use wxnotify_core::wechat::client::PrivateTemplate;
use wxnotify_core::wechat::{TokenStore, WechatClient};

/// Lists `app`'s private templates on WeChat and merges them into its catalog (see
/// [`catalog::store`]: templates WeChat stopped listing are kept as removed, manual ones stay).
#[tracing::instrument(skip_all, fields(app = %app, trigger = ?trigger), err)]
pub async fn sync_app(
    pool: &PgPool,
    tokens: &TokenStore,
    client: &WechatClient,
    app: &AppName,
    trigger: SyncTrigger,
) -> Result<Vec<PrivateTemplate>, UpkeepError> {
    let list = fetch(tokens, client, app).await?;
    let stored = catalog::store(pool, app, &list, trigger).await?;
    log_stored(app, list.len(), &stored);
    Ok(list)
}

/// Logs a sync, and each change worth an operator's eye (a template that vanished from
/// WeChat's list is refused from now on).
pub fn log_stored(app: &AppName, listed: usize, stored: &Stored) {
    tracing::info!(app = %app, templates = listed, "template catalog synced");
    if !stored.removed.is_empty() {
        tracing::warn!(app = %app, templates = ?stored.removed,
            "templates no longer listed by WeChat: deleted on its side; jobs naming them are refused");
    }
    if !stored.restored.is_empty() {
        tracing::info!(app = %app, templates = ?stored.restored, "templates listed again");
    }
    if !stored.adopted.is_empty() {
        tracing::info!(app = %app, templates = ?stored.adopted,
            "templates registered by hand are now listed by WeChat (source api)");
    }
}

/// Lists `app`'s private templates on WeChat, without storing them.
pub async fn fetch(
    tokens: &TokenStore,
    client: &WechatClient,
    app: &AppName,
) -> Result<Vec<PrivateTemplate>, UpkeepError> {
    Ok(tokens
        .with_token(app, |token| async move {
            client.private_templates(&token).await
        })
        .await?)
}
