//! What became of one delivery: the enum every step of the pipeline returns, and the reasons a
//! job dies. Exactly one function (`Pipeline::settle`) turns a decision into ledger writes and ack / retry.

use std::time::Duration;

use wxnotify_core::wechat::{ErrClass, PermanentKind, WechatError};

/// Why a job was dead-lettered. Stored as text (`as_str`) in `deliveries.dead_reason` and
/// `dead_letters.reason`; ops filter dead letters by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadReason {
    /// The message is not a valid job (bad JSON, wrong types, too large, invalid fields).
    Malformed,
    /// The job names an app that is not configured.
    UnknownApp,
    /// No Mini Program user with that openid has logged in.
    UnknownMpUser,
    /// The Mini Program user has no unionid (the Mini Program is not bound to the Open Platform).
    NoUnionid,
    /// No subscribed OA follower has that unionid / openid (never followed, or unfollowed).
    NotFollowing,
    /// `not_after` had passed.
    Expired,
    /// WeChat refused the recipient (40003, 43004, 43019, 43101 …).
    RecipientRejected,
    /// WeChat refused the template or content (40037, 47003, 40165 …).
    PayloadRejected,
    /// WeChat blocked the message for illegal content (40249).
    ContentBlocked,
    /// WeChat refused the account's configuration (48001, 40164 …).
    ConfigRejected,
    /// WeChat refused for another permanent reason.
    Rejected,
    /// Transient failures went on until the attempts ran out.
    RetriesExhausted,
    /// RabbitMQ dead-lettered it (delivery limit: it kept failing a worker).
    DeliveryLimit,
    /// A send may have reached the person (its answer never came) and WeChat's `client_msg_id`
    /// window has closed (or it was a subscribe message, which WeChat never de-duplicates): not
    /// sent again, so no one gets it twice; ops decide.
    OutcomeUnknown,
    /// The person does not follow the OA (or the job has no OA template message) and holds no
    /// subscribe grant for the job's `mp_subscribe` template (none left, or WeChat answered
    /// 43101: it holds none).
    NoChannel,
}

impl DeadReason {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Malformed => "malformed",
            DeadReason::UnknownApp => "unknown_app",
            DeadReason::UnknownMpUser => "unknown_mp_user",
            DeadReason::NoUnionid => "no_unionid",
            DeadReason::NotFollowing => "not_following",
            DeadReason::Expired => "expired",
            DeadReason::RecipientRejected => "recipient_rejected",
            DeadReason::PayloadRejected => "payload_rejected",
            DeadReason::ContentBlocked => "content_blocked",
            DeadReason::ConfigRejected => "config_rejected",
            DeadReason::Rejected => "rejected",
            DeadReason::RetriesExhausted => "retries_exhausted",
            DeadReason::DeliveryLimit => "delivery_limit",
            DeadReason::OutcomeUnknown => "outcome_unknown",
            DeadReason::NoChannel => "no_channel",
        }
    }

    /// Every reason, for summaries and `--help`.
    pub const ALL: [DeadReason; 15] = [
        DeadReason::Malformed,
        DeadReason::UnknownApp,
        DeadReason::UnknownMpUser,
        DeadReason::NoUnionid,
        DeadReason::NotFollowing,
        DeadReason::Expired,
        DeadReason::RecipientRejected,
        DeadReason::PayloadRejected,
        DeadReason::ContentBlocked,
        DeadReason::ConfigRejected,
        DeadReason::Rejected,
        DeadReason::RetriesExhausted,
        DeadReason::DeliveryLimit,
        DeadReason::OutcomeUnknown,
        DeadReason::NoChannel,
    ];
}

impl std::fmt::Display for DeadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure with its WeChat code (if any) and message, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// WeChat's errcode; `None` for transport errors and wxnotify's own reasons.
    pub errcode: Option<i64>,
    /// WeChat's errmsg (with its rid) or wxnotify's explanation.
    pub message: String,
}

impl Failure {
    /// A failure wxnotify itself decided on.
    pub fn local(message: impl Into<String>) -> Self {
        Failure {
            errcode: None,
            message: message.into(),
        }
    }
}

impl From<&WechatError> for Failure {
    fn from(e: &WechatError) -> Self {
        Failure {
            errcode: e.errcode(),
            message: e.message(),
        }
    }
}

/// The outcome of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// WeChat accepted it.
    Sent {
        /// WeChat's 64-bit message id (a subscribe message's answer may have none).
        msgid: Option<i64>,
    },
    /// The job id was already sent (or dead); not sent again.
    Duplicate,
    /// Try again after `delay` (transient failure).
    Retry {
        /// How long to wait.
        delay: Duration,
        /// What failed.
        failure: Failure,
    },
    /// The app's daily quota is used up: wait `delay` without spending an attempt.
    Paused {
        /// Until the pause ends.
        delay: Duration,
        /// What WeChat said.
        failure: Failure,
    },
    /// Another delivery of the same job id holds a live claim: wait `delay`, then look again
    /// (no attempt spent, nothing sent).
    Busy {
        /// How long to wait.
        delay: Duration,
    },
    /// WeChat put the message into its content review (40252): recorded `held`, never sent
    /// again; the review reconciliation later records it sent or dead `content_blocked`.
    HeldForReview {
        /// What WeChat said.
        failure: Failure,
    },
    /// WeChat answered that an identical message went out within 60 seconds (40241): recorded
    /// `duplicate` with WeChat's message, never sent again, not dead.
    RepeatedContent {
        /// What WeChat said.
        failure: Failure,
    },
    /// A job of a cancelled campaign: recorded `cancelled`, not sent.
    Cancelled,
    /// Give up, with a reason.
    Dead {
        /// Why.
        reason: DeadReason,
        /// Details.
        failure: Failure,
    },
}

impl Outcome {
    /// A dead outcome.
    pub fn dead(reason: DeadReason, failure: Failure) -> Self {
        Outcome::Dead { reason, failure }
    }

    /// The label used in metrics and summaries.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Sent { .. } => "sent",
            Outcome::Duplicate => "duplicate",
            Outcome::Retry { .. } => "retry",
            Outcome::Paused { .. } => "paused",
            Outcome::Busy { .. } => "busy",
            Outcome::HeldForReview { .. } => "held",
            Outcome::RepeatedContent { .. } => "duplicate",
            Outcome::Cancelled => "cancelled",
            Outcome::Dead { .. } => "dead",
        }
    }
}

/// The dead reason for a permanent WeChat error.
pub fn dead_reason_for(kind: PermanentKind) -> DeadReason {
    match kind {
        PermanentKind::Recipient => DeadReason::RecipientRejected,
        PermanentKind::Payload => DeadReason::PayloadRejected,
        PermanentKind::Content => DeadReason::ContentBlocked,
        PermanentKind::Config => DeadReason::ConfigRejected,
        PermanentKind::Code | PermanentKind::Other => DeadReason::Rejected,
    }
}

/// Whether an error class leads to a retry rather than a dead letter.
pub fn is_retryable(class: ErrClass) -> bool {
    matches!(class, ErrClass::Transient | ErrClass::TokenInvalid)
}

#[cfg(test)]
mod sql_rules {
    use super::DeadReason;

    /// The migration that last CHECKs dead reasons names exactly the reasons the code knows.
    #[test]
    fn the_dead_reason_check_lists_every_reason_and_no_other() {
        let sql = include_str!("../../../../migrations/20261211200001_subscribe_channel.sql");
        let check = &sql[sql.find("deliveries_dead_reason_known").unwrap()..];
        let check = &check[..check.find(");").unwrap()];
        let listed: Vec<&str> = check.split('\'').skip(1).step_by(2).collect();
        let known: Vec<&str> = DeadReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(listed, known);
    }
}
