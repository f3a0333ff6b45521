//! The real daily quota of template sends (`docs/wechat.md` §9): what
//! `openapi/quota/get` says for `/cgi-bin/message/template/send`, read by the worker on a
//! schedule and after a 45009, and, between two reads, the sends wxnotify made since, counted
//! from the ledger per Beijing-time day.
//!
//! [`today`] and [`remaining_today`] are what campaigns' daily caps and the transactional
//! reserve read; `wxnotify status` shows them and the worker exports them as metrics.
//!
//! When WeChat resets its counters is not documented (`docs/wechat.md` §9 marks it unverified);
//! wxnotify assumes midnight Beijing time (UTC+8, no daylight saving): a read from an earlier
//! Beijing day says nothing about today's use, only about the limit.

pub mod status;

use chrono::{DateTime, Duration, FixedOffset, NaiveTime, TimeZone, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::error::UpkeepError;
use wxnotify_core::domain::AppName;
use wxnotify_core::wechat::client::{ApiQuota, TEMPLATE_SEND_CGI_PATH};
use wxnotify_core::wechat::{TokenStore, WechatClient};

/// Beijing time: UTC+8 all year.
pub fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// The instant the Beijing-time day holding `now` began.
pub fn beijing_day_start(now: DateTime<Utc>) -> DateTime<Utc> {
    let local = now.with_timezone(&beijing()).date_naive();
    beijing()
        .from_local_datetime(&local.and_time(NaiveTime::MIN))
        .single()
        .expect("a fixed offset has no gaps")
        .with_timezone(&Utc)
}

/// What triggered a quota read (stored in `api_quotas.trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadTrigger {
    /// The worker's periodic read.
    Schedule,
    /// `wxnotify status --refresh`.
    Command,
    /// A send answered 45009.
    QuotaExhausted,
}

impl ReadTrigger {
    fn as_str(self) -> &'static str {
        match self {
            ReadTrigger::Schedule => "schedule",
            ReadTrigger::Command => "command",
            ReadTrigger::QuotaExhausted => "quota_exhausted",
        }
    }
}

/// An app's template-send quota today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuotaToday {
    /// Sends allowed per day (WeChat's `daily_limit` at the last read).
    pub daily_limit: i64,
    /// Sends used today: WeChat's `used` at a read made today plus the sends recorded since, or
    /// the sends recorded since Beijing midnight when the last read is from an earlier day.
    pub used: i64,
    /// `daily_limit - used`, never below 0.
    pub remaining: i64,
    /// When WeChat was last asked.
    pub read_at: DateTime<Utc>,
    /// Sends recorded on the ledger since that read (today's part).
    pub sent_since_read: i64,
}

/// Reads `app`'s template-send quota from WeChat and stores it.
#[tracing::instrument(skip_all, fields(app = %app, trigger = ?trigger), err)]
pub async fn read(
    pool: &PgPool,
    tokens: &TokenStore,
    client: &WechatClient,
    app: &AppName,
    trigger: ReadTrigger,
) -> Result<ApiQuota, UpkeepError> {
    let quota = tokens
        .with_token(app, |token| async move {
            client.quota_get(&token, TEMPLATE_SEND_CGI_PATH).await
        })
        .await?;
    store(pool, app, &quota, Utc::now(), trigger).await?;
    tracing::info!(
        daily_limit = quota.daily_limit,
        used = quota.used,
        remain = quota.remain,
        "template send quota read"
    );
    Ok(quota)
}

/// Stores a quota answer as read at `read_at`.
pub async fn store(
    pool: &PgPool,
    app: &AppName,
    quota: &ApiQuota,
    read_at: DateTime<Utc>,
    trigger: ReadTrigger,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO api_quotas (app, cgi_path, daily_limit, used, remain, read_at, trigger)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (app, cgi_path) DO UPDATE
         SET daily_limit = EXCLUDED.daily_limit, used = EXCLUDED.used, remain = EXCLUDED.remain,
             read_at = EXCLUDED.read_at, trigger = EXCLUDED.trigger",
    )
    .bind(app.as_str())
    .bind(TEMPLATE_SEND_CGI_PATH)
    .bind(quota.daily_limit.max(0))
    .bind(quota.used.max(0))
    .bind(quota.remain)
    .bind(read_at)
    .bind(trigger.as_str())
    .execute(pool)
    .await?;
    Ok(())
}

/// `app`'s template-send quota at `now` (inject the clock in tests); `None` when WeChat was
/// never asked.
pub async fn today(
    pool: &PgPool,
    app: &AppName,
    now: DateTime<Utc>,
) -> Result<Option<QuotaToday>, sqlx::Error> {
    let row: Option<(i64, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT daily_limit, used, read_at FROM api_quotas WHERE app = $1 AND cgi_path = $2",
    )
    .bind(app.as_str())
    .bind(TEMPLATE_SEND_CGI_PATH)
    .fetch_optional(pool)
    .await?;
    let Some((daily_limit, used_at_read, read_at)) = row else {
        return Ok(None);
    };
    let day_start = beijing_day_start(now);
    let read_today = read_at >= day_start;
    let since = if read_today { read_at } else { day_start };
    let sent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deliveries
         WHERE app = $1 AND sent_at IS NOT NULL AND sent_at > $2 AND sent_at <= $3",
    )
    .bind(app.as_str())
    .bind(since)
    .bind(now)
    .fetch_one(pool)
    .await?;
    let used = if read_today {
        used_at_read + sent
    } else {
        sent
    };
    Ok(Some(QuotaToday {
        daily_limit,
        used,
        remaining: (daily_limit - used).max(0),
        read_at,
        sent_since_read: sent,
    }))
}

/// How many more template messages `app` may send today (Beijing time): the number campaigns'
/// daily caps and the transactional reserve are computed from. `None` when the quota was never
/// read (treat as unknown, not as zero).
///
/// ```ignore
/// let left = crate::quota::remaining_today(&pool, &app).await?.unwrap_or(i64::MAX);
/// let campaign_budget = (left - transactional_reserve).max(0);
/// ```
pub async fn remaining_today(pool: &PgPool, app: &AppName) -> Result<Option<i64>, sqlx::Error> {
    Ok(today(pool, app, Utc::now()).await?.map(|q| q.remaining))
}

/// Sets the Prometheus gauges of `app`'s quota (`wxnotify_quota_daily_limit`,
/// `wxnotify_quota_used`, `wxnotify_quota_remaining`, label `app`).
pub fn export_metrics(app: &AppName, quota: &QuotaToday) {
    let app = app.to_string();
    metrics::gauge!("wxnotify_quota_daily_limit", "app" => app.clone())
        .set(quota.daily_limit as f64);
    metrics::gauge!("wxnotify_quota_used", "app" => app.clone()).set(quota.used as f64);
    metrics::gauge!("wxnotify_quota_remaining", "app" => app).set(quota.remaining as f64);
}

/// How long from `now` to the next Beijing midnight.
pub fn until_beijing_midnight(now: DateTime<Utc>) -> std::time::Duration {
    (beijing_day_start(now) + Duration::days(1) - now)
        .to_std()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_beijing_day_starts_at_16_00_utc() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(
            beijing_day_start(t("2026-11-30T15:59:59Z")),
            t("2026-11-29T16:00:00Z")
        );
        assert_eq!(
            beijing_day_start(t("2026-11-30T16:00:00Z")),
            t("2026-11-30T16:00:00Z")
        );
        assert_eq!(
            until_beijing_midnight(t("2026-11-30T15:59:00Z")),
            std::time::Duration::from_secs(60)
        );
    }
}
