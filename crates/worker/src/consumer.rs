//! The broker side of the worker: consume the lanes (and the broker's own dead letters), run
//! each delivery through the [`Pipeline`] in its own task, and settle it: ack after the outcome
//! is committed in Postgres, or publish the retry (with a confirm) and then ack.
//!
//! A lost connection is re-established with capped exponential backoff (backon): a new
//! connection, channels, prefetch and consumers. Tasks of the old connection finish their work;
//! their acks fail and the broker redelivers those messages, which the ledger recognises. On
//! shutdown the consumers are cancelled first, in-flight deliveries reach a recorded outcome,
//! then the connection closes (unstarted prefetched messages return to the queue).
//!
//! The session is here; [`handle`] settles one delivery, [`reconnect`] paces the reconnects.

mod handle;
mod reconnect;

use std::sync::Arc;

use futures::stream::{BoxStream, SelectAll, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::acks::Acks;
use super::link::BrokerLink;
use super::pipeline::Pipeline;
use handle::Settle;
use reconnect::Reconnect;
use wxnotify_core::queue::{
    Lane, Publisher, PublisherOptions, Topology, TopologyOptions, connect_node_of, first_node,
    node_lost,
};

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

/// Where a delivery came from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// A lane's queue.
    Lane(Lane),
    /// The broker's dead-letter queue.
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
            let mut node = None;
            let session = self
                .session(&tracker, &shutdown, &mut reconnect, &mut node)
                .await;
            self.link.set_consuming(false);
            match session {
                Ok(()) => reconnect.connected(),
                Err(e) => {
                    let wait = reconnect.next_wait();
                    if let Some(lost) = node {
                        // One line for the loss, naming the node and the next one tried.
                        node_lost(&self.amqp_url, &lost);
                        tracing::warn!(
                            lost = %lost,
                            next = first_node(&self.amqp_url).unwrap_or_default(),
                            error = %format!("{e:#}"),
                            retry_in_ms = wait.as_millis() as u64,
                            "RabbitMQ connection lost; reconnecting to the next node"
                        );
                    } else {
                        tracing::warn!(error = %format!("{e:#}"), retry_in_ms = wait.as_millis() as u64, "RabbitMQ session ended; reconnecting");
                    }
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

    /// One connection's life: connect, declare, subscribe, then dispatch deliveries until the
    /// connection fails (`Err`) or the worker shuts down (`Ok`).
    async fn session(
        &self,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
        reconnect: &mut Reconnect,
        node: &mut Option<String>,
    ) -> anyhow::Result<()> {
        let name = format!("wxnotify-worker {}", self.topology.prefix());
        let (connection, connected_to) = connect_node_of(&self.amqp_url, &name).await?;
        *node = Some(connected_to);
        let connection = Arc::new(connection);
        // The broker answers: the next loss starts the backoff from its shortest wait again.
        reconnect.connected();
        let publisher = self.declare(&connection).await?;
        let mut subscriptions = self.subscribe(&connection).await?;
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
                    subscriptions.drain(tracker).await;
                    let _ = connection.close(200, "shutdown".into()).await;
                    return Ok(());
                }
                next = subscriptions.streams.next() => match next {
                    Some((source, acks, Ok(delivery))) => {
                        self.dispatch(tracker, shutdown, &publisher, source, acks, delivery);
                    }
                    Some((_, _, Err(e))) => return Err(e.into()),
                    None => anyhow::bail!("the broker closed every consumer"),
                }
            }
        }
    }

    /// Declares the topology on a channel of its own and opens the publisher (retries).
    async fn declare(&self, connection: &Arc<Connection>) -> anyhow::Result<Publisher> {
        let setup = connection.create_channel().await?;
        self.topology
            .declare(&setup, &self.options.topology)
            .await?;
        setup.close(200, "topology declared".into()).await?;
        Ok(Publisher::new(
            connection.clone(),
            self.topology.clone(),
            PublisherOptions::default(),
        )
        .await?)
    }

    /// The queues this worker consumes: its lanes, and the broker's dead letters when asked.
    fn sources(&self) -> Vec<(Source, String)> {
        let mut sources: Vec<(Source, String)> = self
            .options
            .lanes
            .iter()
            .map(|l| (Source::Lane(*l), self.topology.lane_queue(*l)))
            .collect();
        if self.options.consume_dead {
            sources.push((Source::BrokerDead, self.topology.dead_queue()));
        }
        sources
    }

    /// One channel per source, with its prefetch, consumer and ack coalescer.
    async fn subscribe(&self, connection: &Connection) -> anyhow::Result<Subscriptions> {
        let mut subscriptions = Subscriptions {
            streams: SelectAll::new(),
            consumers: Vec::new(),
            coalescers: Vec::new(),
        };
        for (source, queue) in self.sources() {
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
            subscriptions
                .streams
                .push(consumer.map(move |d| (source, acks.clone(), d)).boxed());
            subscriptions.consumers.push((channel, tag));
            subscriptions.coalescers.push(coalescer);
        }
        Ok(subscriptions)
    }

    /// Settles `delivery` in a task of its own.
    fn dispatch(
        &self,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
        publisher: &Publisher,
        source: Source,
        acks: Acks,
        delivery: Delivery,
    ) {
        let settle = Settle {
            pipeline: self.pipeline.clone(),
            publisher: publisher.clone(),
            acks,
            shutdown: shutdown.clone(),
        };
        // Boxed: the task then holds a pointer, not the ~5 KB state machine that tokio would
        // otherwise copy on spawn and again on completion.
        tracker.spawn(Box::pin(
            async move { settle.handle(source, delivery).await },
        ));
    }
}

/// A delivery as it comes off one of the session's consumers, with its channel's acks.
type Incoming = (Source, Acks, Result<Delivery, lapin::Error>);

/// A session's consumers: their merged deliveries, their channels and tags (to cancel them) and
/// their ack coalescers (to let the last acks go out).
struct Subscriptions {
    streams: SelectAll<BoxStream<'static, Incoming>>,
    consumers: Vec<(Channel, String)>,
    coalescers: Vec<JoinHandle<()>>,
}

impl Subscriptions {
    /// Shutdown: cancel the consumers, wait for the deliveries in flight to reach a recorded
    /// outcome, then let their acks go out.
    async fn drain(self, tracker: &TaskTracker) {
        for (channel, tag) in &self.consumers {
            let _ = channel
                .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                .await;
        }
        tracing::info!("consumers cancelled; waiting for in-flight deliveries");
        tracker.close();
        tracker.wait().await;
        // Every settled delivery has been reported; let the last acks go out.
        drop(self.streams);
        for coalescer in self.coalescers {
            let _ = coalescer.await;
        }
        // Closed here, before the connection: a channel whose last handle is dropped while the
        // connection is closing makes lapin log a spurious "Connection error" at ERROR level.
        for (channel, _) in &self.consumers {
            let _ = channel.close(200, "shutdown".into()).await;
        }
    }
}
