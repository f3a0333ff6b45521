//! What the worker knows of WeChat's rules of the day, and keeps up to date: each app's template
//! catalog (checked before every send), its real daily quota, and the verdicts of WeChat's
//! content review on held messages (`wxnotify_services::reviews`).
//!
//! The pipeline calls [`Rules::before_send`] once per delivery, just before the send (a refused
//! job dies `payload_rejected` with the reason, without a WeChat call; an asked-for truncation
//! is recorded on the ledger first), and [`Rules::observe`] with every failure WeChat answered:
//! 45009 queues a quota read, and 40037 is decided there (see [`Rules::observe`]: a template the
//! catalog holds is looked up in a fresh list and, still there, retried once). [`Rules::run`] is
//! the worker's background task: at start and every [`UpkeepOptions::every`] it syncs every
//! app's templates, reads its quota (exported as metrics) and follows held messages to their review verdict; in
//! between it serves the refreshes `observe` queued.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use wxnotify_core::domain::{AppName, Job};
use wxnotify_core::wechat::errcode::{DAILY_QUOTA, UNKNOWN_TEMPLATE};
use wxnotify_core::wechat::{ErrClass, TokenStore, WechatClient};
use wxnotify_services::error::UpkeepError;
use wxnotify_services::ledger::outcome::Failure;
use wxnotify_services::templates::{
    Catalog, Checked, Refusal, SubscribeCatalog, SyncTrigger, check_job, check_subscribe,
};

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
    /// The least time between two catalog refreshes of one app caused by a job naming a
    /// template the catalog holds as deleted.
    pub min_resync: Duration,
    /// How held messages are followed to WeChat's review verdict.
    pub review: wxnotify_services::reviews::ReviewOptions,
    /// The longest wait for the fresh list a 40037 asks for (the delivery waits for it).
    pub fresh_sync_within: Duration,
}

impl Default for UpkeepOptions {
    fn default() -> Self {
        UpkeepOptions {
            every: Duration::from_secs(300),
            min_resync: Duration::from_secs(30),
            review: wxnotify_services::reviews::ReviewOptions::default(),
            fresh_sync_within: Duration::from_secs(10),
        }
    }
}

/// A refresh `observe` asked for (a 40037's catalog refresh is not queued: the delivery waits
/// for it, see [`Rules::observe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Need {
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
    /// Each app's Mini Program subscribe templates, as `templates sync` last stored them; read
    /// again from Postgres after each of the app's syncs.
    subscribe: RwLock<HashMap<AppName, SubscribeCatalog>>,
    /// When each app's catalog was last synced by this process.
    synced: Mutex<HashMap<AppName, Instant>>,
    /// Refreshes queued by `observe`, served by `run` (at most one per app: bounded).
    pending: Mutex<HashSet<(AppName, Need)>>,
    /// Per app, the syncs 40037 answers ask for, one at a time, and when the last one ended: a
    /// burst of 40037s shares one fresh list.
    fresh: Mutex<HashMap<AppName, Arc<tokio::sync::Mutex<Option<Instant>>>>>,
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
            subscribe: RwLock::new(HashMap::new()),
            synced: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashSet::new()),
            fresh: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Loads the stored catalog (no WeChat call).
    pub async fn load(&self) -> Result<(), sqlx::Error> {
        let catalog = Catalog::load(&self.pool).await?;
        *self.catalog.write() = catalog;
        for app in &self.apps {
            self.load_subscribe(app).await?;
        }
        Ok(())
    }

    /// Reads `app`'s stored subscribe templates into memory.
    async fn load_subscribe(&self, app: &AppName) -> Result<(), sqlx::Error> {
        let loaded = SubscribeCatalog::load(&self.pool, app).await?;
        self.subscribe.write().insert(app.clone(), loaded);
        Ok(())
    }

    /// The check before a subscribe message is sent: its `mp_subscribe.data` against the app's
    /// subscribe template (keys, value rules, enums), as the OA message is checked by
    /// [`Rules::before_send`]. A refusal ends the job `payload_rejected` (its grant, reserved
    /// with the claim, is given back: nothing was sent). Values are never shortened here:
    /// `truncate` applies to the OA message only, whose cuts the ledger records.
    pub fn before_subscribe_send(&self, job: &Job) -> Result<(), Refusal> {
        let Some(form) = &job.mp_subscribe else {
            return Ok(());
        };
        let catalogs = self.subscribe.read();
        let Some(catalog) = catalogs.get(&job.app) else {
            return Ok(());
        };
        check_subscribe(catalog, &job.app, &form.template_id, &form.data, false).map(drop)
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
    /// ledger). A template the catalog holds as deleted is looked up once more on WeChat first
    /// (at most once per `min_resync` per app), in case its listing is back. A template the
    /// catalog never saw is sent (WeChat's list lacks category templates; WeChat decides).
    pub async fn before_send(&self, job: &Job) -> Result<Option<Job>, Stop> {
        let mut checked = self.check(job);
        if let Err(refusal) = &checked
            && refusal.names_deleted_template()
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
        wxnotify_services::ledger::marks::record_truncation(&self.pool, job, record)
            .await
            .map_err(Stop::Unrecorded)?;
        Ok(Some(Job {
            data: Some(data),
            ..job.clone()
        }))
    }

    /// Called with the failure of every send WeChat answered, with the class of WeChat's
    /// answer; returns the class the pipeline acts on. 45009 queues a quota read. 40037
    /// ("invalid template_id") is decided here, in one place:
    ///
    /// - a template the catalog does not hold (never listed, e.g. a category template): WeChat
    ///   is the authority, the job dies `payload_rejected` at once;
    /// - a template the catalog holds (listed, or registered by hand), for the first time in
    ///   this job's life: WeChat answers 40037 in short bursts on valid templates, so the app's
    ///   list is fetched afresh (one fetch serves a burst, bounded by
    ///   [`UpkeepOptions::fresh_sync_within`]); still listed, or manual, the job is retried once
    ///   through the normal retry path ([`ErrClass::Transient`], so the ledger records the
    ///   attempt); no longer listed, it dies as deleted;
    /// - a second 40037 in the same life: dies `payload_rejected`.
    ///
    /// The failure's message (the dead letter's text) says which.
    pub async fn observe(
        &self,
        job: &Job,
        life: i32,
        class: ErrClass,
        failure: &mut Failure,
    ) -> ErrClass {
        match failure.errcode {
            Some(UNKNOWN_TEMPLATE) => self.after_unknown_template(job, life, failure).await,
            Some(DAILY_QUOTA) => {
                self.pending.lock().insert((job.app.clone(), Need::Quota));
                self.wake.notify_one();
                class
            }
            _ => class,
        }
    }

    /// The 40037 decision of [`Rules::observe`].
    async fn after_unknown_template(
        &self,
        job: &Job,
        life: i32,
        failure: &mut Failure,
    ) -> ErrClass {
        let dead = ErrClass::Permanent(wxnotify_core::wechat::PermanentKind::Payload);
        if !self.holds(job) {
            failure.message.push_str(
                " — WeChat does not know this template and the template catalog does not hold it \
                 (never listed): WeChat is the authority, not retried",
            );
            return dead;
        }
        if self.answered_unknown_template_before(job, life).await {
            failure.message.push_str(
                " — WeChat does not know this template, again after a retry with a fresh \
                 template list: not retried again",
            );
            return dead;
        }
        let refreshed = self.fresh_sync(&job.app, Instant::now()).await;
        if !self.holds(job) {
            failure.message.push_str(
                " — WeChat does not know this template and no longer lists it: deleted on \
                 WeChat's side (or its category removed)",
            );
            return dead;
        }
        let why = match &refreshed {
            Ok(()) => "it is still in a fresh template list (or registered by hand)".to_owned(),
            Err(e) => format!("the template catalog still holds it (the refresh failed: {e})"),
        };
        failure.message.push_str(&format!(
            " — {why}: WeChat answers 40037 in short bursts, retried once"
        ));
        ErrClass::Transient
    }

    /// Whether the catalog in memory holds `job`'s template as usable (listed or manual).
    fn holds(&self, job: &Job) -> bool {
        self.catalog
            .read()
            .app(&job.app)
            .zip(job.template_id.as_ref())
            .and_then(|(c, t)| c.templates.get(t.as_str()))
            .is_some_and(|t| t.is_live())
    }

    /// Whether an earlier attempt of this life of `job` was answered 40037 (and retried). A
    /// Postgres error counts as yes: then the job dies as it did before retries existed.
    async fn answered_unknown_template_before(&self, job: &Job, life: i32) -> bool {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM delivery_attempts
                            WHERE app = $4 AND job_id = $1 AND life = $2 AND errcode = $3)",
        )
        .bind(job.id.as_str())
        .bind(life)
        .bind(UNKNOWN_TEMPLATE)
        .bind(job.app.as_str())
        .fetch_one(&self.pool)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(job_id = %job.id, error = %e, "reading the job's earlier attempts failed");
            true
        })
    }

    /// Syncs `app` unless a sync asked for by a 40037 ended after `asked` (a burst of 40037s
    /// shares one list), for at most [`UpkeepOptions::fresh_sync_within`].
    async fn fresh_sync(&self, app: &AppName, asked: Instant) -> Result<(), String> {
        let slot = self.fresh.lock().entry(app.clone()).or_default().clone();
        let mut last = slot.lock().await;
        if last.is_some_and(|ended| ended >= asked) {
            return Ok(());
        }
        let within = self.options.fresh_sync_within;
        let result = tokio::time::timeout(within, self.sync(app, SyncTrigger::UnknownTemplate))
            .await
            .map_err(|_| format!("no answer within {within:?}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
        *last = Some(Instant::now());
        if let Err(e) = &result {
            tracing::warn!(app = %app, error = %e, "template catalog refresh after 40037 failed");
        }
        result
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
            self.read_quota(app, wxnotify_services::quota::ReadTrigger::Schedule)
                .await;
            if let Err(e) = wxnotify_services::reviews::reconcile_app(
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
                Need::Quota => {
                    self.read_quota(&app, wxnotify_services::quota::ReadTrigger::QuotaExhausted)
                        .await
                }
            }
        }
    }

    async fn read_quota(&self, app: &AppName, trigger: wxnotify_services::quota::ReadTrigger) {
        if let Err(e) =
            wxnotify_services::quota::read(&self.pool, &self.tokens, &self.client, app, trigger)
                .await
        {
            tracing::warn!(app = %app, error = %e, "quota read failed");
        }
        match wxnotify_services::quota::today(&self.pool, app, chrono::Utc::now()).await {
            Ok(Some(q)) => wxnotify_services::quota::export_metrics(app, &q),
            Ok(None) => {}
            Err(e) => tracing::warn!(app = %app, error = %e, "quota count failed"),
        }
    }

    /// Syncs `app`'s templates from WeChat into Postgres, then loads the app's catalog from
    /// Postgres into memory (so manual templates registered meanwhile are seen too; they are
    /// loaded even when WeChat cannot be reached).
    async fn sync(&self, app: &AppName, trigger: SyncTrigger) -> Result<(), UpkeepError> {
        self.synced.lock().insert(app.clone(), Instant::now());
        let fetched =
            wxnotify_services::templates::sync::fetch(&self.tokens, &self.client, app).await;
        if let Ok(list) = &fetched {
            let stored =
                wxnotify_services::templates::catalog::store(&self.pool, app, list, trigger)
                    .await?;
            wxnotify_services::templates::sync::log_stored(app, list.len(), &stored);
        }
        let loaded = Catalog::load_app(&self.pool, app).await?;
        self.load_subscribe(app).await?;
        {
            let mut catalog = self.catalog.write();
            match loaded.app(app) {
                Some(fresh) => catalog.insert(app.clone(), fresh.clone()),
                None => catalog.remove(app),
            }
        }
        fetched.map(drop)
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
