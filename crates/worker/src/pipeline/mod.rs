//! The pipeline of one delivery, without the broker: decode and validate, claim in the ledger,
//! expire, choose the channel (`route.rs`: the OA's template message, or the Mini Program's
//! subscribe message with the grant the claim reserved), wait for the app's rate limit, take a
//! token, send, and classify the answer into one typed [`Decision`]. [`Pipeline::settle`] (`settle.rs`) then records it;
//! the consumer (`consumer.rs`) acks, or publishes the retry and acks.
//!
//! Database errors are returned, not turned into outcomes: the consumer keeps the message
//! unacked and tries again once Postgres answers, so an outage neither loses nor dead-letters a
//! job.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod decision;
mod route;

use self::decision::malformed;
pub use self::decision::{Attempt, BrokerDead, Decision, Malformed, message_key};
use self::route::{Route, route};
use super::pause::Pauses;
use super::rate_limit::Limits;
use super::retry::RetryPolicy;
use super::stats::WorkerStats;
use wxnotify_core::batch::DbError;
use wxnotify_core::domain::{AppName, Job, OpenId};
use wxnotify_core::queue::Lane;
use wxnotify_core::wechat::client::{SubscribeMessage, TemplateMessage};
use wxnotify_core::wechat::errcode::{self, ErrClass};
use wxnotify_core::wechat::{TokenError, TokenStore, WechatClient};
use wxnotify_services::app_pause::{self, Suspension};
use wxnotify_services::ledger::outcome::{DeadReason, Failure, Outcome, dead_reason_for};
use wxnotify_services::ledger::resolve::Lookup;
use wxnotify_services::ledger::{Admission, Claim, Grant, Ledger};

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
    /// Template catalog, quota and review verdicts: checked before each send, kept fresh by
    /// the worker's upkeep task.
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
        upkeep: crate::upkeep::UpkeepOptions,
    ) -> Self {
        let rules = Arc::new(crate::upkeep::Rules::new(
            ledger.pool().clone(),
            tokens.clone(),
            client.clone(),
            apps.iter().cloned().collect(),
            upkeep,
        ));
        Pipeline {
            ledger,
            tokens,
            client,
            limits,
            apps,
            retry,
            stats: Arc::new(WorkerStats::default()),
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
        // A paused campaign's job waits before it is claimed: pausing costs no ledger writes
        // and no rate permits.
        if crate::gate::is_paused(self.ledger.pool(), &job).await {
            return Ok(Decision::CampaignPaused { job, lane });
        }
        // So does a job of a paused app, unless it is the one let through to probe a suspended
        // app.
        let probe = match self.app_gate(&job.app).await {
            AppGate::Open => false,
            AppGate::Probe => true,
            AppGate::Wait { delay, failure, .. } => {
                return Ok(Decision::AppPaused {
                    job,
                    lane,
                    delay,
                    failure,
                });
            }
        };
        let (claim, lookup, grant) = match self.ledger.claim(&job, lane).await? {
            Admission::Duplicate => return Ok(Decision::Duplicate { job }),
            Admission::Busy => return Ok(Decision::Busy { job, lane }),
            Admission::Attempt {
                claim,
                lookup,
                grant,
            } => (claim, lookup, grant),
        };
        Ok(Decision::Attempted(
            self.attempt(job, lane, claim, (lookup, grant), probe).await,
        ))
    }

    /// Whether a job of `app` may go on now: a timed pause (45009, by hand) makes it wait until
    /// the pause ends; a suspension (WeChat refuses the account) makes it wait a probe interval,
    /// except for the one job per [`app_pause::PROBE_EVERY`] (across all workers) that probes
    /// the app.
    async fn app_gate(&self, app: &AppName) -> AppGate {
        let gate = self.app_gate_now(app, false);
        let AppGate::Wait {
            suspension: Some(suspension),
            ..
        } = &gate
        else {
            return gate;
        };
        if self.pauses.probe_due(app) {
            match app_pause::claim_probe(
                self.ledger.pool(),
                app.as_str(),
                self.retry.suspended_wait,
            )
            .await
            {
                Ok(true) => {
                    tracing::info!(app = %app, errcode = suspension.errcode,
                        "probing a suspended app with one of its waiting jobs");
                    return AppGate::Probe;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(app = %app, error = %e, "could not claim a probe of a suspended app")
                }
            }
        }
        gate
    }

    /// Everything after the claim. Nothing here touches Postgres before the send, and nothing
    /// after the send may fail, so a decision is never taken twice for one send. A grant the
    /// claim reserved and no send used is given back by the ledger when the outcome is
    /// recorded.
    async fn attempt(
        &self,
        job: Job,
        lane: Lane,
        claim: Claim,
        (lookup, grant): (Lookup, Grant),
        probe: bool,
    ) -> Attempt {
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
        let channel = match route(&job, lookup, grant, claim.uncertain_since) {
            Route::Dead(outcome) => return unsent(job, outcome, None),
            channel => channel,
        };
        if let Some(since) = claim.uncertain_since
            && !self.retry.may_resend(since, Duration::ZERO)
        {
            return unsent(job, outcome_unknown(since), None);
        }
        let limiter = self
            .limits
            .app(&job.app)
            .expect("every configured app has a limiter");
        // Looked at again after the claim: a pause may have come meanwhile.
        if let AppGate::Wait { delay, failure, .. } = self.app_gate_now(&job.app, probe) {
            let outcome =
                self.unless_window_closes(&claim, false, Outcome::Paused { delay, failure });
            return unsent(job, outcome, None);
        }
        // The template check before the send: of an OA template message (with an asked-for
        // truncation, recorded), or of a subscribe message.
        let checked = match channel {
            Route::Oa(_) => self.rules.before_send(&job).await,
            _ => self
                .rules
                .before_subscribe_send(&job)
                .map(|()| None)
                .map_err(crate::upkeep::Stop::Refused),
        };
        let job = match checked {
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
        // Campaign jobs: a paused campaign's job waits, a cancelled one's is not sent.
        // Checked again after the permit: a pause may have come while the job waited for it.
        let paused_wait = self.retry.campaign_paused_wait;
        if let Some(held) = crate::gate::before_send(self.ledger.pool(), &job, paused_wait).await {
            return unsent(job, held, None);
        }
        let started = Instant::now();
        let result = match &channel {
            Route::Oa(openid) => self.send(&job, openid).await.map(Some),
            Route::Mp(mp_openid) => self.send_subscribe(&job, mp_openid).await,
            Route::Dead(_) => unreachable!("a dead route returned above"),
        };
        self.stats.record_send_latency(started.elapsed());
        let uncertain =
            matches!(&result, Err(TokenError::Wechat(e)) if e.may_have_been_delivered());
        if probe
            && answered_normally(&result)
            && let Err(e) = self
                .limits
                .lift_suspension(self.ledger.pool(), &job.app)
                .await
        {
            tracing::warn!(app = %job.app, error = %e, "could not share the end of a suspension through Postgres");
        }
        let (outcome, oa_openid) = match channel {
            Route::Oa(openid) => (
                self.classify(&job, &claim, uncertain, result, Channel::Oa)
                    .await,
                Some(openid),
            ),
            _ => (
                self.classify_subscribe(&job, &claim, uncertain, result)
                    .await,
                None,
            ),
        };
        // A 45009 or account-level answer is not an attempt: WeChat did not take the message.
        let sent = !matches!(outcome, Outcome::Paused { .. });
        Attempt {
            job,
            lane,
            claim,
            outcome,
            oa_openid,
            sent,
            uncertain,
        }
    }

    /// The app's pause as this worker knows it, without claiming a probe: the job that is the
    /// probe (`probe`) goes on; any other waits. Also the pause check after the claim (a pause
    /// may have come meanwhile). An app this worker does not know is open (the attempt says it
    /// is unknown).
    fn app_gate_now(&self, app: &AppName, probe: bool) -> AppGate {
        let Some(limiter) = self.limits.app(app) else {
            return AppGate::Open;
        };
        if let Some(delay) = limiter.paused_for().max(self.pauses.paused_for(app)) {
            let failure = Failure::local(format!(
                "the app is paused for {}s (WeChat's daily quota is used up, or an operator paused it)",
                delay.as_secs()
            ));
            return AppGate::Wait {
                delay,
                failure,
                suspension: None,
            };
        }
        match limiter.suspension() {
            Some(s) if !probe => AppGate::Wait {
                delay: self.retry.suspended_wait,
                failure: Failure {
                    errcode: Some(s.errcode),
                    message: s.describe(),
                },
                suspension: Some(s),
            },
            _ => AppGate::Open,
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
        let (template_id, data) = job
            .oa_message()
            .expect("the OA route is only chosen for a job with an OA template message");
        let msg = TemplateMessage {
            touser: openid,
            template_id,
            data,
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

    /// Sends the job's subscribe message with the Mini Program's token.
    async fn send_subscribe(
        &self,
        job: &Job,
        mp_openid: &OpenId,
    ) -> Result<Option<i64>, TokenError> {
        let sub = job
            .mp_subscribe
            .as_ref()
            .expect("the subscribe route is only chosen for a job with mp_subscribe");
        let msg = SubscribeMessage {
            touser: mp_openid,
            template_id: &sub.template_id,
            data: &sub.data,
            page: sub.page.as_deref(),
            miniprogram_state: sub.miniprogram_state,
        };
        self.tokens
            .mini_programs()
            .with_token(&job.app, |token| {
                let client = &self.client;
                let msg = &msg;
                async move { client.send_subscribe(&token, msg).await }
            })
            .await
    }

    /// WeChat's answer to a subscribe send, as an outcome. A lost answer is never resent
    /// (WeChat does not de-duplicate subscribe messages): `outcome_unknown` at once, its grant
    /// stays used. 43101 (WeChat holds no grant): `no_channel`, and the ledger writes off the
    /// person's count. Every other answer is classified like a template send's.
    async fn classify_subscribe(
        &self,
        job: &Job,
        claim: &Claim,
        uncertain: bool,
        result: Result<Option<i64>, TokenError>,
    ) -> Outcome {
        match &result {
            _ if uncertain => return route::subscribe_outcome_unknown(claim.claimed_at),
            Err(TokenError::Wechat(e)) if e.errcode() == Some(errcode::SUBSCRIBE_NO_GRANT) => {
                return route::no_grant_at_wechat(Failure::from(e));
            }
            _ => {}
        }
        self.classify(job, claim, false, result, Channel::Subscribe)
            .await
    }

    /// Turns WeChat's answer into the outcome: the one place where answers become actions.
    async fn classify(
        &self,
        job: &Job,
        claim: &Claim,
        uncertain: bool,
        result: Result<Option<i64>, TokenError>,
        channel: Channel,
    ) -> Outcome {
        let err = match result {
            Ok(msgid) => return Outcome::Sent { msgid },
            Err(err) => err,
        };
        let mut failure = match &err {
            TokenError::Wechat(e) => Failure::from(e),
            other => Failure::local(other.to_string()),
        };
        // The rules may act otherwise than the answer's class says (40037: see `observe`). They
        // know the OA's template catalog: a subscribe template's answer is taken as it is.
        let class = match channel {
            Channel::Oa => {
                self.rules
                    .observe(job, claim.life, err.class(), &mut failure)
                    .await
            }
            Channel::Subscribe => err.class(),
        };
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
            ErrClass::AccountBlocked => {
                let suspension = Suspension {
                    errcode: failure.errcode.unwrap_or_default(),
                    errmsg: failure.message.clone(),
                    endpoint: err.endpoint().map(str::to_owned),
                    since: chrono::Utc::now(),
                };
                let failure = Failure {
                    errcode: failure.errcode,
                    message: suspension.describe(),
                };
                // Best effort, like the quota pause: this process suspends the app regardless.
                if let Err(e) = self
                    .limits
                    .suspend(self.ledger.pool(), &job.app, suspension)
                    .await
                {
                    tracing::warn!(error = %e, app = %job.app, "could not share the suspension through Postgres");
                }
                self.unless_window_closes(
                    claim,
                    uncertain,
                    Outcome::Paused {
                        delay: self.retry.suspended_wait,
                        failure,
                    },
                )
            }
            ErrClass::HeldForReview => Outcome::HeldForReview { failure },
            ErrClass::RepeatedContent => Outcome::RepeatedContent { failure },
            ErrClass::Permanent(kind) => Outcome::dead(dead_reason_for(kind), failure),
        }
    }
}

/// Which message an answer is to.
#[derive(Debug, Clone, Copy)]
enum Channel {
    /// The OA's template message.
    Oa,
    /// The Mini Program's subscribe message.
    Subscribe,
}

/// What the app's pause state means for one job.
enum AppGate {
    /// Send.
    Open,
    /// Send: this job probes a suspended app.
    Probe,
    /// Wait `delay` without an attempt.
    Wait {
        delay: Duration,
        failure: Failure,
        /// Set when WeChat refuses the app (else a timed pause).
        suspension: Option<Suspension>,
    },
}

/// Whether WeChat's answer shows that it serves the app again: any answer but a transport
/// failure, a token to refresh, a transient errcode or an account-level refusal.
fn answered_normally<T>(result: &Result<T, TokenError>) -> bool {
    match result {
        Ok(_) => true,
        Err(TokenError::Wechat(e)) => {
            e.errcode().is_some()
                && !matches!(
                    e.class(),
                    ErrClass::AccountBlocked | ErrClass::Transient | ErrClass::TokenInvalid
                )
        }
        Err(_) => false,
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
