//! RabbitMQ: the topology and publishing with confirms (the `enqueue` and `migrate` commands
//! are in the `wxnotify` binary).
//!
//! # The topology, and why it looks like this
//!
//! Producers publish a job to the direct exchange `{p}` with routing key `jobs` or `bulk`; it
//! lands in the lane queue `{p}.jobs` or `{p}.bulk`, which the worker consumes with manual
//! acks. A failed attempt is retried by publishing the job to a retry tier `{p}.retry.{tier}`
//! (with the lane as routing key), where it waits out the tier's TTL and is dead-lettered
//! back to `{p}` under the same routing key, i.e. into its lane. Messages the broker itself
//! gives up on (past the delivery limit) go to `{p}.dead`. See [`topology`] for the names.
//!
//! - **Quorum queues** everywhere: replicated, and a publisher confirm means a quorum of
//!   replicas has the message. They also count deliveries, so `x-delivery-limit` turns a job
//!   that keeps crashing workers into a dead letter instead of an endless loop. The limit is
//!   set explicitly: RabbitMQ 3.10 has no default, 4.x defaults to 20.
//! - **Retry tiers rather than per-message TTL or the delayed-message plugin**: per-message
//!   TTL only expires at the head of a queue, so a 1 h retry would hold up a 1 s retry behind
//!   it; one queue per delay keeps every queue first-in first-out. The delayed-message plugin
//!   is not in stock RabbitMQ, keeps a single copy and has been archived; native delayed
//!   retry needs 4.3. Tiers work on 3.10 and 4.x alike.
//! - **Lanes rather than priorities**: quorum queues on 3.10 refuse `x-max-priority`, and two
//!   queues let campaign traffic (`bulk`) have its own consumers and prefetch without ever
//!   starving transactional messages (`jobs`).
//! - **At-least-once dead-lettering** (`x-dead-letter-strategy=at-least-once`, which requires
//!   `x-overflow=reject-publish`, plus `x-max-length`): the default at-most-once
//!   dead-lettering re-publishes without confirms and can lose a message, which matters twice
//!   here, since every retry passes through dead-lettering (tier → lane). With at-least-once
//!   the source queue keeps the message until the target confirmed it. A full queue refuses
//!   new publishes (the publisher sees a nack) instead of dropping its oldest messages.
//!
//! # Publishing
//!
//! [`Publisher`] publishes persistent, `mandatory` messages on channels in confirm mode and
//! reports unroutable ([`PublishError::Unroutable`]), refused ([`PublishError::Nacked`]) and
//! failed ([`PublishError::Broker`]) publishes; [`Publisher::publish_batch`] pipelines a batch
//! and waits for all its confirms at once. [`FailoverPublisher`] is the one every command and
//! `serve` publishes with: over the nodes of `AMQP_URL`, it publishes again on the next node
//! what a lost connection left unconfirmed.

mod confirms;
mod connection;
pub mod diagnose;
mod failover;
pub mod ndjson;
mod publisher;
pub mod topology;

pub use connection::{
    CONNECT_TIMEOUT, ConnectError, connect, connect_node_of, first_node, node_lost,
};
pub use failover::{FailoverOptions, FailoverPublisher, PublishJobs};
pub use ndjson::{
    EnqueueAborted, EnqueueSummary, Rejection, publish_ndjson, publish_ndjson_checked,
};
pub use publisher::{ATTEMPT_HEADER, PublishError, Publisher, PublisherOptions, attempt_headers};
pub use topology::{Lane, RETRY_TIERS, Topology, TopologyError, TopologyOptions, tier_for};
