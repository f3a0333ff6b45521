//! Reading WeChat's answers: whatever the Content-Type, the body is JSON; a missing `errcode`
//! means 0; `errcode` may even be a string; `errmsg` carries a request id (`rid`) to log.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// The error envelope every WeChat answer may carry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
pub struct Envelope {
    /// 0 (or absent) on success.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub errcode: i64,
    /// Human text; never compared, only logged.
    #[serde(default)]
    pub errmsg: String,
}

impl Envelope {
    /// The request id WeChat support asks for, from `"… rid: 65eac940-1a79c8dc-1be683b5"`
    /// (or the older `" hint: [xxxx]"`).
    pub fn rid(&self) -> Option<&str> {
        rid_of(&self.errmsg)
    }
}

/// Extracts the `rid` (or legacy `hint`) of an `errmsg`.
pub fn rid_of(errmsg: &str) -> Option<&str> {
    if let Some(i) = errmsg.find("rid: ") {
        let rest = &errmsg[i + 5..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(rest.len());
        return Some(&rest[..end]).filter(|s| !s.is_empty());
    }
    let i = errmsg.find("hint: [")?;
    let rest = &errmsg[i + 7..];
    rest.find(']').map(|end| &rest[..end])
}

/// Accepts `errcode` as a JSON integer or a string holding one.
fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Code {
        Int(i64),
        Str(String),
    }
    match Code::deserialize(d)? {
        Code::Int(i) => Ok(i),
        Code::Str(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// Why a body could not be read as an answer.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Empty or not JSON (WeChat once sent an empty `text/html` body for a bad secret): treated
    /// as a transport failure.
    #[error("WeChat answered with a body that is not JSON ({len} bytes): {source}")]
    NotJson {
        /// Body length.
        len: usize,
        /// The parser's complaint.
        source: serde_json::Error,
    },
}

/// Parses a body into its envelope and, when errcode is 0, its payload `T`.
///
/// Returns `Ok((envelope, None))` for an error answer, whose payload fields are absent.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<(Envelope, Option<T>), BodyError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|source| BodyError::NotJson {
            len: body.len(),
            source,
        })?;
    let envelope = Envelope::deserialize(&value).map_err(|source| BodyError::NotJson {
        len: body.len(),
        source,
    })?;
    if envelope.errcode != 0 {
        return Ok((envelope, None));
    }
    let payload = T::deserialize(value).map_err(|source| BodyError::NotJson {
        len: body.len(),
        source,
    })?;
    Ok((envelope, Some(payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct Token {
        access_token: String,
    }

    #[test]
    fn missing_errcode_is_success() {
        let (env, tok) = parse::<Token>(br#"{"access_token":"T","expires_in":7200}"#).unwrap();
        assert_eq!(env.errcode, 0);
        assert_eq!(tok.unwrap().access_token, "T");
    }

    #[test]
    fn errors_keep_code_message_and_rid() {
        let (env, tok) = parse::<Token>(
            br#"{"errcode":40001,"errmsg":"invalid credential, access_token is invalid or not latest rid: 65eac940-1a79c8dc-1be683b5"}"#,
        )
        .unwrap();
        assert_eq!(env.errcode, 40001);
        assert!(tok.is_none());
        assert_eq!(env.rid(), Some("65eac940-1a79c8dc-1be683b5"));
        assert_eq!(rid_of("system error hint: [abc123]"), Some("abc123"));
        assert_eq!(rid_of("ok"), None);
    }

    #[test]
    fn string_errcodes_are_accepted() {
        let (env, _) = parse::<serde_json::Value>(br#"{"errcode":"45009","errmsg":"x"}"#).unwrap();
        assert_eq!(env.errcode, 45009);
    }

    #[test]
    fn empty_and_html_bodies_are_errors() {
        assert!(parse::<Token>(b"").is_err());
        assert!(parse::<Token>(b"<html>bad gateway</html>").is_err());
    }
}
