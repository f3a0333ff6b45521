//! The dispatcher: turns running campaigns' snapshots into jobs on the `bulk` lane.
//!
//! - **One driver per campaign**: a lease on the campaign row (`lease_holder`, `lease_until`),
//!   renewed on every step; a dispatcher that dies stops renewing and another takes the
//!   campaign over when the lease runs out. Every write of the cursor is conditional on still
//!   holding the lease.
//! - **Resumable**: the cursor (`campaigns.cursor`, the last `send_seq` published) moves only
//!   after the broker confirmed the chunk. A crash between the two re-publishes the chunk; its
//!   job ids are UUID v5 of (campaign, recipient), so the ledger (and WeChat's `client_msg_id`)
//!   drop the repeats.
//! - **Paced**: at most the campaign's rate (a token bucket), never more than about
//!   `backlog_seconds` of sending waiting on the lane (so pause and cancel act within seconds
//!   and transactional jobs never queue behind a campaign), within its window, daily cap and
//!   the app's quota less the transactional reserve; nothing while the app is paused (45009).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use lapin::Connection;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::Value;
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

mod jobs;
mod supervise;

use self::jobs::JobTemplate;
pub use self::jobs::{Address, job_id};
pub use self::supervise::run_until;
use super::model::CampaignState;
use super::pacing::{self, QuotaSettings, Wait};
use super::store::{self, Campaign};
use wxnotify_core::domain::Job;
use wxnotify_core::queue::{Lane, Publisher, PublisherOptions, Topology};

/// How a dispatcher behaves.
#[derive(Debug, Clone)]
pub struct DispatcherOptions {
    /// How often each campaign takes a step.
    pub tick: Duration,
    /// How long a lease lasts without renewal (a dead holder's campaigns wait this long).
    pub lease: Duration,
    /// Seconds of sending (at the campaign's rate) allowed to wait on the bulk lane.
    pub backlog_seconds: f64,
    /// Most jobs published in one step.
    pub max_chunk: u64,
}

impl Default for DispatcherOptions {
    fn default() -> Self {
        DispatcherOptions {
            tick: Duration::from_millis(100),
            lease: Duration::from_secs(10),
            backlog_seconds: 10.0,
            max_chunk: 2_000,
        }
    }
}

/// A dispatcher of one process.
pub struct Dispatcher {
    pool: PgPool,
    publisher: Publisher,
    connection: Arc<Connection>,
    topology: Topology,
    holder: Uuid,
    quota: QuotaSettings,
    options: DispatcherOptions,
    published: Arc<AtomicU64>,
}

/// What the dispatcher keeps per campaign between steps.
struct Driven {
    tokens: f64,
    last: Instant,
    last_completion_check: Option<Instant>,
}

#[derive(sqlx::FromRow)]
struct Lease {
    id: Uuid,
    cursor: i64,
    cap_day: Option<NaiveDate>,
    cap_day_dispatched: i64,
    app_paused: bool,
}

#[derive(sqlx::FromRow)]
struct RecipientRow {
    send_seq: i64,
    oa_openid: Option<String>,
    mp_openid: Option<String>,
    data: Option<Value>,
}

impl Dispatcher {
    /// A dispatcher publishing on `connection` to `topology`.
    pub async fn new(
        pool: PgPool,
        connection: Arc<Connection>,
        topology: Topology,
        quota: QuotaSettings,
        options: DispatcherOptions,
    ) -> Result<Self, wxnotify_core::queue::PublishError> {
        let publisher = Publisher::new(
            connection.clone(),
            topology.clone(),
            PublisherOptions::default(),
        )
        .await?;
        Ok(Dispatcher {
            pool,
            publisher,
            connection,
            topology,
            holder: Uuid::new_v4(),
            quota,
            options,
            published: Arc::new(AtomicU64::new(0)),
        })
    }

    /// This dispatcher's lease holder id.
    pub fn holder(&self) -> Uuid {
        self.holder
    }

    /// Jobs this dispatcher has published (confirmed by the broker).
    pub fn published(&self) -> Arc<AtomicU64> {
        self.published.clone()
    }

    /// Drives campaigns until `shutdown`; returns an error when the broker connection is lost
    /// (the caller reconnects). Leases are released on a clean stop.
    pub async fn run(&self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut driven: HashMap<Uuid, Driven> = HashMap::new();
        let mut tick = tokio::time::interval(self.options.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                _ = tick.tick() => {}
            }
            if !self.connection.status().connected() {
                break Err(anyhow::anyhow!("the RabbitMQ connection was lost"));
            }
            if let Err(e) = self.step_all(&mut driven).await {
                tracing::warn!(error = %e, "campaign dispatch step failed; trying again");
            }
        };
        let _ = sqlx::query(
            "UPDATE campaigns SET lease_holder = NULL, lease_until = NULL WHERE lease_holder = $1",
        )
        .bind(self.holder)
        .execute(&self.pool)
        .await;
        result
    }

    /// One step of every campaign this dispatcher holds or can take.
    async fn step_all(&self, driven: &mut HashMap<Uuid, Driven>) -> anyhow::Result<()> {
        let leases: Vec<Lease> = sqlx::query_as(
            "UPDATE campaigns c
             SET lease_holder = $1, lease_until = now() + make_interval(secs => $2)
             WHERE c.state IN ('scheduled', 'running')
               AND (c.lease_holder IS NULL OR c.lease_holder = $1 OR c.lease_until < now())
             RETURNING c.id, c.cursor, c.cap_day, c.cap_day_dispatched,
                 EXISTS (SELECT 1 FROM apps a WHERE a.name = c.app AND (a.paused_until > now() OR a.suspended_at IS NOT NULL)) AS app_paused",
        )
        .bind(self.holder)
        .bind(self.options.lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        driven.retain(|id, _| leases.iter().any(|l| l.id == *id));
        if leases.is_empty() {
            return Ok(());
        }
        let depth = self.lane_depth().await?;
        for lease in leases {
            let state = driven.entry(lease.id).or_insert_with(|| Driven {
                tokens: 0.0,
                last: Instant::now(),
                last_completion_check: None,
            });
            let campaign = store::get(&self.pool, lease.id).await?;
            if let Err(e) = self.step(&campaign, &lease, state, depth).await {
                tracing::warn!(campaign = %lease.id, error = %e, "campaign step failed");
            }
        }
        Ok(())
    }

    /// Messages waiting on the bulk lane.
    async fn lane_depth(&self) -> anyhow::Result<u64> {
        let channel = self.connection.create_channel().await?;
        let queue = channel
            .queue_declare(
                self.topology.lane_queue(Lane::Bulk).as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let _ = channel.close(200, "depth read".into()).await;
        Ok(u64::from(queue.message_count()))
    }

    /// One step of one campaign.
    async fn step(
        &self,
        c: &Campaign,
        lease: &Lease,
        driven: &mut Driven,
        depth: u64,
    ) -> anyhow::Result<()> {
        let now = Utc::now();
        let pacing = c.pacing();
        let elapsed = driven.last.elapsed().as_secs_f64();
        driven.last = Instant::now();
        if c.state == CampaignState::Scheduled {
            if pacing.start_at.is_some_and(|s| s > now) {
                return Ok(());
            }
            let mut conn = self.pool.acquire().await?;
            store::change_state(
                &mut conn,
                c.id,
                CampaignState::Scheduled,
                CampaignState::Running,
                "dispatcher",
            )
            .await?;
            return Ok(());
        }
        let remaining = (c.reachable - lease.cursor).max(0) as u64;
        if remaining == 0 {
            return self.maybe_complete(c, driven).await;
        }
        let rate = f64::from(pacing.rate_per_second);
        driven.tokens = (driven.tokens + rate * elapsed).min(rate.max(1.0));
        let wait = if lease.app_paused {
            Some(Wait::AppPaused)
        } else {
            pacing::time_allows(&pacing, now).err()
        };
        if let Some(wait) = wait {
            driven.tokens = 0.0;
            tracing::debug!(campaign = %c.id, ?wait, "campaign waits");
            return Ok(());
        }
        let cap_left = pacing::cap_left(
            &pacing,
            now,
            lease.cap_day,
            lease.cap_day_dispatched.max(0) as u64,
        );
        let backlog_room = (rate * self.options.backlog_seconds) as u64;
        let remaining_quota =
            pacing::remaining_quota_today(&self.pool, &self.quota, &c.app).await?;
        let mut quota_left = pacing::quota_left(&self.quota, &c.app, remaining_quota, depth);
        if quota_left < backlog_room.saturating_mul(2) {
            // Near the reserve, count exactly what this campaign has dispatched and not yet
            // finished (the lane's depth misses jobs a worker holds unacked). Counted before
            // the quota is read again, so a send recorded in between is never counted twice.
            let unfinished = self.unfinished(c.id, lease.cursor).await?;
            let remaining_quota =
                pacing::remaining_quota_today(&self.pool, &self.quota, &c.app).await?;
            quota_left = pacing::quota_left(&self.quota, &c.app, remaining_quota, unfinished);
        }
        let n = (driven.tokens.floor() as u64)
            .min(backlog_room.saturating_sub(depth))
            .min(cap_left)
            .min(quota_left)
            .min(self.options.max_chunk)
            .min(remaining);
        if n == 0 {
            return Ok(());
        }
        let published = self.publish_chunk(c, lease.cursor, n).await?;
        driven.tokens -= published as f64;
        let day = pacing::cap_day(&pacing, now);
        let moved = sqlx::query(
            "UPDATE campaigns
             SET cursor = $3 + $4,
                 cap_day_dispatched = CASE WHEN cap_day = $5 THEN cap_day_dispatched ELSE 0 END + $4,
                 cap_day = $5, updated_at = now()
             WHERE id = $1 AND lease_holder = $2 AND cursor = $3",
        )
        .bind(c.id)
        .bind(self.holder)
        .bind(lease.cursor)
        .bind(published as i64)
        .bind(day)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if moved == 0 {
            tracing::warn!(campaign = %c.id, "lost the campaign's lease; another dispatcher drives it");
        } else {
            self.published.fetch_add(published, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Publishes recipients `cursor+1 ..= cursor+n` (with confirms); returns how many.
    async fn publish_chunk(&self, c: &Campaign, cursor: i64, n: u64) -> anyhow::Result<u64> {
        let rows: Vec<RecipientRow> = sqlx::query_as(
            "SELECT send_seq, oa_openid, mp_openid, data FROM campaign_recipients
             WHERE campaign_id = $1 AND send_seq > $2 AND send_seq <= $3 ORDER BY send_seq",
        )
        .bind(c.id)
        .bind(cursor)
        .bind(cursor + n as i64)
        .fetch_all(&self.pool)
        .await?;
        anyhow::ensure!(
            rows.len() as u64 == n && rows.last().map(|r| r.send_seq) == Some(cursor + n as i64),
            "the snapshot of campaign {} has a gap after {cursor}",
            c.id
        );
        let base = JobTemplate::of(c)?;
        let jobs = rows
            .iter()
            .map(|r| {
                let to = Address::of(r.oa_openid.clone(), r.mp_openid.clone())?;
                base.job(c.id, &to, r.data.as_ref())
            })
            .collect::<anyhow::Result<Vec<Job>>>()?;
        for result in self.publisher.publish_batch(&jobs, Lane::Bulk).await {
            result?;
        }
        Ok(n)
    }

    /// Dispatched jobs of campaign `id` not in a final state yet.
    async fn unfinished(&self, id: Uuid, cursor: i64) -> anyhow::Result<u64> {
        let finished: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM deliveries WHERE campaign_id = $1 AND state = ANY($2)",
        )
        .bind(id)
        .bind(&crate::ledger::FINAL_STATES[..])
        .fetch_one(&self.pool)
        .await?;
        Ok((cursor - finished).max(0) as u64)
    }

    /// Completes a fully dispatched campaign once every recipient reached a final state
    /// (checked at most once a second).
    async fn maybe_complete(&self, c: &Campaign, driven: &mut Driven) -> anyhow::Result<()> {
        if driven
            .last_completion_check
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return Ok(());
        }
        driven.last_completion_check = Some(Instant::now());
        if self.unfinished(c.id, c.reachable).await? == 0 {
            let mut conn = self.pool.acquire().await?;
            if store::change_state(
                &mut conn,
                c.id,
                CampaignState::Running,
                CampaignState::Completed,
                "dispatcher",
            )
            .await?
            {
                tracing::info!(campaign = %c.id, "campaign completed");
            }
        }
        Ok(())
    }
}
