//! Publishing with publisher confirms: a publish succeeds only when the broker has taken
//! responsibility for the message (for a quorum queue: a quorum of replicas has it).
//!
//! Every message is persistent and published `mandatory`: a message no queue is bound for
//! comes back as a `basic.return` (before its ack) and is reported as
//! [`PublishError::Unroutable`] instead of silently vanishing.
//!
//! # Why each publish holds a channel
//!
//! lapin hands a returned message to whichever confirm it resolves next, and resolves a
//! `multiple` ack in hash-map order, so a return cannot be matched to its publish by the
//! confirm that carries it. The publisher therefore lets one publish (or one batch) at a time
//! use a channel, from its first frame until its last confirm: every return seen in that
//! window belongs to it and is matched by `message_id`. Concurrency comes from a small pool
//! of channels, and a batch pipelines thousands of messages on its channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::confirms::{await_all, outcome, returned_ids, send_all};
use super::topology::{Lane, Topology, tier_for};
use crate::domain::Job;

/// Header holding the attempt number of a job (1 on first publish; the worker publishes
/// retries with attempt + 1).
pub const ATTEMPT_HEADER: &str = "x-wxnotify-attempt";

/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

/// Why a message was not accepted by the broker.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// No queue is bound for the exchange and routing key (the topology is missing: run
    /// `wxnotify migrate`). The broker returned the message.
    #[error(
        "the broker returned the message as unroutable (is the topology declared? run `wxnotify migrate`)"
    )]
    Unroutable,
    /// The broker refused the message, e.g. the queue is at its `x-max-length`.
    #[error("the broker refused the message (nack): the queue may be full")]
    Nacked,
    /// The channel or connection failed, or no confirm came in time; the message may or may
    /// not have been enqueued (publish it again: the job id makes that safe).
    #[error("publishing failed")]
    Broker(#[source] lapin::Error),
    /// No node of `AMQP_URL` answered for the publisher's patience (a
    /// [`FailoverPublisher`](super::FailoverPublisher)); the job was not enqueued by this
    /// attempt.
    #[error("no RabbitMQ node answered for {patience:?} (the last error: {last})")]
    NoBroker {
        /// How long the publisher tried.
        patience: Duration,
        /// The last node's error (no password in it).
        last: String,
    },
}

/// How a [`Publisher`] behaves.
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// Channels in the pool: how many publishes or batches can wait for confirms at once.
    pub channels: usize,
    /// How long to wait for the broker's confirms of one publish or batch. A broker under a
    /// memory or disk alarm blocks publishers; this turns that into an error.
    pub confirm_timeout: Duration,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        PublisherOptions {
            channels: 4,
            confirm_timeout: Duration::from_secs(30),
        }
    }
}

/// Publishes jobs to one prefix's topology with confirms. Cheap to clone; clones share the
/// channel pool, so it can be used from many tokio tasks.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    topology: Topology,
    /// Kept to open a new channel when the broker closed one (a channel error such as
    /// publishing to a missing exchange closes the channel, not the connection).
    connection: Arc<Connection>,
    /// One slot per channel. Holding a slot's lock is what gives a publish exclusive use of
    /// the channel until its confirms are in (see the module docs). `None` until first use.
    slots: Vec<Mutex<Option<Channel>>>,
    /// Round-robin over the slots.
    next: AtomicUsize,
    confirm_timeout: Duration,
}

/// One message to publish.
pub(super) struct Outgoing<'a> {
    pub(super) body: &'a [u8],
    pub(super) properties: BasicProperties,
    pub(super) message_id: Option<&'a str>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("prefix", &self.inner.topology.prefix())
            .field("channels", &self.inner.slots.len())
            .finish()
    }
}

impl Publisher {
    /// A publisher on `connection` for `topology`. Opens its first channel (in confirm mode)
    /// now, so a dead connection fails here; the others open on first use.
    pub async fn new(
        connection: Arc<Connection>,
        topology: Topology,
        options: PublisherOptions,
    ) -> Result<Self, PublishError> {
        let slots = (0..options.channels.max(1))
            .map(|_| Mutex::new(None))
            .collect();
        let publisher = Publisher {
            inner: Arc::new(Inner {
                topology,
                connection,
                slots,
                next: AtomicUsize::new(0),
                confirm_timeout: options.confirm_timeout,
            }),
        };
        let mut first = publisher.inner.slots[0].lock().await;
        publisher.inner.ready_channel(&mut first).await?;
        drop(first);
        Ok(publisher)
    }

    /// The topology this publisher publishes to.
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// Publishes one job to `lane` and waits for the broker's confirm.
    #[tracing::instrument(skip_all, fields(job_id = %job.id, lane = %lane), err)]
    pub async fn publish(&self, job: &Job, lane: Lane) -> Result<(), PublishError> {
        let mut results = self.publish_batch(std::slice::from_ref(job), lane).await;
        results.pop().expect("one result per job")
    }

    /// Publishes every job to `lane`, then waits for all their confirms: one round trip for
    /// the whole batch instead of one per job. Returns one result per job, in order.
    #[tracing::instrument(skip_all, fields(jobs = jobs.len(), lane = %lane))]
    pub async fn publish_batch(&self, jobs: &[Job], lane: Lane) -> Vec<Result<(), PublishError>> {
        let bodies: Vec<Vec<u8>> = jobs.iter().map(Job::to_json).collect();
        let messages = jobs
            .iter()
            .zip(&bodies)
            .map(|(job, body)| Outgoing {
                body,
                properties: job_properties(job.id.as_str(), attempt_headers(1)),
                message_id: Some(job.id.as_str()),
            })
            .collect();
        let exchange = self.inner.topology.exchange();
        let results = self
            .inner
            .publish_all(&exchange, lane.routing_key(), messages)
            .await;
        log_failures(&results);
        results
    }

    /// Publishes arbitrary bytes with confirm: the worker's retries (to a retry tier's
    /// exchange, routing key = the lane, headers with the next attempt) and tests that need
    /// malformed messages. The message is persistent, mandatory and `application/json`.
    #[tracing::instrument(
        skip_all,
        fields(exchange = %exchange, routing_key = %routing_key, message_id = message_id.unwrap_or("")),
        err
    )]
    pub async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        headers: FieldTable,
        message_id: Option<&str>,
    ) -> Result<(), PublishError> {
        let mut properties = job_properties_without_id(headers);
        if let Some(id) = message_id {
            properties = properties.with_message_id(ShortString::from(id));
        }
        let message = Outgoing {
            body,
            properties,
            message_id,
        };
        let mut results = self
            .inner
            .publish_all(exchange, routing_key, vec![message])
            .await;
        results.pop().expect("one result per message")
    }

    /// Schedules a retry: publishes `body` to the retry tier that fits `delay` (see
    /// [`tier_for`]) with `lane` as routing key, so that it comes back to `lane` when the
    /// tier's TTL expires. A `delay` shorter than the tier's TTL (a jittered one) is the
    /// message's own `expiration`: the tier expires messages from its head, so the message
    /// waits between `delay` and the TTL. `headers` are kept, with [`ATTEMPT_HEADER`] set to
    /// `attempt`. Returns the tier's real (longest) delay. Ack the delivery being retried only
    /// after this succeeds.
    ///
    /// Prefer this to [`Publisher::publish_raw`]: a tier's exchange is a fanout, so it accepts
    /// any routing key, but a message whose key is not a lane could never leave the tier
    /// (at-least-once dead-lettering keeps retrying an unroutable dead letter).
    #[tracing::instrument(skip(self, body, headers), fields(lane = %lane), err)]
    pub async fn publish_retry(
        &self,
        body: &[u8],
        message_id: &str,
        lane: Lane,
        attempt: u32,
        delay: Duration,
        mut headers: FieldTable,
    ) -> Result<Duration, PublishError> {
        let (tier, real_delay) = tier_for(delay);
        headers.insert(
            ATTEMPT_HEADER.into(),
            AMQPValue::LongLongInt(attempt.into()),
        );
        let exchange = self.inner.topology.retry_exchange(tier);
        let mut properties =
            job_properties_without_id(headers).with_message_id(ShortString::from(message_id));
        if delay < real_delay {
            let ms = delay.as_millis().max(1).to_string();
            properties = properties.with_expiration(ShortString::from(ms));
        }
        let message = Outgoing {
            body,
            properties,
            message_id: Some(message_id),
        };
        let mut results = self
            .inner
            .publish_all(&exchange, lane.routing_key(), vec![message])
            .await;
        results.pop().expect("one result per message")?;
        Ok(real_delay)
    }
}

/// The headers of a job's `attempt`-th publish.
pub fn attempt_headers(attempt: u32) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(
        ATTEMPT_HEADER.into(),
        AMQPValue::LongLongInt(attempt.into()),
    );
    headers
}

fn job_properties(job_id: &str, headers: FieldTable) -> BasicProperties {
    job_properties_without_id(headers).with_message_id(ShortString::from(job_id))
}

fn job_properties_without_id(headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type("application/json".into())
        .with_headers(headers)
}

/// A debug line for a batch with failures: the callers get every job's result and say what it
/// means (a failover publishes again, a command reports the lines, the dispatcher reconnects).
fn log_failures(results: &[Result<(), PublishError>]) {
    let failed = results.iter().filter(|r| r.is_err()).count();
    if failed > 0 {
        let first = results.iter().find_map(|r| r.as_ref().err());
        tracing::debug!(failed, error = ?first, "some publishes failed");
    }
}

impl Inner {
    /// Publishes `messages` on one channel held for the whole batch and collects a result
    /// for each.
    async fn publish_all(
        &self,
        exchange: &str,
        routing_key: &str,
        messages: Vec<Outgoing<'_>>,
    ) -> Vec<Result<(), PublishError>> {
        let mut guard = self.take_slot().await;
        let channel = match self.ready_channel(&mut guard).await {
            Ok(channel) => channel,
            Err(err) => return messages.iter().map(|_| Err(err.clone())).collect(),
        };
        let ids: Vec<Option<&str>> = messages.iter().map(|m| m.message_id).collect();
        let deadline = Instant::now() + self.confirm_timeout;
        let sent = send_all(&channel, exchange, routing_key, messages, deadline).await;
        let confirmations = await_all(sent, deadline).await;
        if confirmations.iter().any(Result::is_err) {
            // Confirms may still be outstanding: never let a later publish see them.
            *guard = None;
        }
        let returned = returned_ids(&confirmations);
        if !returned.is_empty() {
            tracing::warn!(exchange, routing_key, "broker returned unroutable messages");
        }
        confirmations
            .into_iter()
            .zip(ids)
            .map(|(c, id)| outcome(c, id, &returned))
            .collect()
    }

    /// A channel slot for one publish: the first free one from the round-robin position, or
    /// (all busy) that position's, waited for.
    async fn take_slot(&self) -> tokio::sync::MutexGuard<'_, Option<Channel>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.slots.len();
        match (0..n).find_map(|k| self.slots[(start + k) % n].try_lock().ok()) {
            Some(free) => free,
            None => self.slots[start % n].lock().await,
        }
    }

    /// The slot's channel, (re)opened in confirm mode when missing or closed.
    async fn ready_channel(&self, slot: &mut Option<Channel>) -> Result<Channel, PublishError> {
        if let Some(channel) = slot.as_ref()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(PublishError::Broker)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(PublishError::Broker)?;
        tracing::debug!(channel = channel.id(), "publisher channel opened");
        *slot = Some(channel.clone());
        Ok(channel)
    }
}
