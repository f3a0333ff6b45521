//! The broker side of the worker: consume the lanes (and the broker's own dead letters), run
//! each delivery through the [`Pipeline`] in its own task, and settle it: ack after the outcome
//! is committed in Postgres, or publish the retry (with a confirm) and then ack.
//!
//! A lost connection is re-established with capped exponential backoff (backon): a new
//! connection, channels, prefetch and consumers. Tasks of the old connection finish their work;
//! their acks fail and the broker redelivers those messages, which the ledger recognises. On
//! shutdown the consumers are cancelled first, in-flight deliveries reach a recorded outcome,
//! then the connection closes (unstarted prefetched messages return to the queue).

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use futures::stream::{SelectAll, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::acks::Acks;
use super::batch::DbError;
use super::death::Death;
use super::link::BrokerLink;
use super::outcome::{DeadReason, Failure, Outcome};
use super::pipeline::{BrokerDead, DB_RETRY, Decision, Pipeline, message_key};
use crate::domain::Job;
use crate::queue::{Lane, Publisher, PublisherOptions, Topology, TopologyOptions, connect};

/// Broker-side settings of a worker.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Unacked deliveries per lane (and so in-flight sends per lane). Acks are coalesced per
    /// run of settled deliveries, so a window larger than the sends in flight keeps the queue
    /// flowing while one slow delivery holds its run back.
    pub prefetch: u16,
    /// The lanes to consume.
    pub lanes: Vec<Lane>,
    /// Whether to move the broker's dead letters (`{prefix}.dead`) into Postgres.
    pub consume_dead: bool,
    /// Queue arguments used when declaring the topology.
    pub topology: TopologyOptions,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            prefetch: 512,
            lanes: Lane::ALL.to_vec(),
            consume_dead: true,
            topology: TopologyOptions::default(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Source {
    Lane(Lane),
    BrokerDead,
}

/// Consumes and settles until shut down.
pub struct Consumer {
    pipeline: Arc<Pipeline>,
    amqp_url: SecretString,
    topology: Topology,
    options: ConsumerOptions,
    link: BrokerLink,
}

impl Consumer {
    /// A consumer for `topology` on the broker at `amqp_url`.
    pub fn new(
        pipeline: Arc<Pipeline>,
        amqp_url: SecretString,
        topology: Topology,
        options: ConsumerOptions,
    ) -> Self {
        Consumer {
            pipeline,
            amqp_url,
            topology,
            options,
            link: BrokerLink::default(),
        }
    }

    /// Whether this consumer is consuming now (for `/healthz`).
    pub fn link(&self) -> BrokerLink {
        self.link.clone()
    }

    /// Runs sessions (reconnecting with backoff) until `shutdown`, then waits for in-flight
    /// deliveries.
    pub async fn run(&self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let mut reconnect = Reconnect::default();
        while !shutdown.is_cancelled() {
            let session = self.session(&tracker, &shutdown, &mut reconnect).await;
            self.link.set_consuming(false);
            match session {
                Ok(()) => reconnect.connected(),
                Err(e) => {
                    let wait = reconnect.next_wait();
                    tracing::warn!(error = %format!("{e:#}"), retry_in_ms = wait.as_millis() as u64, "RabbitMQ session ended; reconnecting");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        tracker.close();
        tracker.wait().await;
    }

    /// One connection's life. Returns `Ok` only on shutdown.
    async fn session(
        &self,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
        reconnect: &mut Reconnect,
    ) -> anyhow::Result<()> {
        let name = format!("wxnotify-worker {}", self.topology.prefix());
        let connection = Arc::new(connect(&self.amqp_url, &name).await?);
        // The broker answers: the next loss starts the backoff from its shortest wait again.
        reconnect.connected();
        let setup = connection.create_channel().await?;
        self.topology
            .declare(&setup, &self.options.topology)
            .await?;
        setup.close(200, "topology declared".into()).await?;
        let publisher = Publisher::new(
            connection.clone(),
            self.topology.clone(),
            PublisherOptions::default(),
        )
        .await?;
        let mut streams = SelectAll::new();
        let mut consumers = Vec::new();
        let mut coalescers = Vec::new();
        let mut sources: Vec<(Source, String)> = self
            .options
            .lanes
            .iter()
            .map(|l| (Source::Lane(*l), self.topology.lane_queue(*l)))
            .collect();
        if self.options.consume_dead {
            sources.push((Source::BrokerDead, self.topology.dead_queue()));
        }
        for (source, queue) in sources {
            let channel = connection.create_channel().await?;
            channel
                .basic_qos(self.options.prefetch, BasicQosOptions::default())
                .await?;
            let tag = format!("wxnotify-{}-{}", queue, uuid::Uuid::new_v4().simple());
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let (acks, coalescer) = Acks::spawn(channel.clone());
            streams.push(consumer.map(move |d| (source, acks.clone(), d)).boxed());
            consumers.push((channel, tag));
            coalescers.push(coalescer);
        }
        tracing::info!(
            prefix = self.topology.prefix(),
            prefetch = self.options.prefetch,
            "consuming"
        );
        self.link.set_consuming(true);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    for (channel, tag) in &consumers {
                        let _ = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
                    }
                    tracing::info!("consumers cancelled; waiting for in-flight deliveries");
                    tracker.close();
                    tracker.wait().await;
                    // Every settled delivery has been reported; let the last acks go out.
                    drop(streams);
                    for coalescer in coalescers {
                        let _ = coalescer.await;
                    }
                    let _ = connection.close(200, "shutdown".into()).await;
                    return Ok(());
                }
                next = streams.next() => match next {
                    Some((source, acks, Ok(delivery))) => {
                        let settle = Settle {
                            pipeline: self.pipeline.clone(),
                            publisher: publisher.clone(),
                            acks,
                            shutdown: shutdown.clone(),
                        };
                        // Boxed: the task then holds a pointer, not the ~5 KB state machine
                        // that tokio would otherwise copy on spawn and again on completion.
                        tracker.spawn(Box::pin(async move { settle.handle(source, delivery).await }));
                    }
                    Some((_, _, Err(e))) => return Err(e.into()),
                    None => anyhow::bail!("the broker closed every consumer"),
                }
            }
        }
    }
}

/// The waits between connection attempts: 100 ms doubling up to 1 s (jittered), so a broker that
/// comes back is reached within about a second; reset each time a connection succeeds, so a
/// broker that drops the connection again is retried at once rather than after the waits that
/// piled up before.
struct Reconnect {
    backoff: backon::ExponentialBackoff,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            backoff: reconnect_backoff(),
        }
    }
}

impl Reconnect {
    /// A connection succeeded.
    fn connected(&mut self) {
        self.backoff = reconnect_backoff();
    }

    /// How long to wait before the next attempt.
    fn next_wait(&mut self) -> Duration {
        self.backoff.next().unwrap_or(RECONNECT_MAX)
    }
}

/// The longest wait between connection attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(1);

fn reconnect_backoff() -> backon::ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(RECONNECT_MAX)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Settles one delivery.
struct Settle {
    pipeline: Arc<Pipeline>,
    publisher: Publisher,
    /// The ack coalescer of the delivery's channel.
    acks: Acks,
    shutdown: CancellationToken,
}

impl Settle {
    /// The straight path of one delivery: the pipeline decides, `settle` records, then the
    /// message is acked (after publishing its retry, when it waits).
    async fn handle(&self, source: Source, delivery: Delivery) {
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned());
        let body = &delivery.data;
        let decision = match source {
            Source::Lane(lane) => {
                let Some(decision) = self
                    .until_db(|| self.pipeline.decide(lane, body, message_id.as_deref()))
                    .await
                else {
                    return; // shut down during a database outage: the broker redelivers it
                };
                decision
            }
            Source::BrokerDead => broker_dead(&delivery, message_id.as_deref()),
        };
        let Some(outcome) = self.until_db(|| self.pipeline.settle(&decision)).await else {
            return;
        };
        self.pipeline.stats().count(&outcome);
        let wait = match &outcome {
            Outcome::Retry { delay, .. }
            | Outcome::Paused { delay, .. }
            | Outcome::Held { delay } => Some(*delay),
            Outcome::Sent { .. }
            | Outcome::Duplicate
            | Outcome::Dead { .. }
            | Outcome::Cancelled => None,
        };
        if let Some(delay) = wait {
            let (job, lane) = match &decision {
                Decision::Attempted(a) => (&a.job, a.lane),
                Decision::Held { job, lane } => (job, *lane),
                _ => unreachable!("only claimed or held jobs wait"),
            };
            if let Err(e) = self
                .schedule_retry(job, lane, delay, decision.attempt())
                .await
            {
                tracing::warn!(job_id = %job.id, error = %e, "retry could not be published; returning the message to its queue");
                let _ = delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: true })
                    .await;
                self.acks.skip(delivery.delivery_tag);
                return;
            }
        }
        log_outcome(&decision, &outcome);
        self.acks.ack(delivery.delivery_tag);
    }

    /// Publishes the job (with its id fixed) to the retry tier that covers `delay`, trying a
    /// few times with backoff: a reject would count toward the delivery limit.
    async fn schedule_retry(
        &self,
        job: &Job,
        lane: Lane,
        delay: Duration,
        attempt: u32,
    ) -> anyhow::Result<()> {
        let body = job.to_json();
        let publish = || {
            self.publisher.publish_retry(
                &body,
                job.id.as_str(),
                lane,
                attempt + 1,
                delay,
                FieldTable::default(),
            )
        };
        publish
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_times(5)
                    .with_jitter(),
            )
            .await?;
        Ok(())
    }

    /// Runs `f` until Postgres answers, holding the message unacked meanwhile; `None` if the
    /// worker shuts down first.
    async fn until_db<T, F, Fut>(&self, mut f: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        loop {
            match f().await {
                Ok(v) => return Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, "Postgres unavailable; holding the message and retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(DB_RETRY) => {}
                    }
                }
            }
        }
    }
}

/// The decision for a message RabbitMQ dead-lettered: classified by its last death (see
/// `death.rs`), keyed by its id, body and how often it died, so a redelivery from the dead queue
/// is recorded once.
fn broker_dead(delivery: &Delivery, message_id: Option<&str>) -> Decision {
    let body = &delivery.data;
    let death = Death::from_headers(delivery.properties.headers().as_ref());
    let broker_reason = death
        .as_ref()
        .map(|d| d.reason.clone())
        .unwrap_or_else(|| "unknown".into());
    let reason = death
        .as_ref()
        .map(Death::dead_reason)
        .unwrap_or(DeadReason::Rejected);
    let failure = Failure::local(format!(
        "RabbitMQ dead-lettered the message ({broker_reason}): it failed a worker too many times"
    ));
    let job = Job::from_json_with_fallback_id(body, message_id).ok();
    let lane = death
        .as_ref()
        .and_then(Death::lane)
        .or_else(|| {
            job.as_ref().map(|j| {
                if j.campaign_id.is_some() {
                    Lane::Bulk
                } else {
                    Lane::Jobs
                }
            })
        })
        .unwrap_or(Lane::Jobs);
    let count = death.as_ref().map(|d| d.count).unwrap_or(1);
    let key = format!("{}:{count}", message_key("broker", body, message_id));
    let raw = String::from_utf8_lossy(&body[..body.len().min(4096)]).replace('\0', "\u{fffd}");
    Decision::BrokerDead(BrokerDead {
        job,
        lane,
        reason,
        failure,
        key,
        raw,
    })
}

fn log_outcome(decision: &Decision, outcome: &Outcome) {
    let job_id = decision.job_id();
    match outcome {
        Outcome::Sent { msgid } => {
            tracing::debug!(job_id, attempt = decision.attempt(), msgid, "sent")
        }
        Outcome::Duplicate => {
            tracing::debug!(job_id, "duplicate: already finished, not sent again")
        }
        Outcome::Held { delay } => tracing::debug!(
            job_id,
            retry_in_ms = delay.as_millis() as u64,
            "another delivery of this job id holds a live claim: waiting"
        ),
        Outcome::Cancelled => tracing::debug!(job_id, "campaign cancelled: not sent"),
        Outcome::Retry { delay, failure } | Outcome::Paused { delay, failure } => tracing::info!(
            job_id,
            attempt = decision.attempt(),
            retry_in_ms = delay.as_millis() as u64,
            errcode = failure.errcode,
            error = %failure.message,
            outcome = outcome.label(),
            "will retry"
        ),
        Outcome::Dead { reason, failure } => tracing::warn!(
            job_id,
            attempt = decision.attempt(),
            reason = reason.as_str(),
            errcode = failure.errcode,
            error = %failure.message,
            "dead-lettered"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_that_succeeded_resets_the_reconnect_backoff() {
        let mut r = Reconnect::default();
        // A long outage: the waits grow to their cap.
        for _ in 0..20 {
            assert!(
                r.next_wait() <= RECONNECT_MAX * 2,
                "never past about a second"
            );
        }
        // The broker answered; the session ended again later: the next try comes at once.
        r.connected();
        assert!(r.next_wait() <= Duration::from_millis(200));
    }
}
