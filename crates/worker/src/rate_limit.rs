//! Per-app send rate, exact across every worker process.
//!
//! # Design
//!
//! The permits come from Postgres, not from a head count. Each app has one `rate_limits` row
//! holding the GCRA state: a theoretical arrival time (TAT) on the **database's** clock. A worker
//! that has sends waiting for an app *leases* a block of permits with one statement
//! ([`rate_lease::lease`], the `rate_lease()` function): the row is locked, the GCRA grants as
//! many permits as fit below `now + burst + LEASE_AHEAD` and moves the TAT past them. Each granted
//! permit has a slot on the database's clock (`base + k × interval`); the worker's *pacer* task
//! hands permit k to a waiting send when the slot minus the burst tolerance has come, converted to
//! the local clock at the moment the statement answered. One pacer wake-up releases every permit
//! that has come due (a tick of at least [`RELEASE_TICK`]), so there is no timer per send.
//!
//! What this guarantees:
//!
//! - **Exact sum.** Whatever the number of processes, the permits granted in any window of
//!   length t are at most t × rate + burst (the GCRA bound, held by one row lock). A permit is
//!   never spent before its slot minus the tolerance, nor more than the tolerance (at least a
//!   tick and a millisecond) after its slot: a process that stalls drops the permits it comes
//!   to late ([`LimiterCounters::expired`]) rather than spend them on top of later ones. So the
//!   sends are at most rate × t + 2 × burst in any window, give or take the difference between
//!   the processes' estimates of the database's clock (each takes the smallest statement delay
//!   it has seen: well under a millisecond on a LAN). The cost of that strictness: on a machine
//!   so loaded that a process comes to a permit later than that (6 ms past its slot at 2,000/s),
//!   the permit is lost.
//! - **A dead worker** loses at most its unspent lease: permits up to `burst + LEASE_AHEAD`
//!   (45 ms at any rate; 85 ms for a transactional lease) ahead of the database's clock.
//!   Nothing has to time out; the next lease of any other process simply starts after them.
//! - **An idle worker leases nothing**: the pacer leases only for sends that wait, at most as
//!   many as wait. A new worker needs no rebalancing: it starts leasing with its first send.
//! - **A Postgres hiccup pauses sending.** A failed or slow lease (over [`LEASE_TIMEOUT`]) grants
//!   nothing; the pacer tries again with a backoff up to one second; the permits already leased
//!   are spent on their slots; nothing is ever sent without a permit.
//! - **Transactional before bulk, across processes.** A transactional lease reaches twice as
//!   far ahead as a bulk lease, so it finds room behind the bulk permits already leased (a
//!   transactional send waits at most one bulk horizon, 45 ms, behind them). A transactional
//!   lease that still gets fewer permits than it asked for records its shortfall on the row for
//!   two of its horizons; every bulk lease, in any process, leaves that much room and takes
//!   only the rest. So a bulk lease never takes permits a transactional send is waiting for,
//!   and bulk takes everything the transactional lane leaves: when the transactional demand is
//!   above the rate, nothing; when it is a trickle, all but the trickle. Inside a process,
//!   every permit that comes due goes to a waiting transactional send first.
//!
//! The cost: one statement per lease; a lease is granted only when at least half a block
//! (20 ms of permits, or the whole demand if smaller) fits, so at a saturated rate each statement
//! brings 20–40 ms of permits: at most 50 granting statements per second per busy app, however
//! many processes share it. Processes that take turns at the horizon also ask in vain now and
//! then (a grant of 0, then a wait until half a block fits): three busy processes sharing
//! 2,000/s were measured at about 140 statements a second, one busy process at about 45.
//!
//! For the campaign dispatcher and the ops view, [`Limits::rate`] and [`Limits::lane_usage`]
//! tell an app's rate and what its lanes take of it across all processes
//! ([`LaneUsage::bulk_headroom_per_second`]).
//!
//! An app paused by 45009 (daily quota used up) sends nothing until its pause ends; the pause is
//! shared through `apps.paused_until`, read with the heartbeat. The heartbeat (`workers` table)
//! is there for the ops view of live workers only.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use super::rate_lease;
pub use super::rate_lease::LEASE_TIMEOUT;
pub use super::rate_lease::{LaneUsage, LeaseParams};
use wxnotify_core::config::AppConfig;
use wxnotify_core::domain::AppName;
use wxnotify_core::queue::Lane;
use wxnotify_services::app_pause::{self, PauseCause, Suspension};

/// How often a worker heartbeats (ops view) and re-reads the apps' pauses.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// The pacer releases due permits at most this often: permits due within one tick go out
/// together (a permit goes out up to one tick after it came due, never before). A longer tick
/// means fewer wake-ups per send; it also lets a one-second window hold about a tick's worth of
/// permits more (0.5 % at 5 ms, on top of the 0.5 % burst), within the 2 % ceiling.
pub const RELEASE_TICK: Duration = Duration::from_millis(5);
/// The first wait after a failed lease; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The pacer looks again at least this often, even with nothing to do.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Counters of one app's limiter in this process.
#[derive(Debug, Default)]
pub struct LimiterCounters {
    /// Lease statements that answered.
    pub leases: AtomicU64,
    /// Permits those leases granted.
    pub granted: AtomicU64,
    /// Lease statements that failed (Postgres away or slow).
    pub lease_errors: AtomicU64,
    /// Permits handed to sends.
    pub spent: AtomicU64,
    /// Permits dropped because this process came to them too late (a stall longer than the
    /// burst tolerance): lost, never spent on top of later ones.
    pub expired: AtomicU64,
    /// Permits that came due with no send waiting for them any more (the sends they were
    /// leased for were cancelled): dropped.
    pub unwanted: AtomicU64,
}

impl LimiterCounters {
    fn add(&self, counter: &AtomicU64, fate: &'static str, app: &AppName, n: u32) {
        if n > 0 {
            counter.fetch_add(u64::from(n), Ordering::Relaxed);
            metrics::counter!("wxnotify_rate_permits_total", "app" => app.to_string(), "fate" => fate)
                .increment(u64::from(n));
        }
    }
}

/// The sends waiting for a permit, per lane.
#[derive(Default)]
struct Waiters {
    tx: VecDeque<oneshot::Sender<()>>,
    bulk: VecDeque<oneshot::Sender<()>>,
    /// The pacer sleeps without a timer: a new waiter must wake it.
    pacer_idle: bool,
}

struct Shared {
    app: AppName,
    params: LeaseParams,
    pool: PgPool,
    waiters: Mutex<Waiters>,
    wake: Notify,
    counters: LimiterCounters,
}

impl Shared {
    /// Hands `n` due permits to waiting sends, transactional first. A permit nobody waits for
    /// any more (a cancelled send) is dropped, never kept for later: keeping it would let it
    /// be spent after its slot, on top of later permits.
    fn hand_out(&self, n: u32) {
        let mut spent = 0;
        {
            let mut w = self.waiters.lock().expect("waiters lock");
            while spent < n {
                let Some(tx) = w.tx.pop_front().or_else(|| w.bulk.pop_front()) else {
                    break;
                };
                if tx.send(()).is_ok() {
                    spent += 1;
                }
            }
        }
        let c = &self.counters;
        c.add(&c.spent, "spent", &self.app, spent);
        c.add(&c.unwanted, "unwanted", &self.app, n - spent);
    }

    /// Sends waiting (transactional, all), minus the permits already leased for them.
    fn needs(&self, unreleased: u64) -> (u64, u64) {
        let w = self.waiters.lock().expect("waiters lock");
        let tx = w.tx.len() as u64;
        let all = tx + w.bulk.len() as u64;
        (
            tx.saturating_sub(unreleased),
            all.saturating_sub(unreleased),
        )
    }

    /// Marks the pacer idle unless sends wait; true when it may sleep without a timer.
    fn go_idle(&self) -> bool {
        let mut w = self.waiters.lock().expect("waiters lock");
        w.tx.retain(|s| !s.is_closed());
        w.bulk.retain(|s| !s.is_closed());
        w.pacer_idle = w.tx.is_empty() && w.bulk.is_empty();
        w.pacer_idle
    }
}

/// A granted block of permits, on the local clock.
struct Block {
    first_due: Instant,
    interval: Duration,
    count: u32,
    released: u32,
}

impl Block {
    fn next_due(&self) -> Instant {
        self.first_due + self.interval * self.released
    }

    /// Permits `0..k` are due by `at` (the count, capped at the block's size).
    fn due_by(&self, at: Instant) -> u32 {
        if at < self.first_due {
            return 0;
        }
        let elapsed = (at - self.first_due).as_micros();
        (elapsed / self.interval.as_micros().max(1) + 1).min(u128::from(self.count)) as u32
    }

    /// Releases the permits due at `now`; returns how many may be spent and how many expired:
    /// a permit more than `grace` past its due time (its slot minus the burst tolerance) is
    /// dropped, since spending it late would put
    /// it on top of later permits (a stalled process loses permits rather than bunching them).
    fn release(&mut self, now: Instant, grace: Duration) -> (u32, u32) {
        let due = self.due_by(now);
        let stale = now
            .checked_sub(grace)
            .map_or(0, |t| self.due_by(t))
            .max(self.released);
        let expired = stale - self.released;
        let n = due.saturating_sub(stale);
        self.released = self.released.max(due);
        (n, expired)
    }
}

/// Maps the database's clock to the local one. The offset is the smallest seen between a
/// statement's answer (local) and the clock it read (database): the statement with the least
/// delay tells it best. Using one steady offset, rather than each answer's own, keeps the jitter
/// of statement delays out of the release times (it would bunch permits). The estimate may rise
/// by 100 µs per second, so a drift of the clocks is followed.
struct ClockMap {
    epoch: Instant,
    offset_us: Option<i64>,
    seen: Instant,
}

impl ClockMap {
    fn new() -> Self {
        let now = Instant::now();
        ClockMap {
            epoch: now,
            offset_us: None,
            seen: now,
        }
    }

    fn observe(&mut self, answered: Instant, db_now_us: i64) {
        let observed = (answered - self.epoch).as_micros() as i64 - db_now_us;
        let drift = ((answered - self.seen).as_micros() / 10_000) as i64;
        self.seen = answered;
        self.offset_us = Some(
            self.offset_us
                .map_or(observed, |o| (o + drift).min(observed)),
        );
    }

    /// The local instant of `db_us` on the database's clock (the epoch if that is earlier).
    fn local(&self, db_us: i64) -> Instant {
        let since_epoch = db_us + self.offset_us.unwrap_or(0);
        self.epoch + Duration::from_micros(u64::try_from(since_epoch).unwrap_or(0))
    }
}

/// The permits this process leased and has not handed out yet.
#[derive(Default)]
struct Schedule {
    blocks: VecDeque<Block>,
}

impl Schedule {
    fn release(&mut self, now: Instant, grace: Duration) -> (u32, u32) {
        let (mut n, mut expired) = (0, 0);
        for b in &mut self.blocks {
            let (due, late) = b.release(now, grace);
            n += due;
            expired += late;
        }
        self.blocks.retain(|b| b.released < b.count);
        (n, expired)
    }

    fn unreleased(&self) -> u64 {
        self.blocks
            .iter()
            .map(|b| u64::from(b.count - b.released))
            .sum()
    }

    fn next_due(&self) -> Option<Instant> {
        self.blocks.iter().map(Block::next_due).min()
    }
}

/// One app's pacing in this process.
pub struct AppLimiter {
    shared: Arc<Shared>,
    pacer_started: AtomicBool,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
    paused_until: RwLock<Option<DateTime<Utc>>>,
    /// WeChat refuses the app itself (read from Postgres with the heartbeat, or set by this
    /// process when a send or token call answered so).
    suspension: RwLock<Option<Suspension>>,
}

impl AppLimiter {
    fn new(app: AppName, rate: u32, pool: PgPool) -> Self {
        let stop = CancellationToken::new();
        AppLimiter {
            shared: Arc::new(Shared {
                app,
                params: LeaseParams::for_rate(rate),
                pool,
                waiters: Mutex::new(Waiters::default()),
                wake: Notify::new(),
                counters: LimiterCounters::default(),
            }),
            pacer_started: AtomicBool::new(false),
            stop: stop.clone(),
            _stop_on_drop: stop.drop_guard(),
            paused_until: RwLock::new(None),
            suspension: RwLock::new(None),
        }
    }

    /// The app's rate (sends per second, all processes together).
    pub fn rate(&self) -> u32 {
        self.shared.params.rate
    }

    /// The GCRA parameters derived from the rate.
    pub fn params(&self) -> &LeaseParams {
        &self.shared.params
    }

    /// This process's counters for the app.
    pub fn counters(&self) -> &LimiterCounters {
        &self.shared.counters
    }

    /// Waits for a permit to send one message on `lane` (transactional sends are served first,
    /// here and across processes). Waits as long as Postgres cannot lease permits.
    /// Cancellation-safe: a dropped wait takes no permit.
    pub async fn acquire(&self, lane: Lane) {
        self.ensure_pacer();
        let (tx, rx) = oneshot::channel();
        {
            let mut w = self.shared.waiters.lock().expect("waiters lock");
            match lane {
                Lane::Jobs => w.tx.push_back(tx),
                Lane::Bulk => w.bulk.push_back(tx),
            }
            if std::mem::take(&mut w.pacer_idle) {
                self.shared.wake.notify_one();
            }
        }
        // The sender lives in the queue until the pacer answers, or the limiter is dropped.
        let _ = rx.await;
    }

    fn ensure_pacer(&self) {
        if !self.pacer_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(pace(self.shared.clone(), self.stop.clone()));
        }
    }

    /// How long the app stays paused (45009), if it is.
    pub fn paused_for(&self) -> Option<Duration> {
        let until = (*self.paused_until.read().expect("pause lock"))?;
        (until - Utc::now()).to_std().ok().filter(|d| !d.is_zero())
    }

    fn set_paused_until(&self, until: Option<DateTime<Utc>>) {
        *self.paused_until.write().expect("pause lock") = until;
    }

    /// Why WeChat refuses the app itself, while it does (see `wxnotify_services::app_pause`).
    pub fn suspension(&self) -> Option<Suspension> {
        self.suspension.read().expect("pause lock").clone()
    }

    fn set_suspension(&self, suspension: Option<Suspension>) {
        *self.suspension.write().expect("pause lock") = suspension;
    }
}

/// The pacer of one app: leases for waiting sends, releases permits on their slots.
async fn pace(shared: Arc<Shared>, stop: CancellationToken) {
    let params = shared.params;
    let mut schedule = Schedule::default();
    let mut next_lease = Instant::now();
    let mut backoff = MIN_BACKOFF;
    let mut clock = ClockMap::new();
    // A permit's slot is `due + burst`; it may still be spent up to `grace` after its slot.
    let tolerance = Duration::from_micros(params.burst_us as u64);
    // The lateness allowed: a tick (a permit due just after one goes out with the next) and a
    // millisecond for the timer, or the tolerance if that is longer.
    let grace = tolerance + tolerance.max(RELEASE_TICK + Duration::from_millis(1));
    loop {
        let now = Instant::now();
        let (due, expired) = schedule.release(now, grace);
        if due > 0 {
            shared.hand_out(due);
        }
        let c = &shared.counters;
        c.add(&c.expired, "expired", &shared.app, expired);
        let (tx_need, all_need) = shared.needs(schedule.unreleased());
        if all_need > 0 && now >= next_lease {
            let transactional = tx_need > 0;
            // The whole demand is asked for: the database grants what fits under the horizon
            // (a block at most), and a transactional lease cut short is what holds bulk back.
            let want = if transactional { tx_need } else { all_need };
            let want = u32::try_from(want).unwrap_or(u32::MAX);
            let lease = tokio::select! {
                _ = stop.cancelled() => return,
                r = rate_lease::lease(&shared.pool, &shared.app, &params, transactional, want) => r,
            };
            let answered = Instant::now();
            metrics::histogram!("wxnotify_rate_lease_seconds", "app" => shared.app.to_string())
                .record((answered - now).as_secs_f64());
            match lease {
                Ok(grant) => {
                    backoff = MIN_BACKOFF;
                    shared.counters.leases.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("wxnotify_rate_leases_total", "app" => shared.app.to_string(), "result" => "ok")
                        .increment(1);
                    c.add(&c.granted, "granted", &shared.app, grant.granted);
                    clock.observe(answered, grant.db_now_us);
                    if grant.granted > 0 {
                        schedule.blocks.push_back(Block {
                            first_due: clock.local(grant.first_due_us),
                            interval: params.interval(),
                            count: grant.granted,
                            released: 0,
                        });
                    }
                    if grant.granted < want {
                        next_lease = answered
                            + grant
                                .retry_after
                                .clamp(Duration::from_millis(1), MAX_BACKOFF);
                    }
                }
                Err(e) => {
                    shared.counters.lease_errors.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("wxnotify_rate_leases_total", "app" => shared.app.to_string(), "result" => "error")
                        .increment(1);
                    tracing::warn!(app = %shared.app, error = %e, retry_in = ?backoff,
                        "cannot lease send permits; sending of this app pauses");
                    next_lease = answered + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            continue;
        }
        let mut wake_at = schedule.next_due().map(|d| d.max(now + RELEASE_TICK));
        if all_need > 0 {
            wake_at = Some(wake_at.map_or(next_lease, |w| w.min(next_lease)));
        }
        if wake_at.is_none() && !shared.go_idle() {
            continue;
        }
        let wake_at = wake_at.unwrap_or(now + IDLE_CHECK).min(now + IDLE_CHECK);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep_until(wake_at) => {}
        }
    }
}

/// A pool of its own for the limiter, on the database of `pool`: two connections, so a lease
/// never queues behind the pipeline's statements (hundreds of sends in flight share the worker's
/// pool), which would leave the rate unused.
pub fn dedicated_pool(pool: &PgPool) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(LEASE_TIMEOUT)
        .connect_lazy_with((*pool.connect_options()).clone())
}

/// The limiters of every app, and this process's line in the ops view of workers.
pub struct Limits {
    apps: HashMap<AppName, AppLimiter>,
    pool: PgPool,
    me: Uuid,
    /// The lanes this process consumes, shown in the ops view of workers.
    lanes: Vec<String>,
}

impl Limits {
    /// Limiters for `apps` at their configured rates, leasing from `pool` (best a pool of the
    /// limiter's own, [`dedicated_pool`]). Nothing is leased before the first send waits.
    pub fn new(apps: &[AppConfig], pool: PgPool) -> Self {
        Limits {
            apps: apps
                .iter()
                .map(|a| {
                    (
                        a.name.clone(),
                        AppLimiter::new(a.name.clone(), a.rate_per_second, pool.clone()),
                    )
                })
                .collect(),
            pool,
            me: Uuid::new_v4(),
            lanes: Vec::new(),
        }
    }

    /// The same limits, recording that this process consumes `lanes` (ops view of workers).
    pub fn consuming(mut self, lanes: &[Lane]) -> Self {
        self.lanes = lanes.iter().map(ToString::to_string).collect();
        self
    }

    /// The id this process heartbeats under in `workers` (its claims on jobs name it).
    pub fn worker_id(&self) -> Uuid {
        self.me
    }

    /// The app's limiter.
    pub fn app(&self, app: &AppName) -> Option<&AppLimiter> {
        self.apps.get(app)
    }

    /// The app's configured rate, sends per second across all processes.
    pub fn rate(&self, app: &AppName) -> Option<u32> {
        self.apps.get(app).map(AppLimiter::rate)
    }

    /// What the app's lanes take of its rate now, across all processes: the transactional
    /// lane's permits per second, the bulk lane's, and whether a transactional send is being
    /// held back. A campaign dispatcher paces on `bulk_headroom_per_second()`.
    pub async fn lane_usage(&self, app: &AppName) -> Result<Option<LaneUsage>, sqlx::Error> {
        let Some(rate) = self.rate(app) else {
            return Ok(None);
        };
        rate_lease::lane_usage(&self.pool, app, rate)
            .await
            .map(Some)
    }

    /// Pauses `app` for `pause` in every process (45009).
    pub async fn pause(
        &self,
        pool: &PgPool,
        app: &AppName,
        pause: Duration,
        why: &str,
    ) -> Result<(), sqlx::Error> {
        let until = Utc::now() + pause;
        if let Some(l) = self.apps.get(app) {
            l.set_paused_until(Some(until));
        }
        tracing::warn!(app = %app, pause_s = pause.as_secs(), why, "app paused: WeChat daily quota used up");
        app_pause::pause_until(pool, app.as_str(), until, PauseCause::Quota, why).await?;
        Ok(())
    }

    /// Suspends `app` in this process at once and in every process through Postgres: WeChat
    /// refuses the app itself. The first worker to suspend it logs it at ERROR, with the fix.
    pub async fn suspend(
        &self,
        pool: &PgPool,
        app: &AppName,
        suspension: Suspension,
    ) -> Result<(), sqlx::Error> {
        if let Some(l) = self.apps.get(app) {
            l.set_suspension(Some(suspension.clone()));
        }
        let newly = app_pause::suspend(
            pool,
            app.as_str(),
            suspension.errcode,
            &suspension.errmsg,
            suspension.endpoint.as_deref(),
        )
        .await?;
        if newly {
            tracing::error!(app = %app, errcode = suspension.errcode, errmsg = %suspension.errmsg,
                fix = suspension.fix(),
                "app paused: WeChat refuses the account itself; its jobs wait (none dies), and a \
                 worker tries again every 30 s");
        }
        Ok(())
    }

    /// Lifts `app`'s suspension here and in every process (a probe went through).
    pub async fn lift_suspension(&self, pool: &PgPool, app: &AppName) -> Result<(), sqlx::Error> {
        if let Some(l) = self.apps.get(app) {
            l.set_suspension(None);
        }
        if app_pause::lift_suspension(pool, app.as_str()).await? {
            tracing::warn!(app = %app, "app resumed: WeChat answers normally again");
        }
        Ok(())
    }

    /// Heartbeats once: records this worker (ops view) and reads the apps' pauses. Returns the
    /// number of live workers, for the log.
    pub async fn heartbeat(&self, pool: &PgPool) -> Result<u32, sqlx::Error> {
        sqlx::query(
            "INSERT INTO workers (id, hostname, pid, lanes) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()",
        )
        .bind(self.me)
        .bind(hostname())
        .bind(std::process::id() as i32)
        .bind(&self.lanes)
        .execute(pool)
        .await?;
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM workers WHERE heartbeat_at > now() - interval '3 seconds'",
        )
        .fetch_one(pool)
        .await?;
        let pauses = app_pause::read_all(pool).await?;
        app_pause::export_metrics(&pauses, Utc::now());
        for p in pauses {
            if let Some(l) = AppName::parse(&p.app).ok().and_then(|n| self.apps.get(&n)) {
                l.set_paused_until(p.until);
                l.set_suspension(p.suspension);
            }
        }
        Ok(u32::try_from(live).unwrap_or(u32::MAX))
    }

    /// Heartbeats every [`HEARTBEAT`] until `shutdown`, then leaves the worker table.
    pub async fn run_heartbeat(self: Arc<Self>, pool: PgPool, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.heartbeat(&pool).await {
                tracing::warn!(error = %e, "worker heartbeat failed; pauses are not refreshed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(HEARTBEAT) => {}
            }
        }
        let _ = sqlx::query("DELETE FROM workers WHERE id = $1")
            .bind(self.me)
            .execute(&pool)
            .await;
        self.log_counters();
    }

    /// Logs what each app's limiter did in this process (at the worker's stop).
    pub fn log_counters(&self) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (app, limiter) in &self.apps {
            let c = limiter.counters();
            if get(&c.leases) + get(&c.lease_errors) == 0 {
                continue;
            }
            tracing::info!(app = %app, leases = get(&c.leases), lease_errors = get(&c.lease_errors),
                granted = get(&c.granted), spent = get(&c.spent), expired = get(&c.expired),
                unwanted = get(&c.unwanted), "rate limiter: permits of this process");
        }
    }
}

fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_releases_its_permits_on_their_slots() {
        let t0 = Instant::now();
        let mut b = Block {
            first_due: t0,
            interval: Duration::from_millis(1),
            count: 10,
            released: 0,
        };
        let grace = Duration::from_millis(2);
        assert_eq!(b.release(t0, grace), (1, 0));
        assert_eq!(b.release(t0 + Duration::from_micros(2500), grace), (2, 0));
        assert_eq!(b.next_due(), t0 + Duration::from_millis(3));
        // A stall: permits more than the grace late are dropped, the rest released.
        assert_eq!(b.release(t0 + Duration::from_micros(6500), grace), (2, 2));
        assert_eq!(b.release(t0 + Duration::from_secs(2), grace), (0, 3));
    }

    #[test]
    fn a_block_due_later_releases_nothing_yet() {
        let t0 = Instant::now();
        let mut b = Block {
            first_due: t0 + Duration::from_millis(5),
            interval: Duration::from_millis(1),
            count: 3,
            released: 0,
        };
        assert_eq!(b.release(t0, Duration::ZERO), (0, 0));
    }
}
