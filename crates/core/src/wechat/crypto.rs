//! The cryptography of WeChat's push to the OA server URL (`docs/wechat.md` §7).
//!
//! - **Signatures**: `sha1(concat(sort([token, timestamp, nonce])))` as lowercase hex for the
//!   `signature` query parameter; safe mode's `msg_signature` sorts the `Encrypt` text in too.
//! - **Safe mode**: AES-256-CBC with the key `base64(EncodingAESKey + "=")` and the IV = the
//!   key's first 16 bytes; PKCS#7 padding to **32-byte** blocks; the plaintext is
//!   `16 random bytes ‖ u32 big-endian length ‖ message ‖ appid`, and the appid must be ours.
//!
//! - **Key change**: [`AesKeys`] holds the current and the previous EncodingAESKey and decides
//!   which decryption failures are retried with the previous one (`keys`).
//!
//! Used by the callback handler (verify, decrypt) and by the fake WeChat (sign, encrypt). Nothing
//! here logs; the key never leaves [`AesKey`] (its `Debug` is redacted).

use aes::Aes256;
use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use sha1::{Digest, Sha1};

mod keys;

pub use keys::{AesKeys, KeySlot};

/// WeChat pads to 32-byte blocks, not AES's 16 (wechatpy `pkcs7.py`, `block_size = 32`).
const PAD_BLOCK: usize = 32;
/// The random prefix of every encrypted message.
const RANDOM_LEN: usize = 16;

/// Base64 that accepts non-zero trailing bits: an EncodingAESKey is 43 characters of which the
/// last carries two unused bits, and WeChat's console does not promise they are zero.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// Why a push could not be verified or decrypted. Carries no secret and no payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The EncodingAESKey is not 43 base64 characters decoding to 32 bytes.
    #[error("the EncodingAESKey is not 43 base64 characters")]
    BadKey,
    /// The `Encrypt` text is not base64 of whole AES blocks.
    #[error("the encrypted payload is not base64 of whole AES blocks")]
    BadCiphertext,
    /// Decryption produced bad padding or a bad length field (wrong key or a tampered payload).
    #[error("the encrypted payload does not decrypt to a WeChat message (wrong key or tampered)")]
    BadPlaintext,
    /// The appid at the end of the message is not this app's.
    #[error("the encrypted message is for another appid")]
    WrongAppId,
}

/// The `signature` of a push or of the URL handshake.
pub fn signature(token: &str, timestamp: &str, nonce: &str) -> String {
    sorted_sha1(&mut [token, timestamp, nonce])
}

/// The `msg_signature` of a safe-mode push or reply.
pub fn msg_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    sorted_sha1(&mut [token, timestamp, nonce, encrypt])
}

fn sorted_sha1(parts: &mut [&str]) -> String {
    parts.sort_unstable();
    let mut hasher = Sha1::new();
    for p in parts.iter() {
        hasher.update(p.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Compares a computed signature with the one received, in time independent of where they differ.
pub fn signatures_match(expected: &str, received: &str) -> bool {
    let (a, b) = (expected.as_bytes(), received.trim().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The 32-byte AES key of an EncodingAESKey.
#[derive(Clone)]
pub struct AesKey([u8; 32]);

impl std::fmt::Debug for AesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesKey(REDACTED)")
    }
}

impl AesKey {
    /// Decodes the 43-character EncodingAESKey of the WeChat console.
    pub fn from_encoding_aes_key(encoding_aes_key: &str) -> Result<Self, CryptoError> {
        let text = encoding_aes_key.trim();
        if text.len() != 43 {
            return Err(CryptoError::BadKey);
        }
        let bytes = LENIENT
            .decode(format!("{text}="))
            .map_err(|_| CryptoError::BadKey)?;
        Ok(Self(bytes.try_into().map_err(|_| CryptoError::BadKey)?))
    }

    fn iv(&self) -> [u8; 16] {
        self.0[..16].try_into().expect("a 32-byte key has 16 bytes")
    }

    /// Encrypts `msg` for `appid` with the given 16-byte random prefix; returns the base64
    /// `Encrypt` text. (The prefix is a parameter so tests can reproduce known vectors.)
    pub fn encrypt_with_prefix(
        &self,
        prefix: &[u8; RANDOM_LEN],
        msg: &[u8],
        appid: &str,
    ) -> String {
        let len = u32::try_from(msg.len()).expect("a pushed message is far below 4 GiB");
        let mut plain = Vec::with_capacity(RANDOM_LEN + 4 + msg.len() + appid.len() + PAD_BLOCK);
        plain.extend_from_slice(prefix);
        plain.extend_from_slice(&len.to_be_bytes());
        plain.extend_from_slice(msg);
        plain.extend_from_slice(appid.as_bytes());
        let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
        plain.resize(plain.len() + pad, pad as u8);
        let n = plain.len();
        let cipher = cbc::Encryptor::<Aes256>::new(&self.0.into(), &self.iv().into());
        cipher
            .encrypt_padded_mut::<NoPadding>(&mut plain, n)
            .expect("the buffer is a whole number of blocks");
        STANDARD.encode(plain)
    }

    /// Encrypts `msg` for `appid` with a fresh random prefix.
    pub fn encrypt(&self, msg: &[u8], appid: &str) -> String {
        let prefix: [u8; RANDOM_LEN] = rand::random();
        self.encrypt_with_prefix(&prefix, msg, appid)
    }

    /// Decrypts an `Encrypt` text and checks that it is addressed to `appid`; returns the
    /// message (the inner XML).
    pub fn decrypt(&self, encrypt: &str, appid: &str) -> Result<Vec<u8>, CryptoError> {
        let (msg, found) = self.decrypt_any(encrypt)?;
        if found != appid.as_bytes() {
            return Err(CryptoError::WrongAppId);
        }
        Ok(msg)
    }

    /// Decrypts an `Encrypt` text; returns the message and the appid it names.
    pub fn decrypt_any(&self, encrypt: &str) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
        let mut buf = LENIENT
            .decode(encrypt.trim())
            .map_err(|_| CryptoError::BadCiphertext)?;
        if buf.is_empty() || buf.len() % 16 != 0 {
            return Err(CryptoError::BadCiphertext);
        }
        let cipher = cbc::Decryptor::<Aes256>::new(&self.0.into(), &self.iv().into());
        let plain = cipher
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| CryptoError::BadCiphertext)?;
        let plain = unpad(plain)?;
        if plain.len() < RANDOM_LEN + 4 {
            return Err(CryptoError::BadPlaintext);
        }
        let len_bytes: [u8; 4] = plain[RANDOM_LEN..RANDOM_LEN + 4]
            .try_into()
            .expect("4 bytes");
        let len = u32::from_be_bytes(len_bytes) as usize;
        let rest = &plain[RANDOM_LEN + 4..];
        if len > rest.len() {
            return Err(CryptoError::BadPlaintext);
        }
        let (msg, appid) = rest.split_at(len);
        Ok((msg.to_vec(), appid.to_vec()))
    }
}

/// Strips PKCS#7 padding to 32-byte blocks, checking every padding byte.
fn unpad(plain: &[u8]) -> Result<&[u8], CryptoError> {
    let pad = *plain.last().ok_or(CryptoError::BadPlaintext)? as usize;
    if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
        return Err(CryptoError::BadPlaintext);
    }
    let (body, padding) = plain.split_at(plain.len() - pad);
    if padding.iter().any(|b| *b as usize != pad) {
        return Err(CryptoError::BadPlaintext);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    // wechatpy/wechatpy tests/test_crypto.py: the same algorithm, a WeCom corp id as the appid.
    const TOKEN: &str = "123456";
    const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
    const APPID: &str = "wx49f0ab532d5d035a";

    #[test]
    fn the_official_handshake_vectors_verify() {
        assert_eq!(
            signature("AAAAA", "1714036504", "1514711492"),
            "f464b24fc39322e44b38aa78f5edd27bd1441696"
        );
        assert_eq!(
            signature("AAAAA", "1714037059", "486452656"),
            "899cf89e464efb63f54ddac96b0a0a235f53aa78"
        );
        assert!(signatures_match(
            &signature("AAAAA", "1714036504", "1514711492"),
            "f464b24fc39322e44b38aa78f5edd27bd1441696"
        ));
        assert!(!signatures_match(
            &signature("AAAAA", "1714036504", "1514711493"),
            "f464b24fc39322e44b38aa78f5edd27bd1441696"
        ));
        assert!(!signatures_match("abc", "ab"));
    }

    #[test]
    fn wechatpy_msg_signature_vector_verifies() {
        let echo = "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q==";
        assert_eq!(
            msg_signature(TOKEN, "1411443780", "437374425", echo),
            "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96"
        );
        assert_ne!(
            msg_signature(TOKEN, "1411443780", "437374424", echo),
            "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96"
        );
        let key = AesKey::from_encoding_aes_key(KEY).unwrap();
        assert!(key.decrypt(echo, APPID).is_ok());
    }

    #[test]
    fn wechatpy_encrypt_vector_is_reproduced() {
        let reply = "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>";
        let key = AesKey::from_encoding_aes_key(KEY).unwrap();
        let encrypt = key.encrypt_with_prefix(b"1234567890123456", reply.as_bytes(), APPID);
        assert_eq!(
            encrypt,
            "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3"
        );
        assert_eq!(
            msg_signature(TOKEN, "1411525903", "461056294", &encrypt),
            "407518b7649e86ef23978113f92d27afa9296533"
        );
    }

    #[test]
    fn wechatpy_decrypt_vector_is_read_and_the_appid_checked() {
        let encrypt = "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=";
        assert_eq!(
            msg_signature(TOKEN, "1411525903", "461056294", encrypt),
            "74d92dfeb87ba7c714f89d98870ae5eb62dff26d"
        );
        let key = AesKey::from_encoding_aes_key(KEY).unwrap();
        let msg = String::from_utf8(key.decrypt(encrypt, APPID).unwrap()).unwrap();
        assert!(msg.contains("<Content><![CDATA[test]]></Content>"), "{msg}");
        assert!(msg.contains("messense"), "{msg}");
        assert_eq!(
            key.decrypt(encrypt, "wxsomeoneelse0000"),
            Err(CryptoError::WrongAppId)
        );
    }

    // The safe-mode worked example of the official message-encryption guide (JSON data format):
    // Token "AAAAA", EncodingAESKey "A" x 43, appid wxba5fad812f8e6fb9.
    const OFFICIAL_ENCRYPT: &str = "+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJGQqcvZqzDpVzazhZv6JsXUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrfMZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8EajAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgRtWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04=";

    #[test]
    fn the_official_json_safe_mode_example_verifies_and_decrypts() {
        assert_eq!(
            signature("AAAAA", "1714112445", "415670741"),
            "6c5c811b55cc85e0e1b54100749188c20beb3f5d"
        );
        assert_eq!(
            msg_signature("AAAAA", "1714112445", "415670741", OFFICIAL_ENCRYPT),
            "046e02f8204d34f8ba5fa3b1db94908f3df2e9b3"
        );
        let key = AesKey::from_encoding_aes_key(&"A".repeat(43)).unwrap();
        let msg = key.decrypt(OFFICIAL_ENCRYPT, "wxba5fad812f8e6fb9").unwrap();
        assert_eq!(
            String::from_utf8(msg).unwrap(),
            r#"{"ToUserName":"gh_97417a04a28d","FromUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY","CreateTime":1714112445,"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}"#
        );
    }

    #[test]
    fn the_official_encrypted_reply_example_is_reproduced() {
        let key = AesKey::from_encoding_aes_key(&"A".repeat(43)).unwrap();
        let encrypt = key.encrypt_with_prefix(
            b"707722b803182950",
            br#"{"demo_resp":"good luck"}"#,
            "wxba5fad812f8e6fb9",
        );
        assert_eq!(
            encrypt,
            "ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ=="
        );
        assert_eq!(
            msg_signature("AAAAA", "1713424427", "415670741", &encrypt),
            "1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1"
        );
    }

    #[test]
    fn tampered_or_foreign_payloads_are_refused() {
        let key = AesKey::from_encoding_aes_key(KEY).unwrap();
        let good = key.encrypt(b"<xml><A>1</A></xml>", APPID);
        assert_eq!(key.decrypt(&good, APPID).unwrap(), b"<xml><A>1</A></xml>");
        let mut bytes = STANDARD.decode(&good).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        assert!(key.decrypt(&STANDARD.encode(&bytes), APPID).is_err());
        assert_eq!(
            key.decrypt("not base64!", APPID),
            Err(CryptoError::BadCiphertext)
        );
        assert_eq!(
            key.decrypt(&STANDARD.encode([0u8; 15]), APPID),
            Err(CryptoError::BadCiphertext)
        );
        let other = AesKey::from_encoding_aes_key(&"A".repeat(43)).unwrap();
        assert!(other.decrypt(&good, APPID).is_err());
        assert_eq!(
            AesKey::from_encoding_aes_key("short").unwrap_err(),
            CryptoError::BadKey
        );
        assert_eq!(format!("{key:?}"), "AesKey(REDACTED)");
    }
}
