//! Filling the mapping the way production does: the follower sync and Mini Program logins.

use futures::{StreamExt, TryStreamExt};
use indicatif::MultiProgress;
use sqlx::PgPool;

use super::{bar, say};
use crate::config::Settings;
use crate::domain::AppName;
use crate::wechat::client::ClientOptions;
use crate::wechat::mock::MockWechat;
use crate::wechat::{TokenStore, WechatClient};

/// Syncs every follower; returns (followers, followers without unionid).
pub async fn sync(settings: &Settings, pool: &PgPool, bars: &MultiProgress) -> anyhow::Result<(u64, u64)> {
    let client = WechatClient::new(settings.wechat_api_base.clone(), &ClientOptions::default())?;
    let tokens = TokenStore::new(pool.clone(), client.clone(), &settings.apps);
    let app = AppName::default_app();
    let progress = bars.add(bar(0, "followers"));
    let report = crate::followers::sync_followers(pool, &client, &tokens, &app, &Default::default(), Some(&progress)).await?;
    progress.finish_and_clear();
    say(bars, &format!("follower sync: {} followers, {} without unionid", report.followers, report.without_unionid));
    Ok((report.followers, report.without_unionid))
}

/// Logs persons `0..people` in with fresh `wx.login()` codes; returns how many logged in.
pub async fn logins(settings: &Settings, pool: &PgPool, mock: &MockWechat, people: u64, bars: &MultiProgress) -> anyhow::Result<u64> {
    let client = WechatClient::new(settings.wechat_api_base.clone(), &ClientOptions::default())?;
    let app = settings.app(&AppName::default_app())?;
    let progress = bars.add(bar(people, "logins"));
    let done = futures::stream::iter(0..people)
        .map(|i| {
            let code = mock.issue_login_code(i);
            let (client, progress) = (&client, &progress);
            async move {
                let user = crate::http::login::exchange_code(pool, client, app, &code).await?;
                progress.inc(1);
                anyhow::Ok(user)
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    progress.finish_and_clear();
    say(bars, &format!("Mini Program logins: {}", done.len()));
    Ok(done.len() as u64)
}
