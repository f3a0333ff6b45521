//! Per-app send rate, across every worker process.
//!
//! governor paces sends inside a process (GCRA, a burst of 1% of the rate so no one-second window
//! exceeds the limit by more than that). Across processes the rate is split: every worker
//! heartbeats in the `workers` table, and each takes `rate / live workers`. Between the lanes,
//! the transactional lane goes first: a bulk send waits while a transactional send is waiting.
//! An app paused by 45009 (daily quota used up) sends nothing until its pause ends; the pause is
//! shared through `apps.paused_until`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::AppConfig;
use crate::domain::AppName;
use crate::queue::Lane;

/// How often a worker heartbeats and re-reads its share and the apps' pauses.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A worker whose heartbeat is older than this is not counted.
const LIVE_WINDOW_SECS: f64 = 3.0;

/// One app's pacing in this process.
pub struct AppLimiter {
    rate: u32,
    share: AtomicU32,
    /// Rebuilt when the share changes; readers clone the Arc and wait outside the lock.
    limiter: RwLock<Arc<DefaultDirectRateLimiter>>,
    /// Transactional sends waiting for a permit; bulk sends hold back while it is not zero.
    tx_waiting: AtomicUsize,
    tx_idle: Notify,
    /// One waiter at a time asks the limiter (FIFO): with hundreds of sends in flight, letting
    /// all of them sleep on the GCRA and retry at the same instant costs a wake-up per waiter per
    /// permit, and the rate falls short.
    turn: tokio::sync::Mutex<()>,
    paused_until: RwLock<Option<DateTime<Utc>>>,
}

fn limiter_for(per_second: u32) -> DefaultDirectRateLimiter {
    let rate = NonZeroU32::new(per_second.max(1)).expect("at least 1");
    let burst = NonZeroU32::new((per_second / 100).max(1)).expect("at least 1");
    RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
}

impl AppLimiter {
    fn new(rate: u32) -> Self {
        AppLimiter {
            rate,
            share: AtomicU32::new(rate),
            limiter: RwLock::new(Arc::new(limiter_for(rate))),
            tx_waiting: AtomicUsize::new(0),
            tx_idle: Notify::new(),
            turn: tokio::sync::Mutex::new(()),
            paused_until: RwLock::new(None),
        }
    }

    /// Sets this process's part of the rate for `workers` live processes.
    fn set_workers(&self, workers: u32) {
        let share = (self.rate / workers.max(1)).max(1);
        if self.share.swap(share, Ordering::Relaxed) != share {
            *self.limiter.write().expect("limiter lock") = Arc::new(limiter_for(share));
            tracing::info!(rate = self.rate, workers, share, "rate share changed");
        }
    }

    /// This process's current share, in sends per second.
    pub fn share(&self) -> u32 {
        self.share.load(Ordering::Relaxed)
    }

    /// Waits for a permit to send one message on `lane`.
    pub async fn acquire(&self, lane: Lane) {
        match lane {
            Lane::Jobs => {
                self.tx_waiting.fetch_add(1, Ordering::SeqCst);
                self.permit().await;
                if self.tx_waiting.fetch_sub(1, Ordering::SeqCst) == 1 {
                    self.tx_idle.notify_waiters();
                }
            }
            Lane::Bulk => loop {
                let idle = self.tx_idle.notified();
                if self.tx_waiting.load(Ordering::SeqCst) == 0 {
                    self.permit().await;
                    return;
                }
                idle.await;
            },
        }
    }

    /// Takes a permit at once if one is free; else waits in line, then for the limiter.
    async fn permit(&self) {
        let limiter = self.current();
        if limiter.check().is_ok() {
            return;
        }
        let _turn = self.turn.lock().await;
        limiter.until_ready().await;
    }

    fn current(&self) -> Arc<DefaultDirectRateLimiter> {
        self.limiter.read().expect("limiter lock").clone()
    }

    /// How long the app stays paused (45009), if it is.
    pub fn paused_for(&self) -> Option<Duration> {
        let until = (*self.paused_until.read().expect("pause lock"))?;
        (until - Utc::now()).to_std().ok().filter(|d| !d.is_zero())
    }

    fn set_paused_until(&self, until: Option<DateTime<Utc>>) {
        *self.paused_until.write().expect("pause lock") = until;
    }
}

/// The limiters of every app, and this process's membership among the workers.
pub struct Limits {
    apps: HashMap<AppName, AppLimiter>,
    me: Uuid,
}

impl Limits {
    /// Limiters for `apps` at their configured rates (before any heartbeat: the whole rate).
    pub fn new(apps: &[AppConfig]) -> Self {
        Limits {
            apps: apps
                .iter()
                .map(|a| (a.name.clone(), AppLimiter::new(a.rate_per_second)))
                .collect(),
            me: Uuid::new_v4(),
        }
    }

    /// The id this process heartbeats under in `workers` (its claims on jobs name it).
    pub fn worker_id(&self) -> Uuid {
        self.me
    }

    /// The app's limiter.
    pub fn app(&self, app: &AppName) -> Option<&AppLimiter> {
        self.apps.get(app)
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
        sqlx::query("UPDATE apps SET paused_until = $2, pause_reason = $3, updated_at = now() WHERE name = $1")
            .bind(app.as_str())
            .bind(until)
            .bind(why)
            .execute(pool)
            .await?;
        Ok(())
    }

    /// Heartbeats once: records this worker, counts the live ones, reads the pauses.
    pub async fn heartbeat(&self, pool: &PgPool) -> Result<u32, sqlx::Error> {
        sqlx::query(
            "INSERT INTO workers (id, hostname, pid) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()",
        )
        .bind(self.me)
        .bind(hostname())
        .bind(std::process::id() as i32)
        .execute(pool)
        .await?;
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM workers WHERE heartbeat_at > now() - make_interval(secs => $1)",
        )
        .bind(LIVE_WINDOW_SECS)
        .fetch_one(pool)
        .await?;
        let pauses: Vec<(String, Option<DateTime<Utc>>)> =
            sqlx::query_as("SELECT name, paused_until FROM apps")
                .fetch_all(pool)
                .await?;
        for (name, until) in pauses {
            if let Some(l) = AppName::parse(name).ok().and_then(|n| self.apps.get(&n)) {
                l.set_paused_until(until);
            }
        }
        let live = u32::try_from(live).unwrap_or(u32::MAX).max(1);
        for l in self.apps.values() {
            l.set_workers(live);
        }
        Ok(live)
    }

    /// Heartbeats every [`HEARTBEAT`] until `shutdown`, then leaves the worker table.
    pub async fn run_heartbeat(self: Arc<Self>, pool: PgPool, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.heartbeat(&pool).await {
                tracing::warn!(error = %e, "worker heartbeat failed; keeping the last rate share");
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
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bulk_waits_while_transactional_sends_wait() {
        let l = Arc::new(AppLimiter::new(1000));
        l.tx_waiting.fetch_add(1, Ordering::SeqCst);
        let bulk = tokio::spawn({
            let l = l.clone();
            async move { l.acquire(Lane::Bulk).await }
        });
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !bulk.is_finished(),
            "bulk must wait for the transactional lane"
        );
        l.tx_waiting.fetch_sub(1, Ordering::SeqCst);
        l.tx_idle.notify_waiters();
        tokio::time::timeout(Duration::from_secs(1), bulk)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn the_rate_is_split_among_live_workers() {
        let l = AppLimiter::new(2000);
        l.set_workers(2);
        assert_eq!(l.share(), 1000);
        l.set_workers(3);
        assert_eq!(l.share(), 666);
    }
}
