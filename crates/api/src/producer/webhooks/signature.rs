//! The webhook signature, in the Standard Webhooks format (standardwebhooks.com): the headers a
//! receiver gets, signing a body, and checking a signature as a receiver does.
//!
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>`,
//! where the key is the base64 part of the secret `whsec_<base64>`. The Standard Webhooks
//! libraries verify it with the secret as it was printed. The earlier `Wxnotify-Signature`
//! header is still sent beside it; `webhook-signature` is the one to verify.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The event's id: the same on every retry of one event (`msg_…`); receivers drop repeats by
/// it. The body's `event_id` holds it too.
pub const ID_HEADER: &str = "webhook-id";
/// When this attempt was signed (unix seconds).
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The signature, `v1,<base64>` (authoritative).
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// The event's kind: `dead`, `receipt_failed` or `sent` (also the body's `event`).
pub const EVENT_HEADER: &str = "Wxnotify-Event";
/// The earlier signature, `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, keyed with the
/// whole secret string. Deprecated: verify [`SIGNATURE_HEADER`].
pub const LEGACY_SIGNATURE_HEADER: &str = "Wxnotify-Signature";
/// The earlier event id (the outbox row's number). Deprecated: use [`ID_HEADER`].
pub const LEGACY_DELIVERY_HEADER: &str = "Wxnotify-Delivery";

/// The secret's prefix.
const SECRET_PREFIX: &str = "whsec_";

/// The HMAC key of a `whsec_<base64>` secret: its base64 part decoded. Secrets made before the
/// Standard Webhooks format used the URL-safe alphabet without padding; they decode to their
/// key just the same (a receiver's library wants them in the standard alphabet:
/// `-`→`+`, `_`→`/`, padded with `=`). Anything else is keyed with its bytes as they are.
fn signing_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|b64| {
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(b64).ok())
        })
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// HMAC-SHA256 of `"<id>.<timestamp>.<body>"` under the key of `secret`.
fn mac(secret: &str, id: &str, timestamp: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&signing_key(secret)).expect("HMAC takes any key");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac
}

/// The `webhook-signature` value for event `id` with `body` at `timestamp` (unix seconds).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = mac(secret, id, &timestamp.to_string());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The deprecated `Wxnotify-Signature` value (see [`LEGACY_SIGNATURE_HEADER`]).
pub fn sign_legacy(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// The three Standard Webhooks headers of a received post, as they came.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// `webhook-id`.
    pub id: &'a str,
    /// `webhook-timestamp`.
    pub timestamp: &'a str,
    /// `webhook-signature`: one or more space-separated `v1,<base64>`.
    pub signature: &'a str,
}

/// Checks a post as a receiver does: one of the `v1` signatures matches `body` (constant-time)
/// and the timestamp is within `tolerance` of `now` (unix seconds).
pub fn verify(
    secret: &str,
    signed: Signed<'_>,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> bool {
    let Ok(timestamp) = signed.timestamp.parse::<i64>() else {
        return false;
    };
    if (now - timestamp).unsigned_abs() > tolerance.as_secs() {
        return false;
    }
    signed.signature.split(' ').any(|candidate| {
        let Some(sig) = candidate
            .strip_prefix("v1,")
            .and_then(|b64| STANDARD.decode(b64).ok())
        else {
            return false;
        };
        let mut mac = mac(secret, signed.id, signed.timestamp);
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_specifications_test_vector_signs_and_verifies() {
        assert_eq!(sign(SECRET, ID, TIMESTAMP, BODY), SIGNATURE);
        let signed = Signed {
            id: ID,
            timestamp: "1614265330",
            signature: SIGNATURE,
        };
        let ok = |s: Signed<'_>, body: &[u8], secret: &str, now: i64| {
            verify(secret, s, body, now, Duration::from_secs(300))
        };
        assert!(ok(signed, BODY, SECRET, TIMESTAMP + 10));
        assert!(!ok(signed, b"{}", SECRET, TIMESTAMP));
        assert!(!ok(signed, BODY, "whsec_b3RoZXI=", TIMESTAMP));
        assert!(!ok(signed, BODY, SECRET, TIMESTAMP + 1000), "too old");
        assert!(!ok(
            Signed {
                id: "msg_other",
                ..signed
            },
            BODY,
            SECRET,
            TIMESTAMP
        ));
        let several = format!("v1,bm9wZQ== {SIGNATURE}");
        assert!(ok(
            Signed {
                signature: &several,
                ..signed
            },
            BODY,
            SECRET,
            TIMESTAMP
        ));
    }

    #[test]
    fn a_url_safe_secret_from_before_signs_with_the_same_key_as_its_standard_form() {
        let url_safe = "whsec_-_8AAQ";
        let standard = "whsec_+/8AAQ==";
        assert_eq!(sign(url_safe, ID, 1, b"x"), sign(standard, ID, 1, b"x"));
    }
}
