//! Replay protection of the OA callback, in both plaintext and safe mode.
//!
//! WeChat's `signature` covers the token, `timestamp` and `nonce`, not the body, so one request's
//! query string (an access log, the console's GET handshake) would otherwise be a permanent
//! credential. Two checks close that:
//!
//! 1. the **timestamp window**: `timestamp` must be Unix seconds within ± the configured skew
//!    (five minutes by default) of this server's clock; anything else is refused;
//! 2. the **nonce cache**: every `(app, timestamp, nonce)` accepted within the window is stored in
//!    Postgres (`callback_nonces`, shared by every `serve` process) with a SHA-256 digest of what
//!    the request carried (method and body, or the handshake's `echostr`). The same pair with
//!    the same digest is a retry of one request and goes on (the event dedupe makes it change
//!    nothing); the same pair with anything else is a replay and is refused.
//!
//! Rows older than twice the window are pruned: a request that old fails the window first.

use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::PgPool;

use wxnotify_core::domain::AppName;

/// The default timestamp window: ± five minutes.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(300);

/// Why a callback request was refused before its signature mattered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// `timestamp` is not Unix seconds.
    #[error("timestamp must be Unix seconds")]
    BadTimestamp,
    /// `timestamp` is outside the window.
    #[error(
        "timestamp is {skew_secs} s away from this server's clock; at most {max_secs} s are accepted"
    )]
    OutsideWindow {
        /// How far off it is.
        skew_secs: u64,
        /// The window.
        max_secs: u64,
    },
    /// The `(timestamp, nonce)` pair was used before for another request.
    #[error("this timestamp and nonce were already used for another request (a replay)")]
    Replayed,
}

/// Parses `timestamp` and checks it lies within `max_skew` of `now` (Unix seconds).
pub fn check_window(timestamp: &str, now: i64, max_skew: Duration) -> Result<i64, ReplayError> {
    if timestamp.is_empty()
        || timestamp.len() > 12
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ReplayError::BadTimestamp);
    }
    let ts: i64 = timestamp.parse().map_err(|_| ReplayError::BadTimestamp)?;
    let skew = now.abs_diff(ts);
    if skew > max_skew.as_secs() {
        return Err(ReplayError::OutsideWindow {
            skew_secs: skew,
            max_secs: max_skew.as_secs(),
        });
    }
    Ok(ts)
}

/// The digest a request is remembered by: its method and what it carried.
pub fn request_digest(method: &str, carried: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(carried);
    h.finalize().into()
}

/// Remembers `(app, ts, nonce)` with `digest`; refuses a pair seen before with another digest.
pub async fn remember(
    pool: &PgPool,
    app: &AppName,
    ts: i64,
    nonce: &str,
    digest: &[u8; 32],
) -> Result<Result<(), ReplayError>, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO callback_nonces (app, ts, nonce, digest) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(app.as_str())
    .bind(ts)
    .bind(nonce)
    .bind(&digest[..])
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Ok(()));
    }
    let seen: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT digest FROM callback_nonces WHERE app = $1 AND ts = $2 AND nonce = $3",
    )
    .bind(app.as_str())
    .bind(ts)
    .bind(nonce)
    .fetch_optional(pool)
    .await?;
    // Pruned between the two statements: the window still holds, so treat it as first seen.
    Ok(match seen {
        Some(seen) if seen.as_slice() != digest.as_slice() => Err(ReplayError::Replayed),
        _ => Ok(()),
    })
}

/// Deletes pairs older than twice the window.
pub async fn prune(pool: &PgPool, max_skew: Duration) -> Result<u64, sqlx::Error> {
    let secs = i64::try_from(max_skew.as_secs().saturating_mul(2)).unwrap_or(i64::MAX);
    Ok(sqlx::query(
        "DELETE FROM callback_nonces WHERE seen_at < now() - make_interval(secs => $1::double precision)",
    )
    .bind(secs as f64)
    .execute(pool)
    .await?
    .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_refuses_old_future_and_malformed_timestamps() {
        let now = 1_800_000_000;
        let w = DEFAULT_MAX_SKEW;
        assert_eq!(check_window("1800000000", now, w), Ok(now));
        assert_eq!(check_window("1800000300", now, w), Ok(now + 300));
        assert_eq!(check_window("1799999700", now, w), Ok(now - 300));
        assert!(matches!(
            check_window("1800000301", now, w),
            Err(ReplayError::OutsideWindow { .. })
        ));
        for bad in ["1", "1600000000"] {
            assert!(matches!(
                check_window(bad, now, w),
                Err(ReplayError::OutsideWindow { .. })
            ));
        }
        for bad in [
            "",
            "not-a-time",
            "-1800000000",
            "+1800000000",
            "1e9",
            "99999999999999999999",
        ] {
            assert_eq!(
                check_window(bad, now, w),
                Err(ReplayError::BadTimestamp),
                "{bad}"
            );
        }
    }

    #[test]
    fn digests_differ_by_method_and_body() {
        assert_ne!(request_digest("GET", b"x"), request_digest("POST", b"x"));
        assert_ne!(request_digest("POST", b"a"), request_digest("POST", b"b"));
        assert_eq!(request_digest("POST", b"a"), request_digest("POST", b"a"));
    }
}
