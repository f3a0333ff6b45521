//! An app's safe-mode keys while its EncodingAESKey is being changed: the current key and the
//! previous one.
//!
//! The official message-encryption FAQ tells developers to keep the current and the previous
//! EncodingAESKey, to try the previous one when decryption with the current one fails, and to
//! answer with the key that worked: a push WeChat encrypted just before the console change (or
//! a retry of it) arrives after the server has the new key.
//!
//! **Which failures fall back.** Only those that depend on the key: bad padding or a bad length
//! field ([`CryptoError::BadPlaintext`]) and a foreign appid at the end
//! ([`CryptoError::WrongAppId`]), which is what a wrong key produces. A payload that is not
//! base64 of whole blocks ([`CryptoError::BadCiphertext`]) fails with any key, so it is refused
//! at once. Signatures are not decryption: `signature` and `msg_signature` are computed with the
//! callback Token over the ciphertext, so they are checked before any key is tried and a bad one
//! never reaches the previous key. There is no signature inside the decrypted message; the appid
//! check is what proves a key right, so once a key yields our appid, a message that then does not
//! parse is refused, not retried with the other key.

use super::{AesKey, CryptoError};

/// Which configured key opened a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySlot {
    /// The current EncodingAESKey.
    Current,
    /// The previous EncodingAESKey (kept while the key is being changed).
    Previous,
}

impl KeySlot {
    /// `current` or `previous` (logs and metrics; never the key).
    pub fn as_str(self) -> &'static str {
        match self {
            KeySlot::Current => "current",
            KeySlot::Previous => "previous",
        }
    }
}

/// The current key and, during a change, the previous one. Its `Debug` shows no key.
#[derive(Debug, Clone)]
pub struct AesKeys {
    current: AesKey,
    previous: Option<AesKey>,
}

impl AesKeys {
    /// The keys of an app: `current`, and `previous` while the key is being changed.
    pub fn new(current: AesKey, previous: Option<AesKey>) -> Self {
        Self { current, previous }
    }

    /// The key in `slot` (an encrypted answer must use the key that opened the push); `None`
    /// for [`KeySlot::Previous`] when no previous key is configured.
    pub fn get(&self, slot: KeySlot) -> Option<&AesKey> {
        match slot {
            KeySlot::Current => Some(&self.current),
            KeySlot::Previous => self.previous.as_ref(),
        }
    }

    /// Decrypts an `Encrypt` text for `appid` with the current key, then, if that failed in a
    /// way a wrong key explains, with the previous one. Returns the message and the key that
    /// opened it; when neither does, the current key's error (the likelier diagnosis).
    pub fn decrypt(&self, encrypt: &str, appid: &str) -> Result<(Vec<u8>, KeySlot), CryptoError> {
        let first = match self.current.decrypt(encrypt, appid) {
            Ok(msg) => return Ok((msg, KeySlot::Current)),
            Err(e) => e,
        };
        match &self.previous {
            Some(previous) if first.depends_on_key() => previous
                .decrypt(encrypt, appid)
                .map(|msg| (msg, KeySlot::Previous))
                .map_err(|_| first),
            _ => Err(first),
        }
    }
}

impl CryptoError {
    /// Whether another key could succeed where this failure happened.
    fn depends_on_key(&self) -> bool {
        match self {
            CryptoError::BadPlaintext | CryptoError::WrongAppId => true,
            CryptoError::BadKey | CryptoError::BadCiphertext => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPID: &str = "wxmockoa000000001";
    const OLD: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
    const NEW: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    fn key(text: &str) -> AesKey {
        AesKey::from_encoding_aes_key(text).unwrap()
    }

    #[test]
    fn the_current_key_is_tried_first_and_the_previous_when_it_cannot_open_the_push() {
        let keys = AesKeys::new(key(NEW), Some(key(OLD)));
        let by_new = key(NEW).encrypt(b"<xml>new</xml>", APPID);
        let by_old = key(OLD).encrypt(b"<xml>old</xml>", APPID);
        assert_eq!(
            keys.decrypt(&by_new, APPID).unwrap(),
            (b"<xml>new</xml>".to_vec(), KeySlot::Current)
        );
        assert_eq!(
            keys.decrypt(&by_old, APPID).unwrap(),
            (b"<xml>old</xml>".to_vec(), KeySlot::Previous)
        );
        assert!(
            keys.get(KeySlot::Previous)
                .unwrap()
                .decrypt(&by_old, APPID)
                .is_ok(),
            "the key of the slot is the key that worked"
        );
        // Without a previous key, the old key's pushes are refused.
        let only_new = AesKeys::new(key(NEW), None);
        assert!(only_new.decrypt(&by_old, APPID).is_err());
        assert!(only_new.get(KeySlot::Previous).is_none());
    }

    #[test]
    fn a_push_neither_key_opens_is_refused_with_the_current_keys_diagnosis() {
        let keys = AesKeys::new(key(NEW), Some(key(OLD)));
        let by_other = key(&"A".repeat(43)).encrypt(b"<xml/>", APPID);
        assert!(matches!(
            keys.decrypt(&by_other, APPID),
            Err(CryptoError::BadPlaintext | CryptoError::WrongAppId)
        ));
        // Right key, foreign appid: both keys fail, the current key's answer is given.
        let foreign = key(NEW).encrypt(b"<xml/>", "wxsomeoneelse0001");
        assert_eq!(keys.decrypt(&foreign, APPID), Err(CryptoError::WrongAppId));
        // Not base64 of whole blocks: no key can help, the previous one is not tried.
        assert_eq!(
            keys.decrypt("not base64!", APPID),
            Err(CryptoError::BadCiphertext)
        );
        assert!(!format!("{keys:?}").contains(NEW));
    }
}
