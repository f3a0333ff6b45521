//! The retry policy.
//!
//! A job's life: it is claimed in the ledger (attempt n), sent, and classified. A transient
//! failure (WeChat's -1, 45011, 43117, HTTP 5xx, a timeout, a dropped connection) schedules
//! attempt n+1 after an exponential backoff with jitter (backon's `ExponentialBuilder`: 1 s,
//! 2 s, 4 s … capped at 1 h, jittered), never sooner than WeChat's own hint (the next minute for
//! 45011). The delay is served by the smallest retry tier queue at least that long (the tiers are
//! fixed TTL queues, so the wait is rounded up to 1 s, 5 s, 30 s, 2 min, 10 min or 1 h). When
//! `max_attempts` attempts have failed the job dies with reason `retries_exhausted`, its last
//! errcode and its attempt history. A full daily quota (45009) pauses the app instead and does
//! not count as an attempt. Permanent errors die at once.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// How often and how patiently a job is retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all (the first one included) before `retries_exhausted`.
    pub max_attempts: u32,
    /// The first backoff.
    pub min_delay: Duration,
    /// The longest backoff.
    pub max_delay: Duration,
    /// How long an app pauses after 45009 before it probes WeChat again.
    pub quota_pause: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(3600),
            quota_pause: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// The wait before the attempt after `failed_attempt` (1-based), or `None` when no attempt
    /// is left. `floor` is WeChat's own minimum (see `errcode::retry_floor`).
    pub fn next_delay(&self, failed_attempt: u32, floor: Duration) -> Option<Duration> {
        if failed_attempt >= self.max_attempts {
            return None;
        }
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.max_attempts as usize)
            .build();
        let delay = delays
            .nth(failed_attempt.saturating_sub(1) as usize)
            .unwrap_or(self.max_delay);
        Some(delay.max(floor).min(self.max_delay.max(floor)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stop_at_max_attempts() {
        let p = RetryPolicy {
            max_attempts: 4,
            ..RetryPolicy::default()
        };
        let d1 = p.next_delay(1, Duration::ZERO).unwrap();
        let d3 = p.next_delay(3, Duration::ZERO).unwrap();
        assert!(
            d1 >= Duration::from_secs(1) && d1 < Duration::from_secs(3),
            "{d1:?}"
        );
        assert!(d3 >= Duration::from_secs(4), "{d3:?}");
        assert_eq!(p.next_delay(4, Duration::ZERO), None);
    }

    #[test]
    fn wechat_floor_wins_over_a_short_backoff() {
        let p = RetryPolicy::default();
        assert!(p.next_delay(1, Duration::from_secs(60)).unwrap() >= Duration::from_secs(60));
    }
}
