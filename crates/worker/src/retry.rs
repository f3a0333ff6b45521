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
//! 1 s, 2 s, 4 s … 32 s, then 1 min, 2 min, 5 min, 10 min, 1 h); a configured schedule whose
//! steps fall between tiers is rounded up to the next tier.
//!
//! **Jitter stays inside the tier.** The tier is chosen from the un-jittered delay; the jitter
//! then only shortens the wait, to a random point of `[max(tier × (1 - jitter), previous tier,
//! WeChat's floor), tier]` (default `jitter` 0.2: the 1 s tier waits 0.8–1 s), carried as the
//! message's own `expiration` in the tier queue. A tier queue expires messages from its head, so
//! a message leaves no sooner than its expiration and no later than the tier's TTL (the message
//! ahead of it was published earlier with at most that TTL): the wait never crosses into another
//! tier (the old bug: a 1 s backoff jittered to 1.2 s waited in the 5 s tier).
//!
//! When `max_attempts` sends of a life have failed the job dies with reason
//! `retries_exhausted`. A full daily quota (45009) pauses the app and does not count as an
//! attempt; so does an answer that refuses the app itself (it suspends the app, see
//! `wxnotify_services::app_pause`), and a job of a paused or suspended app waits without an attempt. Permanent errors die at once. A send whose answer never came may have reached the
//! person: the job is resent only while WeChat's `client_msg_id` window is open
//! (`resend_window`, measured from when the outcome first became uncertain), else it dies
//! `outcome_unknown`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use wxnotify_core::queue::{RETRY_TIERS, tier_for};

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
    pub busy_wait: Duration,
    /// The share of its tier by which a retry's wait may be shortened at random (0 = none,
    /// at most 1); never below the previous tier or WeChat's floor.
    pub jitter: f64,
    /// How long a job of a paused campaign waits in a retry tier before it is looked at again
    /// (no claim, no attempt, no rate permit spent; see `campaigns::gate`).
    pub campaign_paused_wait: Duration,
    /// How long a job of a suspended app (WeChat refuses the account) waits before it is looked
    /// at again; also the least time between two probes of the app across all workers.
    pub suspended_wait: Duration,
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
            busy_wait: Duration::from_secs(2),
            jitter: 0.2,
            campaign_paused_wait: crate::gate::PAUSED_JOB_WAIT,
            suspended_wait: wxnotify_services::app_pause::PROBE_EVERY,
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
    /// The result is the retry tier that serves it ([`RetryPolicy::tier_delay`]) shortened by
    /// a random jitter that stays inside that tier ([`RetryPolicy::jitter_in_tier`]).
    pub fn next_delay(&self, failed_attempt: u32, floor: Duration) -> Option<Duration> {
        let tier = self.tier_delay(failed_attempt, floor)?;
        Some(self.jitter_in_tier(tier, floor, rand::random::<f64>()))
    }

    /// The tier (its TTL: the longest the job will wait) that serves the wait after
    /// `failed_attempt` failed attempts, or `None` when no attempt is left.
    pub fn tier_delay(&self, failed_attempt: u32, floor: Duration) -> Option<Duration> {
        if failed_attempt >= self.max_attempts {
            return None;
        }
        Some(tier_for(self.backoff(failed_attempt).max(floor)).1)
    }

    /// A wait inside `tier` (a tier's TTL): `tier` shortened by the share `u` (in `[0, 1)`) of
    /// the jitter's span, and never at or below the previous tier (it would be served by that
    /// one) nor below `floor`.
    pub fn jitter_in_tier(&self, tier: Duration, floor: Duration, u: f64) -> Duration {
        let previous = RETRY_TIERS
            .iter()
            .map(|(_, ttl)| *ttl)
            .filter(|ttl| *ttl < tier)
            .max()
            .map_or(Duration::ZERO, |ttl| ttl + Duration::from_millis(1));
        let jitter = self.jitter.clamp(0.0, 1.0);
        let lowest = tier.mul_f64(1.0 - jitter).max(previous).max(floor);
        if lowest >= tier {
            return tier;
        }
        let wait = tier - (tier - lowest).mul_f64(u.clamp(0.0, 1.0));
        // Whole milliseconds (the message's `expiration`), rounded up: never below `lowest`.
        Duration::from_millis(wait.as_micros().div_ceil(1000) as u64).min(tier)
    }

    /// Whether a job whose outcome has been uncertain since `since` may be sent again after
    /// waiting `delay`: only inside the resend window.
    pub fn may_resend(&self, since: DateTime<Utc>, delay: Duration) -> bool {
        let window =
            chrono::Duration::from_std(self.resend_window).unwrap_or(chrono::Duration::MAX);
        // A jittered wait may last up to its tier's TTL: judge by the longest.
        let delay = tier_for(delay).1.max(delay);
        let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        Utc::now() + delay < since + window
    }

    /// The schedule in words, for logs and `--help`.
    pub fn describe(&self) -> String {
        let steps: Vec<String> = (1..self.max_attempts)
            .map(|n| {
                format!(
                    "{:?}",
                    self.tier_delay(n, Duration::ZERO).unwrap_or_default()
                )
            })
            .collect();
        format!(
            "{} attempts; waits {} (each shortened by up to {:.0} % inside its tier); uncertain \
             sends resent only within {:?}",
            self.max_attempts,
            steps.join(", "),
            self.jitter.clamp(0.0, 1.0) * 100.0,
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
            .map(|n| p.tier_delay(n, Duration::ZERO).unwrap())
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
        assert_eq!(p.tier_delay(8, Duration::ZERO), None);
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
            p.tier_delay(1, Duration::ZERO),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            p.tier_delay(2, Duration::ZERO),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            p.tier_delay(15, Duration::ZERO),
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
    fn jitter_stays_inside_the_chosen_tier() {
        let p = RetryPolicy::default();
        for failed in 1..p.max_attempts {
            let tier = p.tier_delay(failed, Duration::ZERO).unwrap();
            for u in [0.0, 0.25, 0.5, 0.999_999, 1.0] {
                let wait = p.jitter_in_tier(tier, Duration::ZERO, u);
                assert_eq!(
                    tier_for(wait).1,
                    tier,
                    "{wait:?} is served by the {tier:?} tier"
                );
                assert!(
                    wait <= tier && wait >= tier.mul_f64(0.8),
                    "{wait:?} in {tier:?}"
                );
            }
            for _ in 0..1_000 {
                let wait = p.next_delay(failed, Duration::ZERO).unwrap();
                assert_eq!(tier_for(wait).1, tier, "{wait:?} left the {tier:?} tier");
            }
        }
        // The whole tier as the span: still above the previous tier, never at it.
        let wide = RetryPolicy {
            jitter: 1.0,
            ..RetryPolicy::default()
        };
        let s = Duration::from_secs;
        assert_eq!(
            wide.jitter_in_tier(s(2), Duration::ZERO, 1.0),
            s(1) + Duration::from_millis(1)
        );
        assert_eq!(
            wide.jitter_in_tier(s(60), Duration::ZERO, 1.0),
            s(32) + Duration::from_millis(1)
        );
        assert_eq!(
            tier_for(wide.jitter_in_tier(s(1), Duration::ZERO, 1.0)).1,
            s(1)
        );
        // Never below WeChat's floor, and none at all when disabled.
        assert_eq!(wide.jitter_in_tier(s(60), s(60), 0.5), s(60));
        let none = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert_eq!(none.next_delay(3, Duration::ZERO), Some(s(2)));
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
