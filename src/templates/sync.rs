//! Fetching an app's templates from WeChat (`get_all_private_template`) into the catalog.

use sqlx::PgPool;

use super::catalog::{self, SyncTrigger};
use crate::domain::AppName;
use crate::upkeep::UpkeepError;
use crate::wechat::client::PrivateTemplate;
use crate::wechat::{TokenStore, WechatClient};

/// Lists `app`'s private templates on WeChat and replaces its catalog with them.
#[tracing::instrument(skip_all, fields(app = %app, trigger = ?trigger), err)]
pub async fn sync_app(
    pool: &PgPool,
    tokens: &TokenStore,
    client: &WechatClient,
    app: &AppName,
    trigger: SyncTrigger,
) -> Result<Vec<PrivateTemplate>, UpkeepError> {
    let list = tokens
        .with_token(app, |token| async move {
            client.private_templates(&token).await
        })
        .await?;
    catalog::store(pool, app, &list, trigger).await?;
    tracing::info!(templates = list.len(), "template catalog synced");
    Ok(list)
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
