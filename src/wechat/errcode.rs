//! The one place where WeChat's numeric `errcode`s are classified. Nothing else in the crate
//! matches on raw codes or on `errmsg` text (`docs/wechat.md` §11).

/// What a caller should do about an answer from WeChat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrClass {
    /// errcode 0 (or missing): success.
    Ok,
    /// 40001, 40014, 42001 (41001 too: an empty cached token): refresh the access token (compare
    /// and swap) and retry once.
    TokenInvalid,
    /// -1, 45011, 43117 and transport failures: retry later with backoff.
    Transient,
    /// 45009: the daily quota of this API is used up; stop calling it until the window resets.
    QuotaExhausted,
    /// Anything else: retrying the same request cannot help.
    Permanent(PermanentKind),
}

/// Who has to act on a permanent error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PermanentKind {
    /// The recipient cannot receive (never followed, unfollowed, blocked the OA …).
    Recipient,
    /// The template or the message content (unknown template, bad field, bad pagepath …).
    Payload,
    /// WeChat blocked the message for its content (40249): a reason of its own, since no
    /// field is wrong and only other wording can help.
    Content,
    /// The account's configuration (secret, IP whitelist, account type …); an operator must act.
    Config,
    /// A single-use input such as a login code is invalid, used or blocked.
    Code,
    /// Anything not known to be one of the above.
    Other,
}

/// The recipient no longer follows the OA (`require subscribe`); the follower is marked
/// unsubscribed when a send gets it.
pub const REQUIRE_SUBSCRIBE: i64 = 43004;

/// The per-minute quota of an API is used up (`api minute-quota reach limit`): transient, but a
/// login answers it with 429 rather than 503 so the client slows down.
pub const MINUTE_QUOTA: i64 = 45011;

/// WeChat blocked a login of a high-risk user (`code blocked`): a fresh code will not help.
pub const CODE_BLOCKED: i64 = 40226;

/// The template id is unknown to WeChat (deleted, another account's, or its category was
/// removed): the template catalog is refreshed when a send gets it.
pub const UNKNOWN_TEMPLATE: i64 = 40037;

/// The daily quota of the API is used up: the real quota is read again when a send gets it.
pub const DAILY_QUOTA: i64 = 45009;

/// Classifies an errcode.
pub fn classify(errcode: i64) -> ErrClass {
    use ErrClass::*;
    use PermanentKind::*;
    match errcode {
        0 => Ok,
        40001 | 40014 | 42001 | 41001 => TokenInvalid,
        -1 | 45011 | 43117 => Transient,
        45009 => QuotaExhausted,
        40003 | 43004 | 43019 | 43101 | 46004 | 50002 => Permanent(Recipient),
        40249 => Permanent(Content),
        40036 | 40037 | 40165 | 43116 | 47003 | 40032 | 47001 => Permanent(Payload),
        40002 | 40013 | 40125 | 40164 | 48001 | 48004 | 89503 | 45103 | 45109 => Permanent(Config),
        40029 | 40163 | 40226 => Permanent(Code),
        _ => Permanent(Other),
    }
}

/// Classifies an errcode from the token endpoints themselves, where 40001 means a wrong
/// AppSecret (a configuration error), not a stale token.
pub fn classify_token_endpoint(errcode: i64) -> ErrClass {
    match errcode {
        40001 | 40014 | 42001 | 41001 => ErrClass::Permanent(PermanentKind::Config),
        other => classify(other),
    }
}

/// The least time to wait before retrying after a transient errcode, where WeChat says more
/// than "later": 45011 (minute quota) means the next minute; 43117 (this openid too often) wants
/// a long pause.
pub fn retry_floor(errcode: i64) -> std::time::Duration {
    use std::time::Duration;
    match errcode {
        45011 => Duration::from_secs(60),
        43117 => Duration::from_secs(120),
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_fact_sheet() {
        assert_eq!(classify(0), ErrClass::Ok);
        for c in [40001, 40014, 42001] {
            assert_eq!(classify(c), ErrClass::TokenInvalid, "{c}");
        }
        for c in [-1, 45011, 43117] {
            assert_eq!(classify(c), ErrClass::Transient, "{c}");
        }
        assert_eq!(classify(45009), ErrClass::QuotaExhausted);
        assert_eq!(
            classify(43004),
            ErrClass::Permanent(PermanentKind::Recipient)
        );
        assert_eq!(classify(40037), ErrClass::Permanent(PermanentKind::Payload));
        assert_eq!(classify(47003), ErrClass::Permanent(PermanentKind::Payload));
        assert_eq!(classify(40249), ErrClass::Permanent(PermanentKind::Content));
        assert_eq!(classify(48001), ErrClass::Permanent(PermanentKind::Config));
        assert_eq!(classify(40163), ErrClass::Permanent(PermanentKind::Code));
        assert_eq!(classify(99999), ErrClass::Permanent(PermanentKind::Other));
        assert_eq!(
            classify_token_endpoint(40001),
            ErrClass::Permanent(PermanentKind::Config)
        );
        assert_eq!(classify_token_endpoint(-1), ErrClass::Transient);
    }
}
