//! Publishing that survives the loss of a RabbitMQ node.
//!
//! A [`FailoverPublisher`] holds `AMQP_URL` (one node, or several of a cluster) rather than one
//! connection. When the connection it publishes on is lost, the jobs whose confirms had not
//! come are published again on a new connection, to the next node that answers. That is safe
//! because the job id goes with every copy: the ledger records a job once, and a worker
//! acknowledges a second delivery of a finished job without sending it. The publisher gives up
//! on a job only when no node answered for [`FailoverOptions::patience`].
//!
//! A nack is tried again too, after a pause, within the same patience: right after a node loss
//! a quorum queue refuses publishes until it has a new leader, and a queue at its length limit
//! refuses them until the workers have taken some. Only a nack that lasts the whole patience is
//! the job's answer.
//!
//! A node loss is logged once, as one WARN naming the lost node and the node publishing goes
//! on with, however many publishes were in flight on the lost connection.

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::Connection;
use secrecy::SecretString;
use tokio::time::Instant;

use super::connection::{connect_node_of, node_lost};
use super::publisher::{PublishError, Publisher, PublisherOptions};
use super::topology::{Lane, Topology};
use crate::domain::Job;

/// What publishes a batch of jobs with confirms: a [`Publisher`] on one connection, or a
/// [`FailoverPublisher`] over the nodes of `AMQP_URL`.
pub trait PublishJobs: Sync {
    /// Publishes every job to `lane` and waits for their confirms: one result per job, in
    /// order.
    fn publish_batch(
        &self,
        jobs: &[Job],
        lane: Lane,
    ) -> impl Future<Output = Vec<Result<(), PublishError>>> + Send;
}

impl PublishJobs for Publisher {
    fn publish_batch(
        &self,
        jobs: &[Job],
        lane: Lane,
    ) -> impl Future<Output = Vec<Result<(), PublishError>>> + Send {
        Publisher::publish_batch(self, jobs, lane)
    }
}

/// How a [`FailoverPublisher`] behaves.
#[derive(Debug, Clone)]
pub struct FailoverOptions {
    /// The publisher on each connection.
    pub publisher: PublisherOptions,
    /// How long a publish keeps trying to reach a node before its jobs fail with
    /// [`PublishError::NoBroker`].
    pub patience: Duration,
    /// After a time of patience that reached no node, how long publishes fail at once instead
    /// of trying again (a server answering requests: a broker that is away then costs a
    /// request a check, not a wait). Zero: every publish tries.
    pub retry_after_failure: Duration,
}

impl Default for FailoverOptions {
    fn default() -> Self {
        FailoverOptions {
            publisher: PublisherOptions::default(),
            patience: Duration::from_secs(60),
            retry_after_failure: Duration::ZERO,
        }
    }
}

/// Publishes jobs with confirms over the nodes of `AMQP_URL`, moving to the next node when the
/// connection is lost (see the module docs). Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct FailoverPublisher {
    inner: Arc<Inner>,
}

struct Inner {
    url: SecretString,
    name: String,
    topology: Topology,
    options: FailoverOptions,
    current: Mutex<Option<Live>>,
    /// Held while connecting, so that the publishes that saw one loss make one new connection.
    connecting: tokio::sync::Mutex<Connecting>,
}

/// What the connecting publishes share.
#[derive(Default)]
struct Connecting {
    /// Connections made so far.
    generation: u64,
    /// When a time of patience last ended without a node, and why.
    failed: Option<(Instant, String)>,
}

/// The connection publishing goes on now.
#[derive(Clone)]
struct Live {
    connection: Arc<Connection>,
    publisher: Publisher,
    /// The node, as it may be shown (no password).
    node: String,
    /// Counts the connections made, so a publish that saw this one fail replaces only it.
    generation: u64,
}

impl std::fmt::Debug for FailoverPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverPublisher")
            .field("name", &self.inner.name)
            .field("prefix", &self.inner.topology.prefix())
            .finish()
    }
}

impl FailoverPublisher {
    /// A publisher for `topology` over the nodes of `url`, naming its connections
    /// `connection_name`. It connects on first use (or at [`FailoverPublisher::ready`]).
    pub fn new(
        url: SecretString,
        connection_name: &str,
        topology: Topology,
        options: FailoverOptions,
    ) -> Self {
        FailoverPublisher {
            inner: Arc::new(Inner {
                url,
                name: connection_name.to_owned(),
                topology,
                options,
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(Connecting::default()),
            }),
        }
    }

    /// The topology this publisher publishes to.
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// The node publishing goes on now (no password in it); `None` before the first connection.
    pub fn node(&self) -> Option<String> {
        let current = self.inner.current.lock().expect("not poisoned");
        current.as_ref().map(|live| live.node.clone())
    }

    /// Connects now unless connected, waiting at most the patience for a node: the connection
    /// publishing goes on (e.g. to check the topology on it first).
    pub async fn ready(&self) -> Result<Arc<Connection>, PublishError> {
        let deadline = Instant::now() + self.inner.options.patience;
        Ok(self.live(None, deadline).await?.connection)
    }

    /// Connects now unless connected, trying each node of `AMQP_URL` once: a command that
    /// starts while no node answers says so at once (the patience is for losses mid-run).
    pub async fn connect_now(&self) -> Result<Arc<Connection>, PublishError> {
        Ok(self.live(None, Instant::now()).await?.connection)
    }

    /// Publishes one job to `lane` and waits for its confirm, on the next node if the
    /// connection is lost meanwhile.
    pub async fn publish(&self, job: &Job, lane: Lane) -> Result<(), PublishError> {
        let mut results = self.publish_batch(std::slice::from_ref(job), lane).await;
        results.pop().expect("one result per job")
    }

    /// Publishes every job to `lane` and waits for their confirms: one result per job, in
    /// order. A job whose confirm was lost with its connection is published again on the next
    /// node; only a broker's own answer (unroutable, nack) or no node for the whole patience
    /// fails it.
    pub async fn publish_batch(&self, jobs: &[Job], lane: Lane) -> Vec<Result<(), PublishError>> {
        let deadline = Instant::now() + self.inner.options.patience;
        let mut results: Vec<Option<Result<(), PublishError>>> = vec![None; jobs.len()];
        let mut pending: Vec<usize> = (0..jobs.len()).collect();
        let mut failed: Option<u64> = None;
        let mut pause = Duration::from_millis(100);
        while !pending.is_empty() {
            let live = match self.live(failed, deadline).await {
                Ok(live) => live,
                Err(e) => {
                    for i in pending.drain(..) {
                        results[i] = Some(Err(e.clone()));
                    }
                    break;
                }
            };
            let batch: Cow<'_, [Job]> = if pending.len() == jobs.len() {
                Cow::Borrowed(jobs)
            } else {
                Cow::Owned(pending.iter().map(|&i| jobs[i].clone()).collect())
            };
            let answers = live.publisher.publish_batch(&batch, lane).await;
            let (mut lost, mut nacked) = (Vec::new(), Vec::new());
            for (&i, answer) in pending.iter().zip(answers) {
                match answer {
                    // The channel or connection failed: the job may or may not be enqueued.
                    Err(e @ PublishError::Broker(_)) => lost.push((i, e)),
                    Err(PublishError::Nacked) => nacked.push(i),
                    answer => results[i] = Some(answer),
                }
            }
            if !lost.is_empty() {
                // A broker that takes connections but fails every publish (a channel error
                // each time) gets the patience too, not an endless round of reconnections:
                // the first loss reconnects at once, the next ones after a growing pause.
                if Instant::now() >= deadline {
                    for (i, e) in lost.drain(..) {
                        results[i] = Some(Err(e));
                    }
                } else if failed.is_some() && nacked.is_empty() {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                failed = Some(live.generation);
            }
            if !nacked.is_empty() {
                if Instant::now() + pause >= deadline {
                    for i in nacked.drain(..) {
                        results[i] = Some(Err(PublishError::Nacked));
                    }
                } else {
                    tracing::debug!(
                        nacked = nacked.len(),
                        "the broker refused jobs for now; publishing them again"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
            pending = lost.into_iter().map(|(i, _)| i).collect();
            pending.extend(nacked);
            pending.sort_unstable();
        }
        results
            .into_iter()
            .map(|r| r.expect("every job has its result"))
            .collect()
    }

    /// The live connection's publisher; a new connection (to the next node) when there is
    /// none, or when the publish that asks saw connection `failed` fail.
    async fn live(&self, failed: Option<u64>, deadline: Instant) -> Result<Live, PublishError> {
        if let Some(live) = self.usable(failed) {
            return Ok(live);
        }
        let mut connecting = self.inner.connecting.lock().await;
        if let Some(live) = self.usable(failed) {
            return Ok(live);
        }
        if let Some((at, last)) = &connecting.failed
            && at.elapsed() < self.inner.options.retry_after_failure
        {
            return Err(PublishError::NoBroker {
                patience: self.inner.options.patience,
                last: last.clone(),
            });
        }
        let lost = self.inner.current.lock().expect("not poisoned").take();
        if let Some(lost) = &lost {
            node_lost(&self.inner.url, &lost.node);
            let connection = lost.connection.clone();
            tokio::spawn(async move {
                let _ = connection.close(200, "replaced".into()).await;
            });
        }
        let mut delay = Duration::from_millis(100);
        loop {
            match self.connect().await {
                Ok((connection, publisher, node)) => {
                    connecting.generation += 1;
                    connecting.failed = None;
                    let live = Live {
                        connection,
                        publisher,
                        node,
                        generation: connecting.generation,
                    };
                    if let Some(lost) = &lost {
                        tracing::warn!(
                            lost = %lost.node,
                            next = %live.node,
                            connection = %self.inner.name,
                            "RabbitMQ connection lost; publishing again what was unconfirmed, on the next node"
                        );
                    }
                    *self.inner.current.lock().expect("not poisoned") = Some(live.clone());
                    return Ok(live);
                }
                Err(last) => {
                    if Instant::now() + delay >= deadline {
                        connecting.failed = Some((Instant::now(), last.clone()));
                        return Err(PublishError::NoBroker {
                            patience: self.inner.options.patience,
                            last,
                        });
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// The current connection, unless it is the one that failed or it is not connected.
    fn usable(&self, failed: Option<u64>) -> Option<Live> {
        let current = self.inner.current.lock().expect("not poisoned");
        let live = current.as_ref()?;
        (Some(live.generation) != failed && live.connection.status().connected())
            .then(|| live.clone())
    }

    /// One connection to the first node that answers, with its publisher; the error as text
    /// (it names no password).
    async fn connect(&self) -> Result<(Arc<Connection>, Publisher, String), String> {
        let (connection, node) = connect_node_of(&self.inner.url, &self.inner.name)
            .await
            .map_err(|e| e.to_string())?;
        let connection = Arc::new(connection);
        let publisher = Publisher::new(
            connection.clone(),
            self.inner.topology.clone(),
            self.inner.options.publisher.clone(),
        )
        .await
        .map_err(|e| format!("{node}: {e}"))?;
        Ok((connection, publisher, node))
    }

    /// Closes the connection (at the end of a command).
    pub async fn close(&self) {
        let live = self.inner.current.lock().expect("not poisoned").take();
        if let Some(live) = live {
            let _ = live.connection.close(200, "done".into()).await;
        }
    }
}

impl PublishJobs for FailoverPublisher {
    fn publish_batch(
        &self,
        jobs: &[Job],
        lane: Lane,
    ) -> impl Future<Output = Vec<Result<(), PublishError>>> + Send {
        FailoverPublisher::publish_batch(self, jobs, lane)
    }
}
