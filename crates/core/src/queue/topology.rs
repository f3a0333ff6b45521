//! Every exchange, queue and binding of one prefix, declared in one place.
//!
//! Names (prefix `p`, `wxnotify` by default):
//!
//! | entity | kind | what it is for |
//! |---|---|---|
//! | `p` | direct exchange | producers publish jobs here with routing key `jobs` or `bulk` |
//! | `p.jobs`, `p.bulk` | quorum queues bound by `jobs` / `bulk` | the two lanes the worker consumes |
//! | `p.retry.<tier>` | fanout exchange + quorum queue with a message TTL | a job waits there, then dead-letters back to `p` with its lane as routing key |
//! | `p.dead` | fanout exchange + quorum queue | the broker's own dead letters (delivery limit, overflow); the worker moves them to Postgres |
//!
//! Other programs depend on these names: change them only together with the worker and the
//! docs.
//!
//! This file holds the names, tiers and options; [`declare`] declares and deletes them on the
//! broker.

use std::time::Duration;

mod declare;

/// The delayed-retry tiers, shortest first: name (part of the exchange and queue names) and
/// how long a message waits in it. A worker picks one with [`tier_for`].
/// They are the default retry schedule's steps (500 ms doubling to 32 s, see
/// `delivery::retry`), then coarser ones for WeChat's own floors (45011: a minute) and pauses.
pub const RETRY_TIERS: &[(&str, Duration)] = &[
    ("500ms", Duration::from_millis(500)),
    ("1s", Duration::from_secs(1)),
    ("2s", Duration::from_secs(2)),
    ("4s", Duration::from_secs(4)),
    ("8s", Duration::from_secs(8)),
    ("16s", Duration::from_secs(16)),
    ("32s", Duration::from_secs(32)),
    ("1m", Duration::from_secs(60)),
    ("2m", Duration::from_secs(2 * 60)),
    ("5m", Duration::from_secs(5 * 60)),
    ("10m", Duration::from_secs(10 * 60)),
    ("1h", Duration::from_secs(60 * 60)),
];

/// The delivery limit of the dead-letter queue itself. It has no dead-letter exchange of its
/// own, so a message past this limit would be dropped: it is set far above anything a
/// working consumer reaches, and explicitly, because RabbitMQ 4.x would otherwise apply its
/// default of 20.
pub const DEAD_QUEUE_DELIVERY_LIMIT: u32 = 1_000;

pub use crate::domain::Lane;

/// The retry tier for a wanted delay: the smallest tier at least as long as `delay`, or the
/// longest tier when `delay` exceeds them all. Returns the tier's name and its real delay.
pub fn tier_for(delay: Duration) -> (&'static str, Duration) {
    RETRY_TIERS
        .iter()
        .copied()
        .find(|(_, d)| *d >= delay)
        .unwrap_or(RETRY_TIERS[RETRY_TIERS.len() - 1])
}

/// Limits written into the queues' arguments when they are created.
///
/// Arguments are fixed at creation: declaring an existing queue with other values fails (see
/// [`TopologyError::Inequivalent`]). To change them on a running system use a RabbitMQ
/// policy (`rabbitmqctl set_policy ... '{"delivery-limit": 20}' --apply-to quorum_queues`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyOptions {
    /// How many times a lane queue redelivers a message that was rejected or whose consumer
    /// died, before the broker dead-letters it (reason `delivery_limit`). Set explicitly:
    /// RabbitMQ 3.10 has no default (a poison message loops forever), 4.x defaults to 20.
    pub delivery_limit: u32,
    /// The most messages any one queue holds; past it publishes are refused (nacked) rather
    /// than old messages dropped (`x-overflow=reject-publish`).
    pub max_length: u64,
}

impl Default for TopologyOptions {
    fn default() -> Self {
        TopologyOptions {
            delivery_limit: 10,
            max_length: 10_000_000,
        }
    }
}

/// Why the topology could not be declared or deleted.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The entity exists with other arguments or another type. The broker closed the channel.
    #[error(
        "{kind} {name:?} already exists with different settings ({detail}). RabbitMQ cannot change \
         a {kind}'s arguments in place: use a policy to change its limits, or (when its messages may \
         be lost or were moved elsewhere) delete it (`rabbitmqctl delete_queue {name}` or the \
         management UI) and run `wxnotify migrate` again, or choose another WXNOTIFY_QUEUE_PREFIX"
    )]
    Inequivalent {
        /// `queue` or `exchange`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The broker's explanation (which argument differs).
        detail: String,
    },
    /// Any other broker or connection error, with what was being done.
    #[error("{action} failed")]
    Broker {
        /// What was being declared, bound or deleted.
        action: String,
        /// The broker's error.
        #[source]
        source: lapin::Error,
    },
}

/// The names of one prefix's exchanges and queues, and the code that declares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
}

impl Topology {
    /// The topology of `prefix` (from `WXNOTIFY_QUEUE_PREFIX`, already checked by the
    /// settings to be a plain name).
    pub fn new(prefix: impl Into<String>) -> Self {
        Topology {
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The main exchange (direct), where jobs are published: `{p}`.
    pub fn exchange(&self) -> String {
        self.prefix.clone()
    }

    /// A lane's queue: `{p}.jobs` or `{p}.bulk`.
    pub fn lane_queue(&self, lane: Lane) -> String {
        format!("{}.{}", self.prefix, lane.routing_key())
    }

    /// A retry tier's exchange (fanout): `{p}.retry.{tier}`. Publish there with the lane as
    /// routing key.
    pub fn retry_exchange(&self, tier: &str) -> String {
        format!("{}.retry.{tier}", self.prefix)
    }

    /// A retry tier's queue: `{p}.retry.{tier}` (same name as its exchange).
    pub fn retry_queue(&self, tier: &str) -> String {
        self.retry_exchange(tier)
    }

    /// The dead-letter exchange (fanout): `{p}.dead`.
    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// The dead-letter queue: `{p}.dead`.
    pub fn dead_queue(&self) -> String {
        self.dead_exchange()
    }

    /// Every queue of the prefix: lanes, retry tiers, dead letters.
    pub fn queues(&self) -> Vec<String> {
        let lanes = Lane::ALL.into_iter().map(|l| self.lane_queue(l));
        let tiers = RETRY_TIERS.iter().map(|(t, _)| self.retry_queue(t));
        lanes
            .chain(tiers)
            .chain(std::iter::once(self.dead_queue()))
            .collect()
    }

    /// Every exchange of the prefix: main, retry tiers, dead letters.
    pub fn exchanges(&self) -> Vec<String> {
        let tiers = RETRY_TIERS.iter().map(|(t, _)| self.retry_exchange(t));
        std::iter::once(self.exchange())
            .chain(tiers)
            .chain(std::iter::once(self.dead_exchange()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let t = Topology::new("p");
        assert_eq!(t.exchange(), "p");
        assert_eq!(t.lane_queue(Lane::Jobs), "p.jobs");
        assert_eq!(t.lane_queue(Lane::Bulk), "p.bulk");
        assert_eq!(t.retry_exchange("5s"), "p.retry.5s");
        assert_eq!(t.retry_queue("1h"), "p.retry.1h");
        assert_eq!(t.dead_exchange(), "p.dead");
        assert_eq!(t.dead_queue(), "p.dead");
        assert_eq!(t.queues().len(), 2 + RETRY_TIERS.len() + 1);
        assert_eq!(t.exchanges().len(), 1 + RETRY_TIERS.len() + 1);
    }

    #[test]
    fn a_delay_gets_the_smallest_tier_that_covers_it() {
        let s = Duration::from_secs;
        assert_eq!(tier_for(Duration::ZERO).0, "500ms");
        assert_eq!(tier_for(s(1)).0, "1s");
        assert_eq!(tier_for(Duration::from_millis(1001)).0, "2s");
        assert_eq!(tier_for(s(31)).0, "32s");
        assert_eq!(tier_for(s(33)).0, "1m");
        assert_eq!(tier_for(s(600)), ("10m", s(600)));
        assert_eq!(tier_for(s(86_400)), ("1h", s(3600)));
    }

    #[test]
    fn lanes_round_trip_through_their_routing_keys() {
        for lane in Lane::ALL {
            assert_eq!(Lane::from_routing_key(lane.routing_key()), Some(lane));
        }
        assert_eq!(Lane::from_routing_key("other"), None);
    }
}
