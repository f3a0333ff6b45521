//! Why a WeChat call failed, and what the caller should do about it.

use super::subscribe::SUBSCRIBE_SEND;
use super::templates::TEMPLATE_SEND;
use crate::wechat::errcode::{self, ErrClass};
use crate::wechat::response;

/// Why a call failed. [`WechatError::class`] says what to do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WechatError {
    /// WeChat answered with a non-zero errcode.
    #[error("WeChat {endpoint} answered errcode {errcode}: {errmsg}")]
    Api {
        /// The endpoint path.
        endpoint: &'static str,
        /// The code.
        errcode: i64,
        /// The message, with its `rid` for WeChat support.
        errmsg: String,
        /// The classification.
        class: ErrClass,
    },
    /// No usable answer: timeout, connection error, HTTP status other than 2xx, or a body that
    /// is not JSON. Always transient. The text is redacted.
    #[error("WeChat {endpoint} could not be reached: {detail}")]
    Transport {
        /// The endpoint path.
        endpoint: &'static str,
        /// What happened (no secrets).
        detail: String,
        /// Whether the request may have reached WeChat (anything but a failed connect): for a
        /// send, its outcome is then unknown.
        maybe_delivered: bool,
    },
    /// The request was refused before sending (e.g. more than 100 openids for batchget).
    #[error("invalid request to WeChat {endpoint}: {detail}")]
    InvalidRequest {
        /// The endpoint path.
        endpoint: &'static str,
        /// What is wrong.
        detail: String,
    },
}

impl WechatError {
    /// What the caller should do about it.
    pub fn class(&self) -> ErrClass {
        match self {
            WechatError::Api { class, .. } => *class,
            WechatError::Transport { .. } => ErrClass::Transient,
            WechatError::InvalidRequest { .. } => {
                ErrClass::Permanent(errcode::PermanentKind::Other)
            }
        }
    }

    /// The WeChat endpoint that failed.
    pub fn endpoint(&self) -> &'static str {
        match self {
            WechatError::Api { endpoint, .. }
            | WechatError::Transport { endpoint, .. }
            | WechatError::InvalidRequest { endpoint, .. } => endpoint,
        }
    }

    /// The errcode, for WeChat answers.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            WechatError::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// Whether this error leaves a send's outcome unknown (a template or a subscribe message):
    /// the request may have reached WeChat but no answer said what became of it (timeout,
    /// dropped connection, a gateway error, an unreadable body).
    pub fn may_have_been_delivered(&self) -> bool {
        matches!(
            self,
            WechatError::Transport { endpoint, maybe_delivered: true, .. }
                if *endpoint == TEMPLATE_SEND || *endpoint == SUBSCRIBE_SEND
        )
    }

    /// The errmsg (WeChat answers) or the transport detail.
    pub fn message(&self) -> String {
        match self {
            WechatError::Api { errmsg, .. } => errmsg.clone(),
            WechatError::Transport { detail, .. } | WechatError::InvalidRequest { detail, .. } => {
                detail.clone()
            }
        }
    }

    /// The request id WeChat support asks for, when WeChat gave one.
    pub fn rid(&self) -> Option<&str> {
        match self {
            WechatError::Api { errmsg, .. } => response::rid_of(errmsg),
            _ => None,
        }
    }
}
