//! What a campaign may dispatch now: its start time, its send window (in its time zone), its
//! daily cap, and the app's daily quota less the share reserved for transactional sends.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;

use super::model::Pacing;
pub use wxnotify_core::config::QuotaSettings;

/// Why a campaign waits (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Its start time is ahead.
    NotStarted,
    /// Outside its send window.
    WindowClosed,
    /// Its daily cap is reached.
    DailyCap,
    /// Only the transactional reserve of the daily quota is left.
    QuotaReserve,
    /// The app is paused (45009: WeChat's daily quota is used up).
    AppPaused,
}

/// The day a campaign's daily cap counts in (its time zone).
pub fn cap_day(pacing: &Pacing, now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&pacing.time_zone).date_naive()
}

/// Whether the start time and window allow sending at `now`.
pub fn time_allows(pacing: &Pacing, now: DateTime<Utc>) -> Result<(), Wait> {
    if pacing.start_at.is_some_and(|s| s > now) {
        return Err(Wait::NotStarted);
    }
    if let Some(w) = pacing.window
        && !w.contains(now.with_timezone(&pacing.time_zone).time())
    {
        return Err(Wait::WindowClosed);
    }
    Ok(())
}

/// How many more the daily cap allows today, given what was dispatched on `day` (the stored
/// cap day; another day means nothing yet today).
pub fn cap_left(
    pacing: &Pacing,
    now: DateTime<Utc>,
    day: Option<NaiveDate>,
    dispatched_that_day: u64,
) -> u64 {
    match pacing.daily_cap {
        None => u64::MAX,
        Some(cap) if day == Some(cap_day(pacing, now)) => cap.saturating_sub(dispatched_that_day),
        Some(cap) => cap,
    }
}

/// What is left today of `app`'s daily quota, or `None` when no quota is known. A configured
/// daily quota (`WXNOTIFY_DAILY_QUOTA`) is what operators plan against: it less today's sends
/// (WeChat's day, Beijing time). Without one, WeChat's own figure (`openapi/quota/get`, read by
/// the worker, plus the sends since that read) when it has been read.
pub async fn remaining_quota_today(
    pool: &PgPool,
    settings: &QuotaSettings,
    app: &str,
) -> Result<Option<u64>, sqlx::Error> {
    let Some(quota) = settings.daily_quota(app) else {
        let Ok(name) = wxnotify_core::domain::AppName::parse(app.to_string()) else {
            return Ok(None);
        };
        let remaining = crate::quota::remaining_today(pool, &name).await?;
        return Ok(remaining.map(|r| r.max(0) as u64));
    };
    let sent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deliveries
         WHERE app = $1 AND state = 'sent'
           AND sent_at >= (date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai')",
    )
    .bind(app)
    .fetch_one(pool)
    .await?;
    Ok(Some(quota.saturating_sub(sent.max(0) as u64)))
}

/// How many a campaign of `app` may still dispatch without touching the transactional reserve,
/// given `queued` campaign jobs not yet sent. `u64::MAX` when no quota is known.
pub fn quota_left(settings: &QuotaSettings, app: &str, remaining: Option<u64>, queued: u64) -> u64 {
    match (remaining, settings.daily_quota(app)) {
        (Some(remaining), Some(quota)) => remaining
            .saturating_sub(settings.reserve(app, quota))
            .saturating_sub(queued),
        (Some(remaining), None) => remaining.saturating_sub(queued),
        _ => u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaigns::model::SendWindow;

    fn pacing() -> Pacing {
        Pacing {
            rate_per_second: 10,
            window: Some(SendWindow::parse("09:00-21:00").unwrap()),
            time_zone: chrono_tz::Asia::Shanghai,
            start_at: None,
            daily_cap: Some(100),
        }
    }

    #[test]
    fn the_window_is_in_the_campaigns_time_zone() {
        // 02:00 UTC is 10:00 in Shanghai (open); 14:00 UTC is 22:00 there (closed).
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(time_allows(&pacing(), at("2026-11-30T02:00:00Z")), Ok(()));
        assert_eq!(
            time_allows(&pacing(), at("2026-11-30T14:00:00Z")),
            Err(Wait::WindowClosed)
        );
    }

    #[test]
    fn the_daily_cap_starts_again_on_a_new_local_day() {
        let p = pacing();
        let now: DateTime<Utc> = "2026-11-30T02:00:00Z".parse().unwrap();
        let today = cap_day(&p, now);
        assert_eq!(cap_left(&p, now, Some(today), 60), 40);
        assert_eq!(cap_left(&p, now, Some(today), 160), 0);
        assert_eq!(cap_left(&p, now, today.pred_opt(), 100), 100);
    }

    #[test]
    fn the_reserve_is_kept_for_transactional_sends() {
        let q = QuotaSettings::uniform(Some(1000), 20);
        assert_eq!(quota_left(&q, "default", Some(1000), 0), 800);
        assert_eq!(quota_left(&q, "default", Some(300), 50), 50);
        assert_eq!(quota_left(&q, "default", Some(150), 0), 0);
        let none = QuotaSettings::uniform(None, 20);
        assert_eq!(quota_left(&none, "default", None, 10), u64::MAX);
    }
}
