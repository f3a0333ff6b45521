//! What the producer API's handlers share: Postgres, the configured apps, and a link to
//! RabbitMQ that (re)connects on demand, over every node of `AMQP_URL`: jobs whose confirms a
//! lost node took with it are published again on the next node before the request is
//! answered. `serve` starts even when RabbitMQ is away (logins and the OA callback do not need
//! it); producer requests then answer 503 with `Retry-After`, and the first request after the
//! broker is back reconnects (at most one attempt per [`ProducerOptions::reconnect_every`], so a
//! down broker costs requests nothing but a check).
//!
//! The jobs of concurrent requests are published together (see [`BrokerLink`]), and each app's
//! template catalog is read at most once per [`CATALOG_TTL`]: at hundreds of single POSTs a
//! second, a channel held per request until its confirm and two catalog reads per request were
//! what the API spent its time on.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use sqlx::PgPool;

use wxnotify_core::batch::{BatchError, Batcher, DbError, split};
use wxnotify_core::config::AppConfig;
use wxnotify_core::domain::{AppName, Job};
use wxnotify_core::queue::{
    FailoverOptions, FailoverPublisher, Lane, PublishError, PublisherOptions, Topology,
};
use wxnotify_services::templates::Catalog;

use crate::producer::notification_store::{self as store, Claim, ClaimRequest};

/// How long a template catalog read for the API's checks is reused. The worker checks every job
/// against its own fresh catalog again before sending, so a template synced moments ago costs
/// at most a job the API could have refused up front.
pub const CATALOG_TTL: Duration = Duration::from_secs(5);

/// Most requests whose jobs go out in one publish (one channel, one wait for the confirms), or
/// whose ids are claimed or marked accepted in one statement.
const REQUESTS_PER_BATCH: usize = 64;
/// Jobs per channel when one publish is spread over several channels…
const PUBLISH_PART: usize = 250;
/// …on at most this many.
const PUBLISH_PARTS_AT_MOST: usize = 4;
/// Claim (or acceptance) statements of the API running at once.
const STATEMENTS_IN_FLIGHT: usize = 4;

/// Default of [`ProducerOptions::key_requests_per_second`].
pub const DEFAULT_KEY_REQUESTS_PER_SECOND: u32 = 1000;

/// How the producer API talks to RabbitMQ.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// Channels in the publisher's pool: publishes (or batches) waiting for confirms at once.
    pub channels: usize,
    /// How long a request may wait for a (re)connection before it is answered 503.
    pub connect_timeout: Duration,
    /// At most one connection attempt per this interval while the broker is away.
    pub reconnect_every: Duration,
    /// How long to wait for RabbitMQ's confirms of one request's jobs before answering 503.
    pub confirm_timeout: Duration,
    /// The lane jobs from the API go to.
    pub lane: Lane,
    /// Requests per second one API key may make (a burst of one second's worth); `None`: no
    /// limit. Past it a request is answered 429 with `Retry-After`.
    pub key_requests_per_second: Option<NonZeroU32>,
    /// Unknown or revoked API keys allowed per client address (default
    /// [`crate::failures::API_KEY_FAILURES_PER_MINUTE`] a minute); past them 429.
    pub key_failure_limits: Option<crate::failures::FailureLimits>,
    /// The header a trusted reverse proxy names the client in (`--client-ip-header`).
    pub client_ip_header: Option<axum::http::HeaderName>,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        ProducerOptions {
            channels: 16,
            connect_timeout: Duration::from_secs(3),
            reconnect_every: Duration::from_secs(1),
            confirm_timeout: Duration::from_secs(10),
            lane: Lane::Jobs,
            key_requests_per_second: NonZeroU32::new(DEFAULT_KEY_REQUESTS_PER_SECOND),
            key_failure_limits: None,
            client_ip_header: None,
        }
    }
}

/// Why no job can be published right now.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerUnavailable {
    /// No node of `AMQP_URL` answered (now, or moments ago: then it is not tried again before
    /// [`ProducerOptions::reconnect_every`]); the cause is logged where it happened.
    #[error("cannot connect to RabbitMQ")]
    Connect,
    /// The publishing task is gone: the server is stopping.
    #[error("the server is stopping")]
    Stopping,
}

impl BatchError for BrokerUnavailable {
    fn stopped() -> Self {
        BrokerUnavailable::Stopping
    }
}

/// The outcome of each job of one request, in order.
type JobResults = Vec<Result<(), PublishError>>;

/// A confirming publisher over the nodes of `AMQP_URL`, moving to the next node when its
/// connection is lost.
///
/// Requests do not each hold a channel until their confirms are in: a batching task takes the
/// jobs of every request waiting (up to [`REQUESTS_PER_BATCH`] requests) and publishes them as
/// one batch, with up to [`ProducerOptions::channels`] batches waiting for confirms at once.
/// While those wait, the next batch fills up, so a confirm round trip is shared by all the
/// requests that arrived during the previous one.
pub struct BrokerLink {
    publisher: FailoverPublisher,
    batches: Batcher<Vec<Job>, JobResults, BrokerUnavailable>,
}

/// The publisher over the nodes of `AMQP_URL` (a lost node's unconfirmed jobs go out again on
/// the next).
struct Link {
    publisher: FailoverPublisher,
    options: ProducerOptions,
}

impl BrokerLink {
    /// A link to the broker at `url`, publishing to `topology`; nothing is connected yet. Must
    /// be called inside a tokio runtime (it spawns the batching task).
    pub fn new(url: SecretString, topology: Topology, options: ProducerOptions) -> Self {
        let in_flight = options.channels;
        let publisher = FailoverPublisher::new(
            url,
            "wxnotify serve (producer API)",
            topology,
            FailoverOptions {
                publisher: PublisherOptions {
                    channels: options.channels,
                    confirm_timeout: options.confirm_timeout,
                },
                patience: options.connect_timeout,
                retry_after_failure: options.reconnect_every,
            },
        );
        let link = Arc::new(Link {
            publisher: publisher.clone(),
            options,
        });
        let batches = Batcher::spawn(
            "api_publish",
            REQUESTS_PER_BATCH,
            in_flight,
            Duration::ZERO,
            {
                let link = link.clone();
                move |requests: Vec<Vec<Job>>| {
                    let link = link.clone();
                    async move { link.publish_together(requests).await }
                }
            },
        );
        BrokerLink { publisher, batches }
    }

    /// The RabbitMQ node the API publishes to now (no password in it), if connected.
    pub fn node(&self) -> Option<String> {
        self.publisher.node()
    }

    /// Publishes `jobs` to the API's lane with confirms (together with other requests' jobs):
    /// one result per job, in order; every job fails alike when the broker cannot be reached.
    pub async fn publish(&self, jobs: Vec<Job>) -> Result<JobResults, BrokerUnavailable> {
        self.batches.call(jobs).await
    }
}

impl Link {
    /// Publishes the jobs of several requests as one batch; each request's results, in order.
    async fn publish_together(
        &self,
        requests: Vec<Vec<Job>>,
    ) -> Result<Vec<JobResults>, BrokerUnavailable> {
        let publisher = &self.publisher;
        if let Err(e) = publisher.ready().await {
            tracing::warn!(error = %e, "producer API: no RabbitMQ node answers");
            return Err(BrokerUnavailable::Connect);
        }
        let sizes: Vec<usize> = requests.iter().map(Vec::len).collect();
        let jobs: Vec<Job> = requests.into_iter().flatten().collect();
        // A large batch goes out on several channels at once: RabbitMQ takes each channel's
        // messages in its own process, and one channel's confirms were most of a 1,000-job
        // request's time. The results come back in the jobs' order.
        let parts = jobs
            .len()
            .div_ceil(PUBLISH_PART)
            .clamp(1, PUBLISH_PARTS_AT_MOST);
        let part = jobs.len().div_ceil(parts).max(1);
        let lane = self.options.lane;
        let results = futures::future::join_all(
            jobs.chunks(part)
                .map(|chunk| publisher.publish_batch(chunk, lane)),
        )
        .await;
        Ok(split(&sizes, results.into_iter().flatten()))
    }
}

/// A batcher of one statement for the items of up to [`REQUESTS_PER_BATCH`] requests: `exec`
/// gets every waiting request's items in one `Vec` and answers one result per item, in order;
/// each request gets back its own items' results.
fn statement_batcher<T, R, F, Fut>(
    name: &'static str,
    pool: &PgPool,
    exec: F,
) -> Batcher<Vec<T>, Vec<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(PgPool, Vec<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<R>, sqlx::Error>> + Send + 'static,
{
    let pool = pool.clone();
    Batcher::spawn(
        name,
        REQUESTS_PER_BATCH,
        STATEMENTS_IN_FLIGHT,
        Duration::ZERO,
        move |requests: Vec<Vec<T>>| {
            let sizes: Vec<usize> = requests.iter().map(Vec::len).collect();
            let items = exec(pool.clone(), requests.into_iter().flatten().collect());
            async move { Ok::<_, sqlx::Error>(split(&sizes, items.await?)) }
        },
    )
}

struct Inner {
    pool: PgPool,
    broker: BrokerLink,
    apps: HashSet<AppName>,
    key_limiter: Option<governor::DefaultKeyedRateLimiter<uuid::Uuid>>,
    /// Unknown or revoked keys per client address, shared by all `serve` processes.
    key_failures: crate::failures::FailureLimiter,
    /// Synced template catalogs, one per app, kept for [`CATALOG_TTL`].
    catalogs: moka::future::Cache<AppName, Arc<Catalog>>,
    /// The id claims of concurrent requests, one statement per batch.
    claims: Batcher<Vec<ClaimRequest>, Vec<Claim>>,
    /// Their acceptances once RabbitMQ confirmed, likewise.
    accepts: Batcher<Vec<store::JobKey>, Vec<()>>,
}

/// The state of the producer API's handlers. Cheap to clone.
#[derive(Clone)]
pub struct ProducerApi {
    inner: Arc<Inner>,
}

impl ProducerApi {
    /// The API for `apps`, publishing to `topology` on the broker at `amqp_url`.
    pub fn new(
        pool: PgPool,
        amqp_url: SecretString,
        topology: Topology,
        apps: &[AppConfig],
        options: ProducerOptions,
    ) -> Self {
        let key_limiter = options.key_requests_per_second.map(|rate| {
            governor::RateLimiter::keyed(governor::Quota::per_second(rate).allow_burst(rate))
        });
        let claims = statement_batcher(
            "api_claims",
            &pool,
            |pool, jobs: Vec<ClaimRequest>| async move { store::claim(&pool, &jobs).await },
        );
        let accepts = statement_batcher(
            "api_accepts",
            &pool,
            |pool, jobs: Vec<store::JobKey>| async move {
                store::mark_accepted(&pool, &jobs).await?;
                Ok(vec![(); jobs.len()])
            },
        );
        ProducerApi {
            inner: Arc::new(Inner {
                claims,
                accepts,
                pool,
                key_limiter,
                key_failures: crate::failures::FailureLimiter::new(
                    crate::failures::Scope::ApiKey,
                    options.key_failure_limits.unwrap_or_else(|| {
                        crate::failures::FailureLimits::default_for(crate::failures::Scope::ApiKey)
                    }),
                    options.client_ip_header.clone(),
                ),
                broker: BrokerLink::new(amqp_url, topology, options),
                apps: apps.iter().map(|a| a.name.clone()).collect(),
                catalogs: moka::future::Cache::builder()
                    .max_capacity(apps.len() as u64 + 1)
                    .time_to_live(CATALOG_TTL)
                    .build(),
            }),
        }
    }

    /// The Postgres pool.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The limit on unknown or revoked API keys per client address.
    pub fn key_failures(&self) -> &crate::failures::FailureLimiter {
        &self.inner.key_failures
    }

    /// The link to RabbitMQ.
    pub fn broker(&self) -> &BrokerLink {
        &self.inner.broker
    }

    /// The configured apps.
    pub fn apps(&self) -> &HashSet<AppName> {
        &self.inner.apps
    }

    /// `app`'s template catalog for the checks of a request: read from Postgres at most once
    /// per [`CATALOG_TTL`] once the app's catalog was synced (before that, read every time, so
    /// the first sync shows at once).
    pub async fn catalog(&self, app: &AppName) -> Result<Arc<Catalog>, sqlx::Error> {
        if let Some(catalog) = self.inner.catalogs.get(app).await {
            return Ok(catalog);
        }
        let catalog = Arc::new(Catalog::load_app(&self.inner.pool, app).await?);
        if catalog.app(app).is_some() {
            self.inner
                .catalogs
                .insert(app.clone(), catalog.clone())
                .await;
        }
        Ok(catalog)
    }

    /// Claims the job ids of one request (batched with other requests' claims): one claim per
    /// job, in order (see [`store::claim`]).
    pub async fn claim(&self, jobs: Vec<ClaimRequest>) -> Result<Vec<Claim>, DbError> {
        self.inner.claims.call(jobs).await
    }

    /// Marks the jobs (app, job id) of one request accepted (batched likewise).
    pub async fn mark_accepted(&self, jobs: Vec<store::JobKey>) -> Result<(), DbError> {
        if jobs.is_empty() {
            return Ok(());
        }
        self.inner.accepts.call(jobs).await.map(drop)
    }

    /// Takes one request from API key `key_id`'s bucket; `Err(wait)` when it is empty.
    pub fn check_key_rate(&self, key_id: uuid::Uuid) -> Result<(), Duration> {
        use governor::clock::{Clock, DefaultClock};
        match &self.inner.key_limiter {
            None => Ok(()),
            Some(l) => l
                .check_key(&key_id)
                .map_err(|n| n.wait_time_from(DefaultClock::default().now())),
        }
    }

    /// Forgets keys whose bucket is full again (run periodically to bound the map).
    pub fn forget_idle_keys(&self) {
        if let Some(l) = &self.inner.key_limiter {
            l.retain_recent();
        }
    }
}
