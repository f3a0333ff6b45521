//! The seed method, for the benchmark only: one `user/info` call and one single-row upsert per
//! follower, in sequence. `bench/sync-followers.sh` times it on a sample and extrapolates, to
//! show what the batched pipeline of [`wxnotify_services::followers::sync`] saves.

use std::time::Instant;

use serde::Serialize;
use sqlx::PgPool;

use wxnotify_core::domain::AppName;
use wxnotify_core::wechat::{TokenStore, WechatClient};
use wxnotify_services::followers::store;

/// The seed method's timing on a sample.
#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    /// Always `per_user_seed_method`.
    pub method: &'static str,
    /// Followers timed.
    pub sample: usize,
    /// Seconds for the sample.
    pub seconds: f64,
    /// WeChat's follower count.
    pub total: u64,
    /// `seconds / sample * total`.
    pub extrapolated_seconds: f64,
}

/// Times the seed method on the first `sample` followers (at most one `user/get` page).
pub async fn per_user(
    pool: &PgPool,
    client: &WechatClient,
    tokens: &TokenStore,
    app: &AppName,
    sample: usize,
) -> anyhow::Result<SeedReport> {
    let page = tokens
        .with_token(app, |t| async move { client.user_get(&t, None).await })
        .await?;
    let openids: Vec<_> = page.openids.into_iter().take(sample).collect();
    let clock = Instant::now();
    for openid in &openids {
        let info = tokens
            .with_token(app, |t| async move { client.user_info(&t, openid).await })
            .await?;
        store::upsert_one(pool, app, &info).await?;
    }
    let seconds = clock.elapsed().as_secs_f64();
    let per = if openids.is_empty() {
        0.0
    } else {
        seconds / openids.len() as f64
    };
    Ok(SeedReport {
        method: "per_user_seed_method",
        sample: openids.len(),
        seconds,
        total: page.total,
        extrapolated_seconds: per * page.total as f64,
    })
}
