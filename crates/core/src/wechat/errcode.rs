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
    /// WeChat refuses the app itself, whatever the request (the account is restricted, this
    /// server's IP is not whitelisted, the API is not authorised, the AppSecret is wrong …):
    /// nothing the app sends can succeed until an operator (or WeChat) fixes it. Pause the app;
    /// the request's subject is not at fault. [`account_fix`] says what to do.
    AccountBlocked,
    /// 40252: the message went into WeChat's content review. WeChat delivers it itself if the
    /// review passes; never send it again.
    HeldForReview,
    /// 40241: an identical message went out within the last 60 seconds; this one may be a
    /// repeat of it. Never send it again.
    RepeatedContent,
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
    /// wxnotify's own configuration (an app that is not configured). WeChat's account-level
    /// answers are [`ErrClass::AccountBlocked`].
    Config,
    /// A single-use input such as a login code is invalid, used or blocked.
    Code,
    /// Anything not known to be one of the above.
    Other,
}

/// The recipient no longer follows the OA (`require subscribe`); the follower is marked
/// unsubscribed when a send gets it.
pub const REQUIRE_SUBSCRIBE: i64 = 43004;

/// A subscribe send found no grant at WeChat (the person refused, cancelled, or has none left):
/// the grant count is written off.
pub const SUBSCRIBE_NO_GRANT: i64 = 43101;

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

/// WeChat put the message into its content review (no msgid): it delivers the message itself
/// if the review passes (docs/wechat.md, "Held for review").
pub const HELD_FOR_REVIEW: i64 = 40252;

/// An identical message went out within 60 seconds (docs/wechat.md, "40241").
pub const REPEATED_CONTENT: i64 = 40241;

/// Classifies an errcode.
pub fn classify(errcode: i64) -> ErrClass {
    use ErrClass::*;
    use PermanentKind::*;
    match errcode {
        0 => Ok,
        40001 | 40014 | 42001 | 41001 => TokenInvalid,
        -1 | 45011 | 43117 => Transient,
        45009 => QuotaExhausted,
        HELD_FOR_REVIEW => HeldForReview,
        REPEATED_CONTENT => RepeatedContent,
        // The app itself is refused (docs/wechat.md, "Account-level answers").
        40002 | 40013 | 40125 | 40164 | 45103 | 45109 | 48001 | 48004 | 50002 | 89503 => {
            AccountBlocked
        }
        40003 | 43004 | 43019 | 43101 | 46004 => Permanent(Recipient),
        40249 => Permanent(Content),
        40036 | 40037 | 40165 | 43116 | 47003 | 40032 | 47001 => Permanent(Payload),
        40029 | 40163 | 40226 => Permanent(Code),
        _ => Permanent(Other),
    }
}

/// Classifies an errcode from the token endpoints themselves, where 40001 means a wrong
/// AppSecret (the app cannot get a token at all), not a stale token.
pub fn classify_token_endpoint(errcode: i64) -> ErrClass {
    match errcode {
        40001 | 40014 | 42001 | 41001 => ErrClass::AccountBlocked,
        other => classify(other),
    }
}

/// What an operator does about an account-level answer ([`ErrClass::AccountBlocked`]), in
/// words for `wxnotify status`, the console and the log. `None` for other errcodes.
pub fn account_fix(errcode: i64) -> Option<&'static str> {
    Some(match errcode {
        40164 => {
            "add this server's public IP address to the Official Account's IP whitelist \
             (mp.weixin.qq.com: Settings and Development > Basic Configuration > IP whitelist)"
        }
        89503 => {
            "an administrator of the Official Account must confirm calls from this server's IP \
             (WeChat sent them a confirmation), or add the IP to the OA's IP whitelist"
        }
        50002 => {
            "WeChat restricted the account (usually after a rule violation): read the notices \
             at mp.weixin.qq.com; sending resumes by itself once WeChat lifts the restriction"
        }
        48001 => {
            "the account may not call this API: the OA must be a verified Service Account with \
             template messages enabled, and the app's appid must be the OA's, not the Mini Program's"
        }
        48004 => {
            "WeChat forbade this API to the account after irregularities: read the notices at \
             mp.weixin.qq.com"
        }
        40013 => "the appid is not valid: check WXNOTIFY_OA_APPID (or oa_appid in the config file)",
        40125 | 40001 | 40014 | 42001 | 41001 => {
            "the AppSecret is wrong or was reset: set WXNOTIFY_OA_SECRET (or the app's oa_secret) \
             to the current AppSecret from mp.weixin.qq.com"
        }
        40002 => "WeChat refused the token request's grant_type: a wxnotify bug, please report it",
        45103 | 45109 => {
            "WeChat retired the API wxnotify called: upgrade wxnotify (and report it if the \
             newest version still calls it)"
        }
        _ => return None,
    })
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
        for c in [50002, 40164, 48001, 40013, 40125, 89503, 48004] {
            assert_eq!(classify(c), ErrClass::AccountBlocked, "{c}");
            assert!(account_fix(c).is_some(), "{c} has a fix in words");
        }
        assert_eq!(classify(40252), ErrClass::HeldForReview);
        assert_eq!(classify(40241), ErrClass::RepeatedContent);
        assert_eq!(classify(40037), ErrClass::Permanent(PermanentKind::Payload));
        assert_eq!(classify(47003), ErrClass::Permanent(PermanentKind::Payload));
        assert_eq!(classify(40249), ErrClass::Permanent(PermanentKind::Content));
        assert_eq!(classify(40163), ErrClass::Permanent(PermanentKind::Code));
        assert_eq!(classify(99999), ErrClass::Permanent(PermanentKind::Other));
        assert_eq!(classify_token_endpoint(40001), ErrClass::AccountBlocked);
        assert_eq!(classify_token_endpoint(40164), ErrClass::AccountBlocked);
        assert_eq!(classify_token_endpoint(-1), ErrClass::Transient);
    }
}
