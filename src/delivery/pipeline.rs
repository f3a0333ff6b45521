//! The pipeline of one delivery, without the broker: decode and validate, claim in the ledger,
//! expire, resolve the recipient, wait for the app's rate limit, take a token, send, classify the
//! answer into one [`Outcome`], and record it. The consumer (`consumer.rs`) then acks, or
//! publishes the retry and acks.
//!
//! Database errors are returned, not turned into outcomes: the consumer keeps the message
//! unacked and tries again once Postgres answers, so an outage neither loses nor dead-letters a
//! job.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::batch::DbError;
use super::ledger::{Admission, DeadLetter, Ledger};
use super::outcome::{DeadReason, Failure, Outcome, dead_reason_for};
use super::rate_limit::Limits;
use super::resolve::{Lookup, Resolved, decide};
use super::retry::RetryPolicy;
use super::stats::WorkerStats;
use crate::domain::{AppName, Job, OpenId};
use crate::queue::Lane;
use crate::wechat::client::TemplateMessage;
use crate::wechat::errcode::{self, ErrClass};
use crate::wechat::{TokenError, TokenStore, WechatClient};

/// How much of a malformed message's bytes are kept in its dead letter.
const MAX_RAW_KEPT: usize = 4096;

/// What the pipeline decided for one message.
#[derive(Debug)]
pub struct Decision {
    /// The job, when the message was one.
    pub job: Option<Job>,
    /// The attempt this was (0 when nothing was claimed).
    pub attempt: u32,
    /// The outcome.
    pub outcome: Outcome,
    /// Where it was (or would have been) sent.
    pub oa_openid: Option<OpenId>,
    /// The lane it came from.
    pub lane: Lane,
}

/// Everything a delivery needs; shared by all tasks of a worker.
pub struct Pipeline {
    ledger: Ledger,
    tokens: TokenStore,
    client: WechatClient,
    limits: Arc<Limits>,
    apps: HashSet<AppName>,
    retry: RetryPolicy,
    stats: Arc<WorkerStats>,
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
        Pipeline {
            ledger,
            tokens,
            client,
            limits,
            apps,
            retry,
            stats,
        }
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

    /// Runs every step up to the outcome. Only database errors are errors.
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
                let outcome = Outcome::dead(DeadReason::Malformed, Failure::local(e.to_string()));
                return Ok(Decision {
                    job: None,
                    attempt: 0,
                    outcome,
                    oa_openid: None,
                    lane,
                });
            }
        };
        let (attempt, lookup) = match self.ledger.claim(&job, lane).await? {
            Admission::Duplicate => {
                let outcome = Outcome::Duplicate;
                return Ok(Decision {
                    job: Some(job),
                    attempt: 0,
                    outcome,
                    oa_openid: None,
                    lane,
                });
            }
            Admission::Attempt { attempt, lookup } => (attempt, lookup),
        };
        let (outcome, oa_openid) = self.attempt(&job, lane, attempt, lookup).await;
        Ok(Decision {
            job: Some(job),
            attempt,
            outcome,
            oa_openid,
            lane,
        })
    }

    /// Everything after the claim. Nothing here touches Postgres before the send, and nothing
    /// after the send may fail, so a decision is never taken twice for one send.
    async fn attempt(
        &self,
        job: &Job,
        lane: Lane,
        attempt: u32,
        lookup: Lookup,
    ) -> (Outcome, Option<OpenId>) {
        let dead = |reason, why: String| (Outcome::dead(reason, Failure::local(why)), None);
        if !self.apps.contains(&job.app) {
            return dead(
                DeadReason::UnknownApp,
                format!("app {} is not configured in this worker", job.app),
            );
        }
        if let Some(not_after) = job.not_after
            && chrono::Utc::now() > not_after
        {
            return dead(
                DeadReason::Expired,
                format!("not_after {not_after} has passed"),
            );
        }
        let openid = match decide(&job.to, lookup) {
            Resolved::Follower(openid) => openid,
            Resolved::Unreachable(reason, why) => return dead(reason, why),
        };
        let limiter = self
            .limits
            .app(&job.app)
            .expect("every configured app has a limiter");
        if let Some(delay) = limiter.paused_for() {
            let failure =
                Failure::local("the app is paused: WeChat's daily quota is used up (45009)");
            return (Outcome::Paused { delay, failure }, None);
        }
        limiter.acquire(lane).await;
        // Campaign jobs: a paused campaign's job waits, a cancelled one's is not sent (issue 8).
        if let Some(held) = crate::campaigns::gate::before_send(self.ledger.pool(), job).await {
            return (held, None);
        }
        let started = Instant::now();
        let result = self.send(job, &openid).await;
        self.stats.record_send_latency(started.elapsed());
        let outcome = self.classify(job, attempt, result).await;
        (outcome, Some(openid))
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
    async fn classify(&self, job: &Job, attempt: u32, result: Result<i64, TokenError>) -> Outcome {
        let err = match result {
            Ok(msgid) => return Outcome::Sent { msgid },
            Err(err) => err,
        };
        let failure = match &err {
            TokenError::Wechat(e) => Failure::from(e),
            other => Failure::local(other.to_string()),
        };
        match err.class() {
            ErrClass::Ok | ErrClass::TokenInvalid | ErrClass::Transient => {
                let floor = failure
                    .errcode
                    .map(errcode::retry_floor)
                    .unwrap_or_default();
                match self.retry.next_delay(attempt, floor) {
                    Some(delay) => Outcome::Retry { delay, failure },
                    None => Outcome::dead(DeadReason::RetriesExhausted, failure),
                }
            }
            ErrClass::QuotaExhausted => {
                let pause = self.retry.quota_pause;
                // Nothing after the send may fail the decision (that would send again): the
                // pause is shared on a best-effort basis; this process pauses regardless.
                if let Err(e) = self
                    .limits
                    .pause(self.ledger.pool(), &job.app, pause, &failure.message)
                    .await
                {
                    tracing::warn!(error = %e, app = %job.app, "could not share the quota pause through Postgres");
                }
                Outcome::Paused {
                    delay: pause,
                    failure,
                }
            }
            ErrClass::Permanent(kind) => Outcome::dead(dead_reason_for(kind), failure),
        }
    }

    /// Records the decision in Postgres and returns the final outcome: a send that another
    /// delivery of the same job id recorded first becomes `Duplicate`. Safe to call again after
    /// an error.
    pub async fn record(&self, decision: &Decision, body: &[u8]) -> Result<Outcome, DbError> {
        let job_id = decision.job.as_ref().map(|j| j.id.as_str());
        let outcome = match (&decision.outcome, job_id) {
            (Outcome::Sent { msgid }, Some(id)) => {
                let openid = decision
                    .oa_openid
                    .as_ref()
                    .expect("a sent job has its recipient");
                if self.ledger.record_sent(id, openid, *msgid).await? {
                    decision.outcome.clone()
                } else {
                    Outcome::Duplicate
                }
            }
            (Outcome::Retry { failure, .. }, Some(id)) => {
                self.ledger
                    .record_retry(id, decision.attempt, failure)
                    .await?;
                decision.outcome.clone()
            }
            (Outcome::Paused { .. }, Some(id)) => {
                self.ledger.unclaim(id).await?;
                decision.outcome.clone()
            }
            (Outcome::Dead { reason, failure }, _) => {
                if self
                    .record_dead(decision, *reason, failure, body, "worker")
                    .await?
                {
                    decision.outcome.clone()
                } else {
                    Outcome::Duplicate
                }
            }
            (other, _) => other.clone(),
        };
        Ok(outcome)
    }

    /// Writes a dead letter for `decision` (and turns its ledger row dead when the job parsed);
    /// 43004 also marks the follower unsubscribed. Returns false when a twin delivery of the same
    /// job id had already finished it (nothing is written: this one is a duplicate).
    pub async fn record_dead(
        &self,
        decision: &Decision,
        reason: DeadReason,
        failure: &Failure,
        body: &[u8],
        source: &'static str,
    ) -> Result<bool, DbError> {
        let Some(job) = &decision.job else {
            // Not a job: kept as (lossy, NUL-free) text, since Postgres refuses NUL in text.
            let raw = clean_text(&body[..body.len().min(MAX_RAW_KEPT)]);
            let job_id = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| {
                    v.get("id")
                        .and_then(Value::as_str)
                        .map(|s| clean_text(s.as_bytes()))
                })
                .map(|s| s.chars().take(200).collect::<String>());
            let dead = DeadLetter {
                job_id: job_id.as_deref(),
                app: None,
                reason,
                failure,
                job: None,
                raw: Some(&raw),
                attempts: 0,
                source,
            };
            self.ledger.record_malformed(&dead).await?;
            return Ok(true);
        };
        let json = serde_json::to_value(job).ok();
        let dead = DeadLetter {
            job_id: Some(job.id.as_str()),
            app: Some(job.app.as_str()),
            reason,
            failure,
            job: json.as_ref(),
            raw: None,
            attempts: decision.attempt,
            source,
        };
        if !self.ledger.record_dead(&dead, job, decision.lane).await? {
            return Ok(false);
        }
        if failure.errcode == Some(errcode::REQUIRE_SUBSCRIBE)
            && let Some(openid) = &decision.oa_openid
        {
            sqlx::query(
                "UPDATE oa_followers SET subscribed = false, updated_at = now() WHERE app = $1 AND oa_openid = $2",
            )
            .bind(job.app.as_str())
            .bind(openid.as_str())
            .execute(self.ledger.pool())
            .await?;
        }
        Ok(true)
    }
}

/// Bytes as text Postgres accepts: invalid UTF-8 and NUL become U+FFFD.
fn clean_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\u{fffd}")
}

/// How long a held message waits before the pipeline tries Postgres again.
pub const DB_RETRY: Duration = Duration::from_millis(500);
