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

use std::time::Duration;

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

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

    /// Declares every exchange, queue and binding. Idempotent: declaring what exists with
    /// the same settings changes nothing. Stops at the first error; after
    /// [`TopologyError::Inequivalent`] the broker has closed `channel`.
    #[tracing::instrument(skip_all, fields(prefix = %self.prefix), err)]
    pub async fn declare(
        &self,
        channel: &Channel,
        opts: &TopologyOptions,
    ) -> Result<(), TopologyError> {
        self.declare_exchanges(channel).await?;
        for lane in Lane::ALL {
            let queue = self.lane_queue(lane);
            declare_queue(channel, &queue, self.lane_arguments(opts)).await?;
            bind(channel, &queue, &self.exchange(), lane.routing_key()).await?;
        }
        for (tier, ttl) in RETRY_TIERS {
            let queue = self.retry_queue(tier);
            declare_queue(channel, &queue, self.retry_arguments(*ttl, opts)).await?;
            bind(channel, &queue, &self.retry_exchange(tier), "").await?;
        }
        let dead = self.dead_queue();
        declare_queue(channel, &dead, dead_arguments(opts)).await?;
        bind(channel, &dead, &self.dead_exchange(), "").await?;
        tracing::info!(
            queues = self.queues().len(),
            exchanges = self.exchanges().len(),
            "topology declared"
        );
        Ok(())
    }

    /// Deletes every queue (with its messages) and exchange of the prefix; what does not
    /// exist is skipped. For tests and demo clean-up, never for production prefixes.
    #[tracing::instrument(skip_all, fields(prefix = %self.prefix), err)]
    pub async fn delete(&self, channel: &Channel) -> Result<(), TopologyError> {
        for queue in self.queues() {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(|e| broker(format!("deleting queue {queue}"), e))?;
        }
        for exchange in self.exchanges() {
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .map_err(|e| broker(format!("deleting exchange {exchange}"), e))?;
        }
        Ok(())
    }

    async fn declare_exchanges(&self, channel: &Channel) -> Result<(), TopologyError> {
        declare_exchange(channel, &self.exchange(), ExchangeKind::Direct).await?;
        declare_exchange(channel, &self.dead_exchange(), ExchangeKind::Fanout).await?;
        for (tier, _) in RETRY_TIERS {
            declare_exchange(channel, &self.retry_exchange(tier), ExchangeKind::Fanout).await?;
        }
        Ok(())
    }

    /// Lane queues dead-letter to `{p}.dead` (delivery limit, overflow of the dead queue is
    /// back-pressure: at-least-once keeps the message in the lane until `{p}.dead` takes it).
    fn lane_arguments(&self, opts: &TopologyOptions) -> FieldTable {
        let mut args = quorum_arguments(opts.max_length);
        args.insert("x-delivery-limit".into(), int(opts.delivery_limit.into()));
        args.insert("x-dead-letter-exchange".into(), text(&self.dead_exchange()));
        args
    }

    /// Retry queues have no consumer: messages expire after `ttl` and are dead-lettered to the
    /// main exchange. No `x-dead-letter-routing-key`, so each keeps the routing key it was
    /// published with (its lane) and returns to its lane.
    fn retry_arguments(&self, ttl: Duration, opts: &TopologyOptions) -> FieldTable {
        let mut args = quorum_arguments(opts.max_length);
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        args.insert("x-message-ttl".into(), int(ttl_ms));
        args.insert("x-dead-letter-exchange".into(), text(&self.exchange()));
        args
    }
}

/// The dead queue has no dead-letter exchange: nothing leaves it but the worker's acks.
fn dead_arguments(opts: &TopologyOptions) -> FieldTable {
    let mut args = quorum_arguments(opts.max_length);
    args.insert(
        "x-delivery-limit".into(),
        int(DEAD_QUEUE_DELIVERY_LIMIT.into()),
    );
    args
}

/// Arguments every queue shares: quorum type, a length limit that refuses publishes when
/// reached, and at-least-once dead-lettering (which needs `reject-publish`; on the dead queue
/// the strategy is inert but keeps every queue's arguments alike).
fn quorum_arguments(max_length: u64) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    args.insert(
        "x-max-length".into(),
        int(i64::try_from(max_length).unwrap_or(i64::MAX)),
    );
    args.insert("x-overflow".into(), text("reject-publish"));
    args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    args
}

/// Integers are always sent as 64-bit signed (`l`): one type everywhere, so a redeclaration
/// never differs by type alone.
fn int(v: i64) -> AMQPValue {
    AMQPValue::LongLongInt(v)
}

fn text(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

async fn declare_exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
) -> Result<(), TopologyError> {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(name.into(), kind, options, FieldTable::default())
        .await
        .map_err(|e| classify("exchange", name, e))
}

async fn declare_queue(
    channel: &Channel,
    name: &str,
    args: FieldTable,
) -> Result<(), TopologyError> {
    // Quorum queues must be durable, non-exclusive and not auto-delete.
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name.into(), options, args)
        .await
        .map(|_| ())
        .map_err(|e| classify("queue", name, e))
}

async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    key: &str,
) -> Result<(), TopologyError> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            ShortString::from(key),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| broker(format!("binding {queue} to {exchange} with key {key:?}"), e))
}

/// PRECONDITION_FAILED on a declaration means "exists with other settings".
fn classify(kind: &'static str, name: &str, err: lapin::Error) -> TopologyError {
    if let lapin::ErrorKind::ProtocolError(amqp) = err.kind()
        && matches!(
            amqp.kind(),
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
        )
    {
        return TopologyError::Inequivalent {
            kind,
            name: name.to_owned(),
            detail: amqp.get_message().to_string(),
        };
    }
    broker(format!("declaring {kind} {name}"), err)
}

fn broker(action: String, source: lapin::Error) -> TopologyError {
    TopologyError::Broker { action, source }
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
