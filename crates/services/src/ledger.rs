//! The delivery ledger (`deliveries`, `delivery_attempts`, `dead_letters`): claim a job before
//! calling WeChat, record its outcome after, never holding a transaction or a connection across
//! the call. Each outcome is written in one transaction (one statement, or one explicit
//! transaction where several tables change), and every write can be tried again after a lost
//! reply: it recognises its own earlier commit by the claim id (or the dead letter's key), so a
//! committed write is never counted twice.
//!
//! A claim is a lease: the worker (its `workers.id`), a claim id, and until when. A second
//! delivery of a job whose claim is live is [`Admission::Busy`] (it waits in a retry tier); a
//! claim whose lease ran out, or whose worker stopped heartbeating, is taken over — and since that
//! worker may have sent before it died, the job's outcome is then uncertain from the old claim's
//! time on. `attempts` counts sends made, never claims.
//!
//! By responsibility: [`claims`] (the batched claim, look-up and reservation of subscribe
//! grants), [`sends`] (the batched record of accepted sends), [`deaths`]
//! (the batched record of deaths with their dead letters) and [`outcomes`] (retries,
//! give-backs and malformed messages, one statement each); [`outcome`]: what became of a delivery and why it died;
//! [`resolve`]: Mini Program openid -> unionid -> subscribed OA openid; [`reviews`]: held
//! messages and their verdicts; [`marks`] (cancelled, truncated), [`receipts`] (WeChat's
//! delivery receipts) and [`replay`] (a dead job's new life). No other module writes
//! `deliveries`. The states are [`state::LedgerState`], with the diagram of their changes.
//!
//! A job is known by its app and its id: two apps may use the same job id. Batched statements
//! lock rows in one order, by app and job id, so that two workers' batches (and a claim beside a
//! record of sends) never wait on each other in a circle.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::ledger::resolve::Lookup;
use wxnotify_core::batch::Batcher;

mod claims;
mod deaths;
pub mod marks;
pub mod outcome;
mod outcomes;
pub mod receipts;
pub mod replay;
pub mod resolve;
pub mod reviews;
mod sends;
pub mod state;

use claims::{ClaimRequest, claim_batch};
use deaths::{DeadRequest, DeathResult, dead_batch};
pub use outcomes::{AnsweredState, DeadJob, MalformedLetter, RetryRecord};

/// The ledger states a job never leaves by being sent again: a redelivery of its id is a
/// duplicate. `held` is one of them: WeChat delivers a held message itself if its review passes
/// (the review reconciliation then records it `sent`, or dead `content_blocked`).
pub const FINAL_STATES: [&str; 5] = ["sent", "held", "dead", "cancelled", "duplicate"];

#[cfg(test)]
mod final_states {
    #[test]
    fn are_the_final_states_of_the_enum() {
        assert_eq!(
            super::FINAL_STATES.to_vec(),
            super::state::LedgerState::final_names()
        );
    }
}
use sends::{SentRequest, sent_batch};

/// How long a claim holds a job against twins while its worker heartbeats: longer than a send
/// can take (rate-limit wait, token, HTTP timeout).
pub const CLAIM_LEASE: Duration = Duration::from_secs(120);
/// A claim whose worker has not heartbeated for this long is taken over before its lease ends.
pub const CLAIM_HEARTBEAT_LAPSE: Duration = Duration::from_secs(5);

/// A live claim on a job: what the outcome is recorded under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// This claim's id (recognises its own writes).
    pub id: Uuid,
    /// The attempt number a send now would be (sends made so far + 1, across lives).
    pub attempt: u32,
    /// The same, counted within the current life (since the last `dlq replay`); the retry policy
    /// counts these.
    pub life_attempt: u32,
    /// The job's life (1, then +1 per replay).
    pub life: i32,
    /// When the claim was taken (Postgres time).
    pub claimed_at: DateTime<Utc>,
    /// When the job's outcome first became uncertain, if it did.
    pub uncertain_since: Option<DateTime<Utc>>,
}

/// The ledger's name of the Mini Program subscribe channel (`deliveries.channel`).
pub const MP_SUBSCRIBE: &str = "mp_subscribe";
/// The ledger's name of the OA template message channel (`deliveries.channel`).
pub const OA_TEMPLATE: &str = "oa_template";

/// The subscribe grant a claim holds for its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// None: the job goes by the OA, has no subscribe message, or the person has no grant left.
    None,
    /// This claim reserved one of the person's grants; the subscribe message goes to this Mini
    /// Program openid.
    Reserved(wxnotify_core::domain::OpenId),
    /// A lapsed claim of the job held one: its subscribe send may have been made, and a subscribe
    /// message is never sent twice.
    Inherited,
}

/// What the claim of a job found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The job is ours to send; `lookup` is what Postgres knows about the recipient.
    Attempt {
        /// The claim.
        claim: Claim,
        /// The recipient look-up.
        lookup: Lookup,
        /// The subscribe grant the claim holds.
        grant: Grant,
    },
    /// Another delivery of the same job id holds a live claim: do not send; try again later.
    Busy,
    /// The job id is in a final state (sent, dead, held for review …): do not send again
    /// (counted on the row).
    Duplicate,
}

/// Whether a write of an outcome landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written now, or by this claim's earlier try whose reply was lost.
    Recorded,
    /// Another delivery of the job id finished it or took the claim over: nothing was written.
    Superseded,
}

impl Written {
    /// `Recorded` when `recorded`.
    pub fn from_recorded(recorded: bool) -> Self {
        if recorded {
            Written::Recorded
        } else {
            Written::Superseded
        }
    }
}

/// Most rows written by one batched statement.
const MAX_BATCH: usize = 256;
/// Batched statements of one kind running at once.
const BATCHES_IN_FLIGHT: usize = 4;
/// While jobs keep coming, batches of one kind start at most this often (see `Batcher::spawn`);
/// a job after a quiet spell goes at once. Under load a job waits at most this long for its
/// claim, and its outcome as long for its record (which holds back only its ack). At 2,000
/// sends/s, 20 ms rather than 5 ms (with the pacer's 5 ms tick) took a paced worker from about
/// 170 to about 120 µs of CPU per job: each statement carries 40 rows instead of 10, with a
/// quarter of the wake-ups.
const LINGER: std::time::Duration = std::time::Duration::from_millis(20);

/// Where a job is recorded. Claims, sends and deaths of concurrent deliveries are batched into
/// one statement each (see `batch.rs`); rarer writes run alone.
#[derive(Clone)]
pub struct Ledger {
    pool: PgPool,
    worker: Uuid,
    claims: Batcher<ClaimRequest, Admission>,
    sends: Batcher<SentRequest, bool>,
    deaths: Batcher<DeadRequest, DeathResult>,
}

impl Ledger {
    /// A ledger on `pool` whose claims name a worker id of their own (they lapse with their
    /// lease only). Must be called inside a tokio runtime (it spawns the batchers).
    pub fn new(pool: PgPool) -> Self {
        Ledger::for_worker(pool, Uuid::new_v4())
    }

    /// A ledger whose claims name `worker`, the id this process heartbeats under in `workers`:
    /// its claims are taken over as soon as its heartbeat lapses.
    pub fn for_worker(pool: PgPool, worker: Uuid) -> Self {
        let claims = Batcher::spawn("ledger_claims", MAX_BATCH, BATCHES_IN_FLIGHT, LINGER, {
            let pool = pool.clone();
            move |reqs| claim_batch(pool.clone(), worker, reqs)
        });
        let sends = Batcher::spawn("ledger_sends", MAX_BATCH, BATCHES_IN_FLIGHT, LINGER, {
            let pool = pool.clone();
            move |reqs| sent_batch(pool.clone(), reqs)
        });
        let deaths = Batcher::spawn("ledger_deaths", MAX_BATCH, BATCHES_IN_FLIGHT, LINGER, {
            let pool = pool.clone();
            move |reqs| dead_batch(pool.clone(), reqs)
        });
        Ledger {
            pool,
            worker,
            claims,
            sends,
            deaths,
        }
    }

    /// The pool, for callers that share it.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The worker id claims are taken under.
    pub fn worker(&self) -> Uuid {
        self.worker
    }
}

/// A job's key in the ledger: its app, then its id.
type JobKey<'a> = (&'a str, &'a str);

/// What a ledger row is created with, beside its state: the job's id and app, its recipient,
/// template, campaign and lane. The batched statements that may create a row (the claim, a
/// death) take these as their first seven arrays, `$1` to `$7`, in this order.
#[derive(Debug, Clone)]
struct NewRow {
    job_id: String,
    app: String,
    kind: &'static str,
    recipient: String,
    template_id: String,
    campaign_id: Option<Uuid>,
    lane: &'static str,
}

impl NewRow {
    fn of(job: &wxnotify_core::domain::Job, lane: wxnotify_core::queue::Lane) -> NewRow {
        NewRow {
            job_id: job.id.as_str().to_owned(),
            app: job.app.as_str().to_owned(),
            kind: job.to.kind(),
            recipient: job.to.value().to_owned(),
            template_id: job.ledger_template().to_owned(),
            campaign_id: job.campaign_id,
            lane: lane.routing_key(),
        }
    }

    /// The key the row is locked and found by.
    fn key(&self) -> JobKey<'_> {
        (&self.app, &self.job_id)
    }

    /// Binds `rows` as `$1` to `$7`: job ids, apps, recipient kinds, recipients, templates,
    /// campaigns, lanes.
    fn bind_all<'q, O>(
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
        rows: &[&'q NewRow],
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        let col = |f: fn(&'q NewRow) -> &'q str| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
        query
            .bind(col(|r| &r.job_id))
            .bind(col(|r| &r.app))
            .bind(col(|r| r.kind))
            .bind(col(|r| &r.recipient))
            .bind(col(|r| &r.template_id))
            .bind(rows.iter().map(|r| r.campaign_id).collect::<Vec<_>>())
            .bind(col(|r| r.lane))
    }
}

/// Splits requests into rounds in which no job (app and id) appears twice (one statement cannot
/// claim the same row twice), keeping each request's position.
fn rounds<T>(reqs: Vec<T>, key: impl Fn(&T) -> JobKey<'_>) -> Vec<Vec<(usize, T)>> {
    /// The jobs of a round, and its requests with their positions.
    type Round<T> = (HashSet<(String, String)>, Vec<(usize, T)>);
    let mut rounds: Vec<Round<T>> = Vec::new();
    for (i, req) in reqs.into_iter().enumerate() {
        let (app, id) = key(&req);
        let k = (app.to_owned(), id.to_owned());
        match rounds.iter_mut().find(|(seen, _)| !seen.contains(&k)) {
            Some((seen, round)) => {
                seen.insert(k);
                round.push((i, req));
            }
            None => rounds.push((HashSet::from([k]), vec![(i, req)])),
        }
    }
    // In (app, job id) order: the order in which every batched statement locks its rows.
    rounds
        .into_iter()
        .map(|(_, mut round)| {
            round.sort_by(|(_, a), (_, b)| key(a).cmp(&key(b)));
            round
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_never_repeat_a_job_id() {
        let r = rounds(vec!["a", "b", "a", "c", "a"], |s| ("shop", s));
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 3]);
        assert_eq!(r[1].iter().map(|(i, _)| *i).collect::<Vec<_>>(), [2]);
        // Each round in job-id order.
        let r = rounds(vec!["c", "a", "b", "a"], |s| ("shop", s));
        assert_eq!(
            r[0].iter().map(|(_, s)| *s).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(r[0].iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 2, 0]);
    }

    #[test]
    fn one_id_in_two_apps_is_two_jobs() {
        let r = rounds(vec![("b", "x"), ("a", "x"), ("a", "x")], |&(app, id)| {
            (app, id)
        });
        assert_eq!(r.len(), 2);
        // By app, then id.
        assert_eq!(
            r[0].iter().map(|(_, k)| *k).collect::<Vec<_>>(),
            [("a", "x"), ("b", "x")]
        );
    }
}
