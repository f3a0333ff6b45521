//! The worker's checks of a campaign job: a job of a paused campaign waits, a job of a
//! cancelled campaign is recorded `cancelled` and not sent. Campaign states are cached for a
//! fraction of a second, so a pause or cancel acts within about a second while the check costs
//! no statement per job.
//!
//! Pausing is cheap: the dispatcher stops feeding the lane, and the jobs already on it (about
//! ten seconds of sending) are seen paused *before* their claim ([`is_paused`]): each waits
//! [`PAUSED_JOB_WAIT`] in a retry tier, with no ledger write, no attempt and no rate permit
//! spent, and is looked at again after it. A pause that comes while a claimed job waits for
//! its permit is caught by [`before_send`] (the claim is released, no attempt spent).

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use sqlx::PgPool;
use uuid::Uuid;

use wxnotify_core::domain::Job;
use wxnotify_services::campaigns::model::CampaignState;
use wxnotify_services::ledger::outcome::{Failure, Outcome};

/// How long a campaign's state is trusted before it is read again.
const FRESH: Duration = Duration::from_millis(500);
/// How long a job of a paused campaign waits before it is looked at again, by default
/// (`RetryPolicy::campaign_paused_wait`). Long, so a long pause costs one requeue per job on
/// the lane every half minute; a resumed campaign's waiting jobs are sent within it (the
/// dispatcher goes on with the next ones at once).
pub const PAUSED_JOB_WAIT: Duration = Duration::from_secs(30);

/// Campaign id → (state, when it was read). Campaign ids are UUIDs, unique across databases, so
/// one cache serves every pipeline of the process.
static STATES: LazyLock<DashMap<Uuid, (Option<CampaignState>, Instant)>> =
    LazyLock::new(DashMap::new);

/// Whether `job` belongs to a paused campaign (checked before the claim: such a job waits
/// without touching the ledger).
pub async fn is_paused(pool: &PgPool, job: &Job) -> bool {
    match job.campaign_id {
        Some(id) => state(pool, id).await == Some(CampaignState::Paused),
        None => false,
    }
}

/// Decides whether the claimed `job` may be sent now. `None`: go on and send. `Some(outcome)`:
/// settle the job with that outcome instead (a paused campaign's job waits `paused_wait`; a
/// cancelled job's ledger row is already `cancelled`).
pub async fn before_send(pool: &PgPool, job: &Job, paused_wait: Duration) -> Option<Outcome> {
    let id = job.campaign_id?;
    match state(pool, id).await? {
        CampaignState::Paused => Some(Outcome::Paused {
            delay: paused_wait,
            failure: Failure::local(format!("campaign {id} is paused")),
        }),
        CampaignState::Cancelled => {
            match wxnotify_services::ledger::marks::record_cancelled(pool, job).await {
                Ok(()) => Some(Outcome::Cancelled),
                Err(e) => {
                    // Not recorded: keep the job waiting rather than send it.
                    tracing::warn!(error = %e, job_id = %job.id, "could not record a cancelled campaign job");
                    Some(Outcome::Paused {
                        delay: Duration::from_secs(1),
                        failure: Failure::local(format!("campaign {id} is cancelled")),
                    })
                }
            }
        }
        _ => None,
    }
}

/// The campaign's state, from the cache when fresh. `None` for an unknown campaign (sent as any
/// job) or when Postgres cannot tell (then the pipeline goes on; its own writes will wait).
async fn state(pool: &PgPool, id: Uuid) -> Option<CampaignState> {
    if let Some(entry) = STATES.get(&id)
        && entry.1.elapsed() < FRESH
    {
        return entry.0;
    }
    let read: Result<Option<String>, sqlx::Error> =
        sqlx::query_scalar("SELECT state FROM campaigns WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await;
    match read {
        Ok(state) => {
            let state = state.as_deref().and_then(CampaignState::parse);
            STATES.insert(id, (state, Instant::now()));
            state
        }
        Err(e) => {
            tracing::warn!(error = %e, campaign = %id, "could not read the campaign's state");
            STATES.get(&id).and_then(|e| e.0)
        }
    }
}
