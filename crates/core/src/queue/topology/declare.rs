//! Declaring (and, for tests and the demo, deleting) a prefix's exchanges, queues and bindings
//! on the broker, with each queue's arguments; a declaration that meets an entity with other
//! settings becomes [`TopologyError::Inequivalent`].

use std::time::Duration;

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use super::{
    DEAD_QUEUE_DELIVERY_LIMIT, Lane, RETRY_TIERS, Topology, TopologyError, TopologyOptions,
};

impl Topology {
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
