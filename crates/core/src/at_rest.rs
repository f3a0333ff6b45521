//! Secrets at rest: the one codec for every secret wxnotify keeps in Postgres (WeChat access
//! tokens, webhook signing secrets).
//!
//! With a key (`WXNOTIFY_SECRET_KEY`, 32 bytes in base64) a value is stored as
//! `enc:v1:<base64(nonce ‖ ciphertext)>`: XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`)
//! with a random 192-bit nonce per value, the value's place (table, column, app) as associated
//! data so a ciphertext copied to another row does not open. Without a key values are stored
//! as they are. Values stored before the key was set (no `enc:` prefix) are read as they are,
//! and encrypted when they are next written.
//!
//! A value that does not open is an [`OpenError`] naming `WXNOTIFY_SECRET_KEY`, never garbage;
//! neither the value nor the key ever appears in an error.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The environment variable holding the key.
pub const SECRET_KEY_VAR: &str = "WXNOTIFY_SECRET_KEY";
/// The prefix of an encrypted value (format version 1).
const PREFIX: &str = "enc:v1:";
/// XChaCha20's nonce length.
const NONCE_LEN: usize = 24;

/// Where a secret is kept: its associated data, so a value opens only where it was sealed.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    /// `table.column`, e.g. `access_tokens.token`.
    pub column: &'static str,
    /// The row's app.
    pub app: &'a str,
}

impl Place<'_> {
    fn aad(&self) -> Vec<u8> {
        format!("wxnotify\0{}\0{}", self.column, self.app).into_bytes()
    }
}

/// Why the key in `WXNOTIFY_SECRET_KEY` cannot be used. Never holds the value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(&'static str);

/// Why a stored secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The value is encrypted and no key is set.
    #[error(
        "{column} of app {app} is stored encrypted but WXNOTIFY_SECRET_KEY is not set: set the key it was encrypted with"
    )]
    NoKey {
        /// `table.column`.
        column: &'static str,
        /// The row's app.
        app: String,
    },
    /// The key does not open the value.
    #[error(
        "{column} of app {app} cannot be decrypted with WXNOTIFY_SECRET_KEY: it is not the key the value was encrypted with (or the value was altered)"
    )]
    WrongKey {
        /// `table.column`.
        column: &'static str,
        /// The row's app.
        app: String,
    },
}

/// Seals and opens secrets stored in Postgres; cheap to clone. Its `Debug` says only whether
/// a key is set.
#[derive(Clone, Default)]
pub struct SecretCodec {
    cipher: Option<Arc<XChaCha20Poly1305>>,
}

impl std::fmt::Debug for SecretCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = if self.encrypts() { "set" } else { "unset" };
        f.debug_struct("SecretCodec").field("key", &key).finish()
    }
}

impl SecretCodec {
    /// Stores secrets as they are (no key).
    pub fn plain() -> Self {
        SecretCodec::default()
    }

    /// A codec with a 32-byte key given in base64 (as `openssl rand -base64 32` prints it).
    pub fn from_base64_key(value: &str) -> Result<Self, KeyError> {
        let value = value.trim();
        let bytes = STANDARD
            .decode(value)
            .or_else(|_| STANDARD_NO_PAD.decode(value))
            .map_err(|_| KeyError("it is not base64"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError("it does not decode to 32 bytes"))?;
        Ok(SecretCodec {
            cipher: Some(Arc::new(XChaCha20Poly1305::new(&key.into()))),
        })
    }

    /// Whether values are encrypted (a key is set).
    pub fn encrypts(&self) -> bool {
        self.cipher.is_some()
    }

    /// The form of `secret` to store at `place`: encrypted with a key, as it is without.
    pub fn seal(&self, place: Place<'_>, secret: &str) -> String {
        let Some(cipher) = &self.cipher else {
            return secret.to_owned();
        };
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.as_bytes(),
                    aad: &place.aad(),
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any length wxnotify stores");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", STANDARD_NO_PAD.encode(out))
    }

    /// The secret stored at `place` as `stored`: decrypted, or as it is when it was stored
    /// before encryption.
    pub fn open(&self, place: Place<'_>, stored: &str) -> Result<String, OpenError> {
        let Some(encoded) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let wrong = || OpenError::WrongKey {
            column: place.column,
            app: place.app.to_owned(),
        };
        let Some(cipher) = &self.cipher else {
            return Err(OpenError::NoKey {
                column: place.column,
                app: place.app.to_owned(),
            });
        };
        let bytes = STANDARD_NO_PAD.decode(encoded).map_err(|_| wrong())?;
        if bytes.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| wrong())?;
        let plain = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: &place.aad(),
                },
            )
            .map_err(|_| wrong())?;
        String::from_utf8(plain).map_err(|_| wrong())
    }

    /// Whether `stored` is in the encrypted form.
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }

    /// A SQL `LIKE` pattern that matches the encrypted form.
    pub fn sealed_like() -> String {
        format!("{PREFIX}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
    const PLACE: Place<'static> = Place {
        column: "access_tokens.token",
        app: "shop",
    };

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_place() {
        let codec = SecretCodec::from_base64_key(KEY).unwrap();
        let sealed = codec.seal(PLACE, "tok-123");
        assert!(SecretCodec::is_sealed(&sealed));
        assert!(!sealed.contains("tok-123"));
        assert_ne!(sealed, codec.seal(PLACE, "tok-123"), "a nonce per value");
        assert_eq!(codec.open(PLACE, &sealed).unwrap(), "tok-123");
        let other_app = Place {
            app: "news",
            ..PLACE
        };
        assert!(matches!(
            codec.open(other_app, &sealed),
            Err(OpenError::WrongKey { .. })
        ));
        let other = SecretCodec::from_base64_key(&STANDARD.encode([7u8; 32])).unwrap();
        let err = other.open(PLACE, &sealed).unwrap_err();
        assert!(err.to_string().contains("WXNOTIFY_SECRET_KEY"), "{err}");
        assert!(!err.to_string().contains("tok-123"));
        let err = SecretCodec::plain().open(PLACE, &sealed).unwrap_err();
        assert!(matches!(err, OpenError::NoKey { .. }), "{err}");
    }

    #[test]
    fn plain_values_from_before_the_key_are_read_and_no_key_stores_as_is() {
        let codec = SecretCodec::from_base64_key(KEY).unwrap();
        assert_eq!(codec.open(PLACE, "old-token").unwrap(), "old-token");
        assert_eq!(SecretCodec::plain().seal(PLACE, "t"), "t");
        assert_eq!(SecretCodec::plain().open(PLACE, "t").unwrap(), "t");
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64_and_never_show_in_debug() {
        assert!(SecretCodec::from_base64_key("not base64!").is_err());
        assert!(SecretCodec::from_base64_key(&STANDARD.encode([1u8; 16])).is_err());
        let codec = SecretCodec::from_base64_key(KEY).unwrap();
        assert_eq!(format!("{codec:?}"), "SecretCodec { key: \"set\" }");
    }
}
