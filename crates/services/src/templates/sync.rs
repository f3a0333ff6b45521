//! Fetching an app's templates from WeChat into the catalog: the OA's
//! (`get_all_private_template`) and the Mini Program's subscribe templates
//! (`wxaapi/newtmpl/gettemplate`).

use sqlx::PgPool;

use super::catalog::{self, Stored, SyncTrigger};
use crate::error::UpkeepError;
use wxnotify_core::config::AppConfig;
use wxnotify_core::domain::AppName;
use wxnotify_core::wechat::client::{PrivateTemplate, SubscribeTemplate};
use wxnotify_core::wechat::{TokenError, TokenStore, WechatClient};

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

/// Lists the Mini Program's subscribe templates of `app` (`wxaapi/newtmpl/gettemplate`) and
/// merges them into its catalog ([`super::subscribe::store_subscribe`]). `None` when the app
/// has no Mini Program configured. The Mini Program's token is the stable token
/// (`cgi-bin/stable_token` without `force_refresh`), which every caller shares and none
/// invalidates.
#[tracing::instrument(skip_all, fields(app = %app.name), err)]
pub async fn sync_subscribe_app(
    pool: &PgPool,
    client: &WechatClient,
    app: &AppConfig,
) -> Result<Option<Vec<SubscribeTemplate>>, UpkeepError> {
    let (Some(appid), Some(secret)) = (&app.mp_appid, &app.mp_secret) else {
        return Ok(None);
    };
    let call = async {
        let token = client.stable_token(appid, secret, false).await?.token;
        client.subscribe_templates(&token).await
    };
    let list = call.await.map_err(TokenError::from)?;
    let stored = super::subscribe::store_subscribe(pool, &app.name, &list).await?;
    tracing::info!(app = %app.name, templates = list.len(), "subscribe templates synced");
    if !stored.removed.is_empty() {
        tracing::warn!(app = %app.name, templates = ?stored.removed,
            "subscribe templates no longer listed by WeChat: deleted on its side");
    }
    Ok(Some(list))
}
