//! The pipeline of one delivery, without the broker: decode and validate, claim in the ledger,
//! expire, resolve the recipient, wait for the app's rate limit, take a token, send, and classify
//! the answer into one typed [`Decision`]. [`Pipeline::settle`] (`settle.rs`) then records it;
//! the consumer (`consumer.rs`) acks, or publishes the retry and acks.
//!
//! Database errors are returned, not turned into outcomes: the consumer keeps the message
//! unacked and tries again once Postgres answers, so an outage neither loses nor dead-letters a
//! job.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod decision;

use self::decision::malformed;
pub use self::decision::{Attempt, BrokerDead, Decision, Malformed, message_key};
use super::ledger::{Admission, Claim, Ledger};
use super::outcome::{DeadReason, Failure, Outcome, dead_reason_for};
use super::pause::Pauses;
use super::rate_limit::Limits;
use super::resolve::{Lookup, Resolved, decide};
use super::retry::RetryPolicy;
use super::stats::WorkerStats;
use crate::batch::DbError;
use crate::domain::{AppName, Job, OpenId};
use crate::queue::Lane;
use crate::wechat::client::TemplateMessage;
use crate::wechat::errcode::{self, ErrClass};
use crate::wechat::{TokenError, TokenStore, WechatClient};

/// Everything a delivery needs; shared by all tasks of a worker.
pub struct Pipeline {
    ledger: Ledger,
    tokens: TokenStore,
    client: WechatClient,
    limits: Arc<Limits>,
    apps: HashSet<AppName>,
    retry: RetryPolicy,
    stats: Arc<WorkerStats>,
    pauses: Pauses,
    /// Template catalog, quota and blocked messages (issue 14): checked before each send.
    rules: Arc<crate::upkeep::Rules>,
}

impl Pipeline {
    /// Assembles a pipeline.
    pub fn new(
        ledger: Ledger,
        tokens: TokenStore,
        client: WechatClient,
        limits: Arc<Limits>,
        apps: HashSet<AppName>,
        retry: RetryPolicy,
        stats: Arc<WorkerStats>,
    ) -> Self {
        let rules = Arc::new(crate::upkeep::Rules::new(
            ledger.pool().clone(),
            tokens.clone(),
            client.clone(),
            apps.iter().cloned().collect(),
            crate::upkeep::UpkeepOptions::default(),
        ));
        Pipeline {
            ledger,
            tokens,
            client,
            limits,
            apps,
            retry,
            stats,
            pauses: Pauses::default(),
            rules,
        }
    }

    /// The retry policy.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The template catalog, quota and blocked-message upkeep (run by the worker).
    pub fn rules(&self) -> &Arc<crate::upkeep::Rules> {
        &self.rules
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.stats
    }

    /// The rate limits (shared with the heartbeat task).
    pub fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Runs every step up to the decision. Only database errors are errors.
    /// `message_id` is the AMQP property, used as the job id when the body has none.
    pub async fn decide(
        &self,
        lane: Lane,
        body: &[u8],
        message_id: Option<&str>,
    ) -> Result<Decision, DbError> {
        let job = match Job::from_json_with_fallback_id(body, message_id) {
            Ok(job) => job,
            Err(e) => {
                return Ok(Decision::Malformed(malformed(
                    body,
                    message_id,
                    e.to_string(),
                )));
            }
        };
        // A paused campaign's job waits before it is claimed (issue 8): pausing costs no
        // ledger writes and no rate permits.
        if crate::campaigns::gate::is_paused(self.ledger.pool(), &job).await {
            return Ok(Decision::CampaignPaused { job, lane });
        }
        let (claim, lookup) = match self.ledger.claim(&job, lane).await? {
            Admission::Duplicate => return Ok(Decision::Duplicate { job }),
            Admission::Held => return Ok(Decision::Held { job, lane }),
            Admission::Attempt { claim, lookup } => (claim, lookup),
        };
        Ok(Decision::Attempted(
            self.attempt(job, lane, claim, lookup).await,
        ))
    }

    /// Everything after the claim. Nothing here touches Postgres before the send, and nothing
    /// after the send may fail, so a decision is never taken twice for one send.
    async fn attempt(&self, job: Job, lane: Lane, claim: Claim, lookup: Lookup) -> Attempt {
        let unsent = |job, outcome, oa_openid| Attempt {
            job,
            lane,
            claim: claim.clone(),
            outcome,
            oa_openid,
            sent: false,
            uncertain: false,
        };
        let dead = |reason, why: String| Outcome::dead(reason, Failure::local(why));
        if !self.apps.contains(&job.app) {
            let why = format!("app {} is not configured in this worker", job.app);
            return unsent(job, dead(DeadReason::UnknownApp, why), None);
        }
        if let Some(not_after) = job.not_after
            && chrono::Utc::now() > not_after
        {
            let why = format!("not_after {not_after} has passed");
            return unsent(job, dead(DeadReason::Expired, why), None);
        }
        if let Some(since) = claim.uncertain_since
            && !self.retry.may_resend(since, Duration::ZERO)
        {
            return unsent(job, outcome_unknown(since), None);
        }
        let openid = match decide(&job.to, lookup) {
            Resolved::Follower(openid) => openid,
            Resolved::Unreachable(reason, why) => return unsent(job, dead(reason, why), None),
        };
        let limiter = self
            .limits
            .app(&job.app)
            .expect("every configured app has a limiter");
        if let Some(delay) = limiter.paused_for().max(self.pauses.paused_for(&job.app)) {
            let failure =
                Failure::local("the app is paused: WeChat's daily quota is used up (45009)");
            let outcome =
                self.unless_window_closes(&claim, false, Outcome::Paused { delay, failure });
            return unsent(job, outcome, None);
        }
        // The template check (and an asked-for truncation, recorded) before the send.
        let job = match self.rules.before_send(&job).await {
            Ok(Some(truncated)) => truncated,
            Ok(None) => job,
            Err(crate::upkeep::Stop::Refused(refusal)) => {
                let outcome = dead(DeadReason::PayloadRejected, refusal.to_string());
                return unsent(job, outcome, None);
            }
            Err(unrecorded) => {
                // The truncation could not be recorded: never send what the ledger does not say.
                let failure = Failure::local(unrecorded.to_string());
                let outcome = match self.retry.next_delay(claim.life_attempt, Duration::ZERO) {
                    Some(delay) => {
                        self.unless_window_closes(&claim, false, Outcome::Retry { delay, failure })
                    }
                    None => Outcome::dead(DeadReason::RetriesExhausted, failure),
                };
                return unsent(job, outcome, None);
            }
        };
        limiter.acquire(lane).await;
        // Campaign jobs: a paused campaign's job waits, a cancelled one's is not sent (issue 8).
        // Checked again after the permit: a pause may have come while the job waited for it.
        let paused_wait = self.retry.campaign_paused_wait;
        if let Some(held) =
            crate::campaigns::gate::before_send(self.ledger.pool(), &job, paused_wait).await
        {
            return unsent(job, held, None);
        }
        let started = Instant::now();
        let result = self.send(&job, &openid).await;
        self.stats.record_send_latency(started.elapsed());
        let uncertain =
            matches!(&result, Err(TokenError::Wechat(e)) if e.may_have_been_delivered());
        let outcome = self.classify(&job, &claim, uncertain, result).await;
        // A 45009 answer is not an attempt: WeChat did not take the message.
        let sent = !matches!(outcome, Outcome::Paused { .. });
        Attempt {
            job,
            lane,
            claim,
            outcome,
            oa_openid: Some(openid),
            sent,
            uncertain,
        }
    }

    /// `outcome` if the job may still be sent again after its delay, else dead
    /// `outcome_unknown`: an uncertain send is resent only while WeChat's `client_msg_id`
    /// window (with a margin) is open.
    fn unless_window_closes(
        &self,
        claim: &Claim,
        uncertain_now: bool,
        outcome: Outcome,
    ) -> Outcome {
        let delay = match &outcome {
            Outcome::Retry { delay, .. } | Outcome::Paused { delay, .. } => *delay,
            _ => return outcome,
        };
        let since = claim
            .uncertain_since
            .or(uncertain_now.then_some(claim.claimed_at));
        match since {
            Some(since) if !self.retry.may_resend(since, delay) => outcome_unknown(since),
            _ => outcome,
        }
    }

    async fn send(&self, job: &Job, openid: &OpenId) -> Result<i64, TokenError> {
        let msg = TemplateMessage {
            touser: openid,
            template_id: &job.template_id,
            data: &job.data,
            url: job.url.as_ref(),
            miniprogram: job.miniprogram.as_ref(),
            client_msg_id: Some(job.id.as_str()),
        };
        self.tokens
            .with_token(&job.app, |token| {
                let client = &self.client;
                let msg = &msg;
                async move { client.send_template(&token, msg).await }
            })
            .await
    }

    /// Turns WeChat's answer into the outcome: the one place where answers become actions.
    async fn classify(
        &self,
        job: &Job,
        claim: &Claim,
        uncertain: bool,
        result: Result<i64, TokenError>,
    ) -> Outcome {
        let err = match result {
            Ok(msgid) => return Outcome::Sent { msgid },
            Err(err) => err,
        };
        let mut failure = match &err {
            TokenError::Wechat(e) => Failure::from(e),
            other => Failure::local(other.to_string()),
        };
        // The rules may act otherwise than the answer's class says (40037: see `observe`).
        let class = self
            .rules
            .observe(job, claim.life, err.class(), &mut failure)
            .await;
        match class {
            ErrClass::Ok | ErrClass::TokenInvalid | ErrClass::Transient => {
                let floor = failure
                    .errcode
                    .map(errcode::retry_floor)
                    .unwrap_or_default();
                match self.retry.next_delay(claim.life_attempt, floor) {
                    Some(delay) => self.unless_window_closes(
                        claim,
                        uncertain,
                        Outcome::Retry { delay, failure },
                    ),
                    None => Outcome::dead(DeadReason::RetriesExhausted, failure),
                }
            }
            ErrClass::QuotaExhausted => {
                let pause = self.retry.quota_pause;
                // Nothing after the send may fail the decision (that would send again): the
                // pause is shared on a best-effort basis; this process pauses regardless, and
                // its own record of the pause outlives a heartbeat that reads no pause back.
                self.pauses.pause(&job.app, pause);
                if let Err(e) = self
                    .limits
                    .pause(self.ledger.pool(), &job.app, pause, &failure.message)
                    .await
                {
                    tracing::warn!(error = %e, app = %job.app, "could not share the quota pause through Postgres");
                }
                self.unless_window_closes(
                    claim,
                    uncertain,
                    Outcome::Paused {
                        delay: pause,
                        failure,
                    },
                )
            }
            ErrClass::Permanent(kind) => Outcome::dead(dead_reason_for(kind), failure),
        }
    }
}

/// The dead outcome of a job whose send may have reached the person and whose resend window
/// has closed.
fn outcome_unknown(since: chrono::DateTime<chrono::Utc>) -> Outcome {
    Outcome::dead(
        DeadReason::OutcomeUnknown,
        Failure::local(format!(
            "a send since {since} may have reached the person (no answer came) and WeChat's \
             client_msg_id window has closed: not sent again; check before replaying"
        )),
    )
}

/// How long a held message waits before the pipeline tries Postgres again.
pub const DB_RETRY: Duration = Duration::from_millis(500);
