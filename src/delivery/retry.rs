//! The retry policy: an explicit schedule on WeChat's time scale.
//!
//! A job's life: it is claimed in the ledger, sent, and classified. A transient failure (WeChat's
//! -1, 45011, 43117, HTTP 5xx, a timeout, a dropped connection) schedules the next attempt after
//!
//! ```text
//! delay(n) = min(first_delay × factor^(n-1), max_delay)      n = failed attempts in this life
//! ```
//!
//! never sooner than WeChat's own hint (the next minute for 45011, two for 43117). The delay is
//! served by a retry tier queue (fixed TTL queues, see `queue::topology::RETRY_TIERS`): the
//! smallest tier at least that long. The tiers are the default schedule's own steps (500 ms,
//! 1 s, 2 s, 4 s … 32 s, then 1 min, 2 min, 5 min, 10 min, 1 h), so with the defaults every
//! retry waits exactly its delay; a configured schedule whose steps fall between tiers is
//! rounded up to the next tier. There is no jitter on top: a jitter that pushed a delay past its
//! tier would double the wait (a 1 s backoff jittered to 1.2 s waited 5 s), and retries of jobs
//! that failed at different instants are already spread by when they failed.
//!
//! When `max_attempts` sends of a life have failed the job dies with reason
//! `retries_exhausted`. A full daily quota (45009) pauses the app and does not count as an
//! attempt. Permanent errors die at once. A send whose answer never came may have reached the
//! person: the job is resent only while WeChat's `client_msg_id` window is open
//! (`resend_window`, measured from when the outcome first became uncertain), else it dies
//! `outcome_unknown`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::queue::tier_for;

/// How often and how patiently a job is retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all (the first one included) per life before `retries_exhausted`.
    pub max_attempts: u32,
    /// The first backoff.
    pub min_delay: Duration,
    /// Each backoff is this many times the one before.
    pub factor: f64,
    /// The longest backoff.
    pub max_delay: Duration,
    /// How long an app pauses after 45009 before it probes WeChat again.
    pub quota_pause: Duration,
    /// How long after a send with no answer the job may still be sent again: WeChat drops a
    /// resend with the same `client_msg_id` for about 10 minutes; the default keeps 2 minutes of
    /// margin.
    pub resend_window: Duration,
    /// How long a delivery waits when another delivery of the same job id holds a live claim.
    pub held_wait: Duration,
    /// How long a job of a paused campaign waits in a retry tier before it is looked at again
    /// (no claim, no attempt, no rate permit spent; see `campaigns::gate`).
    pub campaign_paused_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            min_delay: Duration::from_millis(500),
            factor: 2.0,
            max_delay: Duration::from_secs(600),
            quota_pause: Duration::from_secs(600),
            resend_window: Duration::from_secs(8 * 60),
            held_wait: Duration::from_secs(2),
            campaign_paused_wait: crate::campaigns::gate::PAUSED_JOB_WAIT,
        }
    }
}

impl RetryPolicy {
    /// The schedule's delay after `failed_attempt` (1-based, within the life) failed attempts,
    /// before tiers and WeChat's floor.
    pub fn backoff(&self, failed_attempt: u32) -> Duration {
        let exp = failed_attempt.saturating_sub(1).min(64) as i32;
        let secs = self.min_delay.as_secs_f64() * self.factor.max(1.0).powi(exp);
        Duration::from_secs_f64(secs.min(self.max_delay.as_secs_f64()))
    }

    /// The wait before the attempt after `failed_attempt` (1-based, within the life), or `None`
    /// when no attempt is left. `floor` is WeChat's own minimum (see `errcode::retry_floor`).
    /// The result is what the job will really wait: the retry tier that serves it.
    pub fn next_delay(&self, failed_attempt: u32, floor: Duration) -> Option<Duration> {
        if failed_attempt >= self.max_attempts {
            return None;
        }
        Some(tier_for(self.backoff(failed_attempt).max(floor)).1)
    }

    /// Whether a job whose outcome has been uncertain since `since` may be sent again after
    /// waiting `delay`: only inside the resend window.
    pub fn may_resend(&self, since: DateTime<Utc>, delay: Duration) -> bool {
        let window =
            chrono::Duration::from_std(self.resend_window).unwrap_or(chrono::Duration::MAX);
        let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        Utc::now() + delay < since + window
    }

    /// The schedule in words, for logs and `--help`.
    pub fn describe(&self) -> String {
        let steps: Vec<String> = (1..self.max_attempts)
            .map(|n| {
                format!(
                    "{:?}",
                    self.next_delay(n, Duration::ZERO).unwrap_or_default()
                )
            })
            .collect();
        format!(
            "{} attempts; waits {}; uncertain sends resent only within {:?}",
            self.max_attempts,
            steps.join(", "),
            self.resend_window
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_is_its_tiers_exactly() {
        let p = RetryPolicy::default();
        let waits: Vec<Duration> = (1..8)
            .map(|n| p.next_delay(n, Duration::ZERO).unwrap())
            .collect();
        let ms = Duration::from_millis;
        assert_eq!(
            waits,
            [
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(8000),
                ms(16_000),
                ms(32_000)
            ],
            "a busy WeChat gets its first retry within a second"
        );
        assert_eq!(p.next_delay(8, Duration::ZERO), None);
    }

    #[test]
    fn a_configured_schedule_is_capped_and_rounded_up_to_a_tier() {
        let p = RetryPolicy {
            max_attempts: 20,
            min_delay: Duration::from_millis(300),
            factor: 3.0,
            max_delay: Duration::from_secs(120),
            ..RetryPolicy::default()
        };
        assert_eq!(
            p.next_delay(1, Duration::ZERO),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            p.next_delay(2, Duration::ZERO),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            p.next_delay(15, Duration::ZERO),
            Some(Duration::from_secs(120))
        );
    }

    #[test]
    fn wechat_floor_wins_over_a_short_backoff() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.next_delay(1, Duration::from_secs(60)),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn uncertain_sends_are_resent_only_inside_the_window() {
        let p = RetryPolicy::default();
        let now = Utc::now();
        assert!(p.may_resend(now, Duration::from_secs(60)));
        assert!(!p.may_resend(now, Duration::from_secs(8 * 60)));
        assert!(!p.may_resend(now - chrono::Duration::minutes(9), Duration::ZERO));
    }
}
