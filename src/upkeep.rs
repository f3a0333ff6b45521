//! What the worker knows of WeChat's rules of the day, and keeps up to date: each app's template
//! catalog (checked before every send), its real daily quota, and the verdicts of WeChat's
//! content review on held messages (`crate::reviews`).
//!
//! The pipeline calls [`Rules::before_send`] once per delivery, just before the send (a refused
//! job dies `payload_rejected` with the reason, without a WeChat call; an asked-for truncation
//! is recorded on the ledger first), and [`Rules::observe`] with every failure WeChat answered
//! (40037 queues a catalog refresh, 45009 a quota read). [`Rules::run`] is the worker's
//! background task: at start and every [`UpkeepOptions::every`] it syncs every app's templates,
//! reads its quota (exported as metrics) and follows held messages to their review verdict; in
//! between it serves the refreshes `observe` queued.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::delivery::outcome::Failure;
use crate::domain::{AppName, Job};
use crate::templates::{AppCatalog, Catalog, Checked, Refusal, SyncTrigger, check_job};
use crate::wechat::errcode::{DAILY_QUOTA, UNKNOWN_TEMPLATE};
use crate::wechat::{TokenError, TokenStore, WechatClient};

/// Why an upkeep call (template sync, quota read, reconciliation) failed.
#[derive(Debug, thiserror::Error)]
pub enum UpkeepError {
    /// WeChat refused, could not be reached, or no token could be had.
    #[error(transparent)]
    Wechat(#[from] TokenError),
    /// Postgres failed.
    #[error("Postgres: {0}")]
    Db(#[from] sqlx::Error),
}

/// Why a job is not sent after all.
#[derive(Debug, thiserror::Error)]
pub enum Stop {
    /// The job breaks its template's rules: dead `payload_rejected` with this reason.
    #[error("{0}")]
    Refused(Refusal),
    /// The truncation could not be recorded: retry later rather than send it unrecorded.
    #[error("the truncation could not be recorded on the ledger: {0}")]
    Unrecorded(sqlx::Error),
}

/// How often the background task runs its round.
#[derive(Debug, Clone)]
pub struct UpkeepOptions {
    /// Between two rounds (template sync, quota read, blocked-message reconciliation).
    pub every: Duration,
    /// The least time between two catalog refreshes of one app caused by unknown templates
    /// (40037, or a job naming a template the catalog lacks).
    pub min_resync: Duration,
    /// How held messages are followed to WeChat's review verdict.
    pub review: crate::reviews::ReviewOptions,
}

impl Default for UpkeepOptions {
    fn default() -> Self {
        UpkeepOptions {
            every: Duration::from_secs(300),
            min_resync: Duration::from_secs(30),
            review: crate::reviews::ReviewOptions::default(),
        }
    }
}

/// A refresh `observe` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Need {
    Templates,
    Quota,
}

/// The worker's view of WeChat's rules (see the module doc). Shared by every delivery task.
pub struct Rules {
    pool: PgPool,
    tokens: TokenStore,
    client: WechatClient,
    apps: Vec<AppName>,
    options: UpkeepOptions,
    /// The catalog the checks read; replaced per app after each sync (held only to read or
    /// swap, never across an await).
    catalog: RwLock<Catalog>,
    /// When each app's catalog was last synced by this process.
    synced: Mutex<HashMap<AppName, Instant>>,
    /// Refreshes queued by `observe`, served by `run` (at most two per app: bounded).
    pending: Mutex<HashSet<(AppName, Need)>>,
    /// Wakes `run` when something was queued.
    wake: tokio::sync::Notify,
}

impl Rules {
    /// Rules for `apps`, empty until [`Rules::load`] or the first round.
    pub fn new(
        pool: PgPool,
        tokens: TokenStore,
        client: WechatClient,
        apps: Vec<AppName>,
        options: UpkeepOptions,
    ) -> Rules {
        Rules {
            pool,
            tokens,
            client,
            apps,
            options,
            catalog: RwLock::new(Catalog::default()),
            synced: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashSet::new()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Loads the stored catalog (no WeChat call).
    pub async fn load(&self) -> Result<(), sqlx::Error> {
        let catalog = Catalog::load(&self.pool).await?;
        *self.catalog.write() = catalog;
        Ok(())
    }

    /// What the worker does before it consumes: loads the stored catalog, then syncs every
    /// app's templates from WeChat, for at most `within` (a WeChat that cannot be reached
    /// leaves the stored catalog in use; the background round tries again). So the first job
    /// is checked against today's templates.
    pub async fn prepare(&self, within: Duration) {
        if let Err(e) = self.load().await {
            tracing::warn!(error = %e, "loading the template catalog failed");
        }
        let sync_all = async {
            for app in &self.apps {
                if let Err(e) = self.sync(app, SyncTrigger::Schedule).await {
                    tracing::warn!(app = %app, error = %e, "template catalog sync failed");
                }
            }
        };
        if tokio::time::timeout(within, sync_all).await.is_err() {
            tracing::warn!("template catalog sync at start timed out; using the stored catalog");
        }
    }

    /// Checks `job` against the catalog in memory.
    pub fn check(&self, job: &Job) -> Result<Checked, Refusal> {
        check_job(&self.catalog.read(), job)
    }

    /// The worker's check, just before the send. `Ok(None)`: send the job as it is;
    /// `Ok(Some(job))`: send this truncated copy (the truncation is already recorded on the
    /// ledger). A template the catalog lacks is looked up once more on WeChat first (at most
    /// once per `min_resync` per app), in case it was added since the last sync.
    pub async fn before_send(&self, job: &Job) -> Result<Option<Job>, Stop> {
        let mut checked = self.check(job);
        if let Err(refusal) = &checked
            && refusal.names_unknown_template()
            && self.claim_resync(&job.app)
        {
            if let Err(e) = self.sync(&job.app, SyncTrigger::UnknownTemplate).await {
                tracing::warn!(app = %job.app, error = %e, "template catalog refresh failed");
            }
            checked = self.check(job);
        }
        let checked = checked.map_err(Stop::Refused)?;
        for warning in &checked.warnings {
            tracing::debug!(job_id = %job.id, %warning, "template check warning");
        }
        let (Some(record), Some(data)) = (checked.truncations_json(), checked.data) else {
            return Ok(None);
        };
        sqlx::query("UPDATE deliveries SET truncated = $2, updated_at = now() WHERE job_id = $1")
            .bind(job.id.as_str())
            .bind(record)
            .execute(&self.pool)
            .await
            .map_err(Stop::Unrecorded)?;
        Ok(Some(Job {
            data,
            ..job.clone()
        }))
    }

    /// Called with the failure of every send WeChat answered: 40037 queues a catalog refresh
    /// (and says so in the failure, the dead letter's text), 45009 a quota read.
    pub fn observe(&self, app: &AppName, failure: &mut Failure) {
        let need = match failure.errcode {
            Some(UNKNOWN_TEMPLATE) => {
                failure.message.push_str(
                    " — WeChat does not know this template (deleted, or its category removed); \
                     the template catalog is being refreshed",
                );
                Need::Templates
            }
            Some(DAILY_QUOTA) => Need::Quota,
            _ => return,
        };
        self.pending.lock().insert((app.clone(), need));
        self.wake.notify_one();
    }

    /// The background task: a round at start and every `every`, queued refreshes in between,
    /// until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            self.round().await;
            let next = tokio::time::Instant::now() + self.options.every;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep_until(next) => break,
                    _ = self.wake.notified() => self.serve_pending().await,
                }
            }
        }
    }

    /// One round over every app: templates, quota (and its metrics), held messages' review
    /// verdicts. Errors are logged; the next round tries again.
    pub async fn round(&self) {
        for app in &self.apps {
            // Skipped when `prepare` (or a 40037) synced it moments ago.
            let fresh = self
                .synced
                .lock()
                .get(app)
                .is_some_and(|at| at.elapsed() < self.options.every / 2);
            if !fresh && let Err(e) = self.sync(app, SyncTrigger::Schedule).await {
                tracing::warn!(app = %app, error = %e, "template catalog sync failed");
            }
            self.read_quota(app, crate::quota::ReadTrigger::Schedule)
                .await;
            if let Err(e) = crate::reviews::reconcile_app(
                &self.pool,
                &self.tokens,
                &self.client,
                app,
                self.options.review,
            )
            .await
            {
                tracing::warn!(app = %app, error = %e,
                    "following held messages to WeChat's review verdict failed; they stay held");
            }
        }
    }

    async fn serve_pending(&self) {
        let pending: Vec<(AppName, Need)> = self.pending.lock().drain().collect();
        for (app, need) in pending {
            match need {
                Need::Templates => {
                    if let Err(e) = self.sync(&app, SyncTrigger::UnknownTemplate).await {
                        tracing::warn!(app = %app, error = %e, "template catalog refresh failed");
                    }
                }
                Need::Quota => {
                    self.read_quota(&app, crate::quota::ReadTrigger::QuotaExhausted)
                        .await
                }
            }
        }
    }

    async fn read_quota(&self, app: &AppName, trigger: crate::quota::ReadTrigger) {
        if let Err(e) =
            crate::quota::read(&self.pool, &self.tokens, &self.client, app, trigger).await
        {
            tracing::warn!(app = %app, error = %e, "quota read failed");
        }
        match crate::quota::today(&self.pool, app, chrono::Utc::now()).await {
            Ok(Some(q)) => crate::quota::export_metrics(app, &q),
            Ok(None) => {}
            Err(e) => tracing::warn!(app = %app, error = %e, "quota count failed"),
        }
    }

    /// Syncs `app`'s templates from WeChat and swaps them into the catalog in memory.
    async fn sync(&self, app: &AppName, trigger: SyncTrigger) -> Result<(), UpkeepError> {
        self.synced.lock().insert(app.clone(), Instant::now());
        let list = crate::templates::sync::fetch(&self.tokens, &self.client, app).await?;
        // Memory first: once Postgres shows the new list, this worker checks against it too.
        let fresh = AppCatalog::from_list(&list, chrono::Utc::now());
        self.catalog.write().insert(app.clone(), fresh);
        crate::templates::catalog::store(&self.pool, app, &list, trigger).await?;
        tracing::info!(app = %app, templates = list.len(), "template catalog synced");
        Ok(())
    }

    /// Whether this delivery may refresh `app`'s catalog now; if so, the refresh is claimed
    /// (under the lock), so concurrent deliveries of unknown templates refresh it once.
    fn claim_resync(&self, app: &AppName) -> bool {
        let mut synced = self.synced.lock();
        let due = synced
            .get(app)
            .is_none_or(|at| at.elapsed() >= self.options.min_resync);
        if due {
            synced.insert(app.clone(), Instant::now());
        }
        due
    }
}
