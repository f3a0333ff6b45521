//! The database half of the shared rate limit: the GCRA parameters of an app and the one
//! statement that leases a block of permits (`rate_lease()`, migration
//! `20261130001000_shared_rate_limit.sql`). The local half, which spends a lease, is
//! [`super::rate_limit`].

use std::time::Duration;

use sqlx::PgPool;

use wxnotify_core::domain::AppName;

/// How far ahead of the burst tolerance one lease may reach: the length of a lease block.
/// A transactional lease reaches twice as far, so it finds room behind the bulk permits
/// already leased (bulk never holds the whole horizon against it).
pub const LEASE_AHEAD: Duration = Duration::from_millis(40);
/// The burst, as a fraction of the rate: at most this many permits are spent at once after an
/// idle spell, and no one-second window holds more than rate × (1 + this).
pub const BURST_FRACTION: f64 = 0.005;
/// A lease statement that takes longer than this counts as failed (sending pauses meanwhile).
pub const LEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// The GCRA parameters of one app, as every process computes them from the app's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseParams {
    /// Sends per second.
    pub rate: u32,
    /// Microseconds between two permits (rounded up, so never above the rate).
    pub interval_us: i64,
    /// The burst tolerance in microseconds: a permit may be spent this long before its slot.
    pub burst_us: i64,
    /// How far beyond the tolerance a bulk lease reaches.
    pub ahead_us: i64,
    /// How far beyond the tolerance a transactional lease reaches (twice `ahead_us`).
    pub tx_ahead_us: i64,
    /// The permits of one lease horizon beyond the burst (the most one lease holds ahead).
    pub block: u32,
    /// A lease smaller than this (or than the demand, if smaller) is not granted: no dribbling.
    /// Half a block: a lease is asked for again while half of the horizon is still leased, so
    /// a slow statement does not leave the rate unused, and each statement brings at least
    /// 20 ms of permits (fewer statements, and fewer wake-ups of the worker, per permit).
    pub min_grant: u32,
}

impl LeaseParams {
    /// The parameters for `rate` sends per second.
    pub fn for_rate(rate: u32) -> Self {
        let rate = rate.max(1);
        let interval_us = (1_000_000 + i64::from(rate) - 1) / i64::from(rate);
        let burst = ((f64::from(rate) * BURST_FRACTION) as i64).max(1);
        let ahead_us = (LEASE_AHEAD.as_micros() as i64).max(interval_us);
        let block = (ahead_us / interval_us).max(1) as u32;
        LeaseParams {
            rate,
            interval_us,
            burst_us: burst * interval_us,
            ahead_us,
            tx_ahead_us: 2 * ahead_us,
            block,
            min_grant: (block / 2).max(1),
        }
    }

    /// The emission interval.
    pub fn interval(&self) -> Duration {
        Duration::from_micros(self.interval_us as u64)
    }

    /// How far beyond the tolerance a lease of this lane reaches.
    pub fn ahead_us(&self, transactional: bool) -> i64 {
        if transactional {
            self.tx_ahead_us
        } else {
            self.ahead_us
        }
    }
}

/// What one lease statement granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Permits granted (0 when none fit).
    pub granted: u32,
    /// When the first granted permit may be spent: microseconds since the epoch on the
    /// database's clock (its slot minus the burst tolerance); permit k follows k intervals later.
    pub first_due_us: i64,
    /// The database's clock when the grant was made, microseconds since the epoch.
    pub db_now_us: i64,
    /// When fewer than asked were granted: how long until asking again makes sense.
    pub retry_after: Duration,
}

/// Why a lease failed. Sending pauses; nothing is sent unmetered.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Postgres refused or could not be reached.
    #[error("leasing permits from Postgres failed: {0}")]
    Db(#[from] sqlx::Error),
    /// Postgres did not answer within [`LEASE_TIMEOUT`].
    #[error("leasing permits from Postgres took longer than {LEASE_TIMEOUT:?}")]
    Timeout,
}

/// Leases up to `want` permits of `app` for the transactional lane (`transactional`) or the
/// bulk lane, with one statement.
pub async fn lease(
    pool: &PgPool,
    app: &AppName,
    params: &LeaseParams,
    transactional: bool,
    want: u32,
) -> Result<Grant, LeaseError> {
    let statement = sqlx::query_as::<_, (i32, i64, i64, i64)>(
        "SELECT granted, base_us, now_us, retry_after_us FROM rate_lease($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(app.as_str())
    .bind(transactional)
    .bind(i32::try_from(want).unwrap_or(i32::MAX))
    .bind(params.interval_us)
    .bind(params.burst_us)
    .bind(params.ahead_us(transactional))
    .bind(i32::try_from(params.min_grant).unwrap_or(i32::MAX))
    .fetch_one(pool);
    let (granted, base_us, now_us, retry_us) = tokio::time::timeout(LEASE_TIMEOUT, statement)
        .await
        .map_err(|_| LeaseError::Timeout)??;
    Ok(Grant {
        granted: u32::try_from(granted).unwrap_or(0),
        first_due_us: base_us - params.burst_us,
        db_now_us: now_us,
        retry_after: Duration::from_micros(u64::try_from(retry_us).unwrap_or(0)),
    })
}

/// What an app's lanes use of its rate, across every process (see [`lane_usage`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LaneUsage {
    /// The app's configured rate, sends per second.
    pub rate_per_second: u32,
    /// Permits the transactional lane took, per second (decayed over about one second).
    pub transactional_per_second: f64,
    /// Permits the bulk lane took, per second (same decay).
    pub bulk_per_second: f64,
    /// Transactional sends are short of permits (a transactional lease got less than it asked
    /// for, lately): bulk leases leave them that room.
    pub transactional_starved: bool,
    /// Lease statements so far (all processes).
    pub leases: i64,
    /// Permits granted so far (all processes).
    pub permits: i64,
}

impl LaneUsage {
    /// What is left for the bulk lane, sends per second: the rate minus what the transactional
    /// lane uses (0 while transactional sends are short of permits).
    pub fn bulk_headroom_per_second(&self) -> f64 {
        if self.transactional_starved {
            0.0
        } else {
            (f64::from(self.rate_per_second) - self.transactional_per_second).max(0.0)
        }
    }
}

/// What `app`'s lanes use now, across every process; all zero before its first lease.
pub async fn lane_usage(pool: &PgPool, app: &AppName, rate: u32) -> Result<LaneUsage, sqlx::Error> {
    let row = sqlx::query_as::<_, (f64, f64, bool, i64, i64)>(
        "SELECT tx_per_second, bulk_per_second, tx_starved, leases, permits FROM rate_lane_usage($1)",
    )
    .bind(app.as_str())
    .fetch_optional(pool)
    .await?;
    let (tx, bulk, starved, leases, permits) = row.unwrap_or((0.0, 0.0, false, 0, 0));
    Ok(LaneUsage {
        rate_per_second: rate,
        transactional_per_second: tx,
        bulk_per_second: bulk,
        transactional_starved: starved,
        leases,
        permits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameters_of_2000_per_second() {
        let p = LeaseParams::for_rate(2000);
        assert_eq!(p.interval_us, 500);
        assert_eq!(p.burst_us, 10 * 500);
        assert_eq!(p.block, 80);
        assert_eq!(p.min_grant, 40);
    }

    #[test]
    fn a_slow_rate_rounds_the_interval_up_and_leases_one() {
        let p = LeaseParams::for_rate(3);
        assert_eq!(p.interval_us, 333_334);
        assert_eq!(p.burst_us, 333_334);
        assert_eq!(p.block, 1);
        assert_eq!(p.min_grant, 1);
    }
}
