//! What the pipeline decides for one message: the typed [`Decision`] that `settle.rs` records,
//! and the evidence kept of a message that is not a job.

use wxnotify_core::domain::{Job, OpenId};
use wxnotify_core::queue::Lane;
use wxnotify_services::ledger::Claim;
use wxnotify_services::ledger::outcome::{DeadReason, Failure, Outcome};

/// How much of a malformed message's bytes are kept in its dead letter.
const MAX_RAW_KEPT: usize = 4096;

/// What the pipeline decided for one message: the typed input of
/// [`Pipeline::settle`](super::Pipeline::settle) (`settle.rs`), the one place where a decision
/// becomes ledger writes and a broker action.
#[derive(Debug)]
pub enum Decision {
    /// Not a job: dead at once, keyed so a redelivery of the same message is recognised.
    Malformed(Malformed),
    /// The job id was already sent or dead (counted on its row by the claim).
    Duplicate {
        /// The job.
        job: Job,
    },
    /// Another delivery of the job id holds a live claim: this one waits in a retry tier.
    Busy {
        /// The job.
        job: Job,
        /// Its lane.
        lane: Lane,
    },
    /// A job of a paused campaign, seen before its claim: it waits in a retry tier (nothing
    /// written, no attempt or rate permit spent).
    CampaignPaused {
        /// The job.
        job: Job,
        /// Its lane.
        lane: Lane,
    },
    /// A job of a paused or suspended app, seen before its claim: it waits `delay` in a retry
    /// tier (nothing written, no attempt or rate permit spent).
    AppPaused {
        /// The job.
        job: Job,
        /// Its lane.
        lane: Lane,
        /// How long it waits.
        delay: std::time::Duration,
        /// Why (the pause's reason, with WeChat's errcode for a suspension).
        failure: Failure,
    },
    /// The job was claimed and this attempt ended with an outcome.
    Attempted(Attempt),
    /// RabbitMQ dead-lettered the message (its delivery limit).
    BrokerDead(BrokerDead),
}

/// A message that is not a job.
#[derive(Debug)]
pub struct Malformed {
    /// The job id, when the JSON had one.
    pub job_id: Option<String>,
    /// What is wrong.
    pub error: String,
    /// The bytes as text (truncated, NUL-free).
    pub raw: String,
    /// Recognises a redelivery: a hash of the message id and the body.
    pub key: String,
}

/// A claimed job's attempt.
#[derive(Debug)]
pub struct Attempt {
    /// The job.
    pub job: Job,
    /// Its lane.
    pub lane: Lane,
    /// The claim it ran under.
    pub claim: Claim,
    /// What happened.
    pub outcome: Outcome,
    /// The OA follower it was (or would have been) sent to; `None` for a subscribe message
    /// (its Mini Program openid is on the ledger row since the claim).
    pub oa_openid: Option<OpenId>,
    /// Whether a send was made (an attempt is counted only then).
    pub sent: bool,
    /// Whether the send may have reached the person though no answer said so.
    pub uncertain: bool,
}

/// A message RabbitMQ dead-lettered.
#[derive(Debug)]
pub struct BrokerDead {
    /// The job, when the message is one.
    pub job: Option<Job>,
    /// The lane it died on.
    pub lane: Lane,
    /// Why.
    pub reason: DeadReason,
    /// The broker's explanation.
    pub failure: Failure,
    /// The dead letter's key (recognises a redelivery from the dead queue).
    pub key: String,
    /// The message as text when it is not a job.
    pub raw: String,
}

impl Decision {
    /// The job id, for logs.
    pub fn job_id(&self) -> &str {
        match self {
            Decision::Duplicate { job }
            | Decision::Busy { job, .. }
            | Decision::CampaignPaused { job, .. }
            | Decision::AppPaused { job, .. } => job.id.as_str(),
            Decision::Attempted(a) => a.job.id.as_str(),
            Decision::BrokerDead(b) => b.job.as_ref().map(|j| j.id.as_str()).unwrap_or("-"),
            Decision::Malformed(m) => m.job_id.as_deref().unwrap_or("-"),
        }
    }

    /// The job's app, when the message is a job.
    pub fn app(&self) -> Option<&wxnotify_core::domain::AppName> {
        match self {
            Decision::Duplicate { job }
            | Decision::Busy { job, .. }
            | Decision::CampaignPaused { job, .. }
            | Decision::AppPaused { job, .. } => Some(&job.app),
            Decision::Attempted(a) => Some(&a.job.app),
            Decision::BrokerDead(b) => b.job.as_ref().map(|j| &j.app),
            Decision::Malformed(_) => None,
        }
    }

    /// The attempt number, for logs (0 when nothing was attempted).
    pub fn attempt(&self) -> u32 {
        match self {
            Decision::Attempted(a) => a.claim.attempt,
            _ => 0,
        }
    }
}

/// A message that is not a job, ready to record.
pub(super) fn malformed(body: &[u8], message_id: Option<&str>, error: String) -> Malformed {
    // Kept as (lossy, NUL-free) text, since Postgres refuses NUL in text.
    let raw = clean_text(&body[..body.len().min(MAX_RAW_KEPT)]);
    // Not `serde_json::Value`: that costs ~10x the body, which may be far over the limit.
    let job_id = wxnotify_core::domain::id_hint::id_hint(body)
        .map(|s| clean_text(s.as_bytes()))
        .map(|s| s.chars().take(200).collect::<String>());
    Malformed {
        job_id,
        error,
        raw,
        key: message_key("malformed", body, message_id),
    }
}

/// A key for a message: `kind`, then a SHA-1 of its message id and body. Two deliveries of one
/// message share it.
pub fn message_key(kind: &str, body: &[u8], message_id: Option<&str>) -> String {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(message_id.unwrap_or("").as_bytes());
    h.update([0u8]);
    h.update(body);
    format!("{kind}:{}", hex::encode(h.finalize()))
}

/// Bytes as text Postgres accepts: invalid UTF-8 and NUL become U+FFFD.
fn clean_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\u{fffd}")
}
