//! Whether an app may send now: the one place that reads and writes the pause columns of
//! `apps`. Every worker reads them with its heartbeat (every second), so a pause holds in all of
//! them at once; `wxnotify status`, the admin API and the console read them from here too.
//!
//! Two independent things stop an app's sending:
//!
//! - **A timed pause** (`paused_until`): WeChat's daily quota is used up (45009, until the pause
//!   the worker chose ends), or an operator paused the app by hand.
//! - **A suspension** (`suspended_at`): WeChat refuses the app itself, whatever the message (the
//!   account is restricted, this server's IP is not whitelisted, the API is not authorised, the
//!   AppSecret is wrong …; [`ErrClass::AccountBlocked`](wxnotify_core::wechat::ErrClass)). It has no end
//!   time: no one can tell when the operator or WeChat will fix it. A worker probes the app at
//!   most every [`PROBE_EVERY`] (one of the waiting jobs is let through; [`claim_probe`] makes it
//!   one worker at a time) and lifts the suspension once WeChat answers normally;
//!   [`resume`] lifts it at once.
//!
//! Jobs of a paused or suspended app wait in a retry tier without spending an attempt; none dies
//! for it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use wxnotify_core::domain::AppName;
use wxnotify_core::wechat::errcode;

/// The least time between two probes of a suspended app, across all workers.
pub const PROBE_EVERY: Duration = Duration::from_secs(30);

/// What set a timed pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PauseCause {
    /// WeChat's answer refuses the app itself: suspended until WeChat answers normally.
    Account,
    /// WeChat's daily quota is used up (45009).
    Quota,
    /// An operator paused the app.
    Manual,
}

impl PauseCause {
    /// The name in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PauseCause::Account => "account",
            PauseCause::Quota => "quota",
            PauseCause::Manual => "manual",
        }
    }
}

/// WeChat refusing the app itself: the answer that suspended it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Suspension {
    /// WeChat's errcode (50002, 40164, 48001 …).
    pub errcode: i64,
    /// WeChat's message, with its `rid`.
    pub errmsg: String,
    /// The WeChat endpoint that answered it (the token endpoint or the send).
    pub endpoint: Option<String>,
    /// Since when.
    pub since: DateTime<Utc>,
}

impl Suspension {
    /// What an operator does about it, in words.
    pub fn fix(&self) -> &'static str {
        errcode::account_fix(self.errcode)
            .unwrap_or("WeChat refuses this account: read the notices at mp.weixin.qq.com")
    }

    /// One line for people: the errcode, WeChat's message and the fix.
    pub fn describe(&self) -> String {
        let at = self
            .endpoint
            .as_deref()
            .map(|e| format!(" on {e}"))
            .unwrap_or_default();
        format!(
            "WeChat refuses this app: errcode {}{at} ({}); to fix: {}",
            self.errcode,
            self.errmsg,
            self.fix()
        )
    }
}

/// One app's pause state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPause {
    /// The app.
    pub app: String,
    /// A timed pause's end (it may lie in the past: then it is over).
    pub until: Option<DateTime<Utc>>,
    /// What set the timed pause.
    pub cause: Option<PauseCause>,
    /// The timed pause's reason.
    pub reason: Option<String>,
    /// The suspension, if WeChat refuses the app.
    pub suspension: Option<Suspension>,
}

impl AppPause {
    /// The timed pause's end, if it is still on at `now`.
    pub fn paused_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.until.filter(|u| *u > now)
    }

    /// Whether the app sends nothing at `now`.
    pub fn paused(&self, now: DateTime<Utc>) -> bool {
        self.suspension.is_some() || self.paused_until(now).is_some()
    }

    /// What pauses it at `now` (a suspension first: it outlasts any timed pause).
    pub fn cause_at(&self, now: DateTime<Utc>) -> Option<PauseCause> {
        if self.suspension.is_some() {
            return Some(PauseCause::Account);
        }
        self.paused_until(now)
            .map(|_| self.cause.unwrap_or(PauseCause::Quota))
    }

    /// Why it is paused at `now`, in words (naming the errcode where WeChat gave one).
    pub fn reason_at(&self, now: DateTime<Utc>) -> Option<String> {
        if let Some(s) = &self.suspension {
            return Some(s.describe());
        }
        self.paused_until(now)
            .map(|_| self.reason.clone().unwrap_or_else(|| "paused".to_owned()))
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    name: String,
    paused_until: Option<DateTime<Utc>>,
    pause_cause: Option<String>,
    pause_reason: Option<String>,
    suspended_at: Option<DateTime<Utc>>,
    suspend_errcode: Option<i64>,
    suspend_errmsg: Option<String>,
    suspend_endpoint: Option<String>,
}

impl From<Row> for AppPause {
    fn from(r: Row) -> AppPause {
        let suspension = match (r.suspended_at, r.suspend_errcode) {
            (Some(since), Some(errcode)) => Some(Suspension {
                errcode,
                errmsg: r.suspend_errmsg.unwrap_or_default(),
                endpoint: r.suspend_endpoint,
                since,
            }),
            _ => None,
        };
        AppPause {
            app: r.name,
            until: r.paused_until,
            cause: r.pause_cause.as_deref().map(|c| match c {
                "manual" => PauseCause::Manual,
                _ => PauseCause::Quota,
            }),
            reason: r.pause_reason,
            suspension,
        }
    }
}

/// Every registered app's pause state (or only `app`'s), by name.
async fn select(pool: &PgPool, app: Option<&str>) -> Result<Vec<AppPause>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT name, paused_until, pause_cause, pause_reason, suspended_at, suspend_errcode,
                suspend_errmsg, suspend_endpoint
         FROM apps WHERE $1::text IS NULL OR name = $1 ORDER BY name",
    )
    .bind(app)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(AppPause::from).collect())
}

/// Every registered app's pause state, by name.
pub async fn read_all(pool: &PgPool) -> Result<Vec<AppPause>, sqlx::Error> {
    select(pool, None).await
}

/// One app's pause state; `None` when the app is not registered.
pub async fn read(pool: &PgPool, app: &str) -> Result<Option<AppPause>, sqlx::Error> {
    Ok(select(pool, Some(app)).await?.pop())
}

/// Pauses `app` until `until` (a 45009 pause or an operator's). `false` when there is no such
/// app.
pub async fn pause_until(
    pool: &PgPool,
    app: &str,
    until: DateTime<Utc>,
    cause: PauseCause,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE apps SET paused_until = $2, pause_cause = $3, pause_reason = $4, updated_at = now()
         WHERE name = $1",
    )
    .bind(app)
    .bind(until)
    .bind(cause.as_str())
    .bind(reason)
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

/// Ends every pause of `app`: the timed one and a suspension (an operator says the account is
/// fixed; if it is not, the next send suspends it again). `false` when there is no such app.
pub async fn resume(pool: &PgPool, app: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE apps SET paused_until = NULL, pause_cause = NULL, pause_reason = NULL,
                suspended_at = NULL, suspend_errcode = NULL, suspend_errmsg = NULL,
                suspend_endpoint = NULL, probe_at = NULL, updated_at = now()
         WHERE name = $1",
    )
    .bind(app)
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

/// Suspends `app` because WeChat refused it with `errcode`. Returns `true` when this call
/// suspended it (it was sending until now): the caller says so once, at ERROR. A suspended app
/// keeps its first `since` and takes the latest answer's errcode and message.
pub async fn suspend(
    pool: &PgPool,
    app: &str,
    errcode: i64,
    errmsg: &str,
    endpoint: Option<&str>,
) -> Result<bool, sqlx::Error> {
    // Two statements, so "this call suspended it" is exact under concurrency: of two workers
    // racing, the second re-reads the row after the first's commit and updates nothing here.
    let newly = sqlx::query(
        "UPDATE apps SET suspended_at = now(), suspend_errcode = $2, suspend_errmsg = $3,
                suspend_endpoint = $4, probe_at = now(), updated_at = now()
         WHERE name = $1 AND suspended_at IS NULL",
    )
    .bind(app)
    .bind(errcode)
    .bind(errmsg)
    .bind(endpoint)
    .execute(pool)
    .await?
    .rows_affected()
        == 1;
    if !newly {
        sqlx::query(
            "UPDATE apps SET suspend_errcode = $2, suspend_errmsg = $3, suspend_endpoint = $4,
                    probe_at = now(), updated_at = now()
             WHERE name = $1 AND suspended_at IS NOT NULL",
        )
        .bind(app)
        .bind(errcode)
        .bind(errmsg)
        .bind(endpoint)
        .execute(pool)
        .await?;
    }
    Ok(newly)
}

/// Lifts `app`'s suspension (a probe went through). Returns `true` when it was suspended.
pub async fn lift_suspension(pool: &PgPool, app: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE apps SET suspended_at = NULL, suspend_errcode = NULL, suspend_errmsg = NULL,
                suspend_endpoint = NULL, probe_at = NULL, updated_at = now()
         WHERE name = $1 AND suspended_at IS NOT NULL",
    )
    .bind(app)
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

/// Claims the next probe of suspended `app`: `true` for at most one caller (across all
/// processes) per `every` ([`PROBE_EVERY`] by default). `false` also when the app is no longer
/// suspended.
pub async fn claim_probe(pool: &PgPool, app: &str, every: Duration) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE apps SET probe_at = now()
         WHERE name = $1 AND suspended_at IS NOT NULL
           AND (probe_at IS NULL OR probe_at <= now() - make_interval(secs => $2))",
    )
    .bind(app)
    .bind(every.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

/// Exports each app's pause as `wxnotify_app_paused{app, cause}` (1 while paused by that
/// cause, else 0).
pub fn export_metrics(pauses: &[AppPause], now: DateTime<Utc>) {
    for p in pauses {
        let on = p.cause_at(now);
        for cause in [PauseCause::Account, PauseCause::Quota, PauseCause::Manual] {
            metrics::gauge!("wxnotify_app_paused", "app" => p.app.clone(), "cause" => cause.as_str())
                .set(if on == Some(cause) { 1.0 } else { 0.0 });
        }
    }
}

/// The names of `pauses` that are paused at `now`, for a dispatcher that must not feed them.
pub fn paused_names(pauses: &[AppPause], now: DateTime<Utc>) -> Vec<AppName> {
    pauses
        .iter()
        .filter(|p| p.paused(now))
        .filter_map(|p| AppName::parse(&p.app).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pause(until: Option<DateTime<Utc>>, suspension: Option<Suspension>) -> AppPause {
        AppPause {
            app: "shop".into(),
            until,
            cause: Some(PauseCause::Manual),
            reason: Some("paused by hand (api:admin)".into()),
            suspension,
        }
    }

    #[test]
    fn a_suspension_pauses_without_an_end_and_names_its_errcode_and_fix() {
        let now = Utc::now();
        let s = Suspension {
            errcode: 40164,
            errmsg: "invalid ip 203.0.113.7, not in whitelist rid: 1-2-3".into(),
            endpoint: Some("cgi-bin/stable_token".into()),
            since: now,
        };
        let p = pause(None, Some(s));
        assert!(p.paused(now + chrono::Duration::days(30)));
        assert_eq!(p.cause_at(now), Some(PauseCause::Account));
        let why = p.reason_at(now).unwrap();
        assert!(why.contains("40164"), "{why}");
        assert!(why.contains("IP whitelist"), "{why}");
    }

    #[test]
    fn a_timed_pause_ends_at_its_time() {
        let now = Utc::now();
        let p = pause(Some(now + chrono::Duration::minutes(5)), None);
        assert_eq!(p.cause_at(now), Some(PauseCause::Manual));
        assert!(!p.paused(now + chrono::Duration::minutes(6)));
        assert_eq!(p.reason_at(now + chrono::Duration::minutes(6)), None);
    }
}
