//! Reading what a caller sent: query parameters and JSON bodies, turned into WeChat errors
//! (never panics) when malformed.

use serde::Deserialize;

/// The decoded query string of a call.
#[derive(Debug, Default)]
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    /// Decodes `query` (`a=1&b=2`, percent-encoded); no query is an empty set.
    pub(super) fn parse(query: Option<&str>) -> Params {
        let pairs = query
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        Params(pairs)
    }

    /// The first value of `name`, if present.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a JSON body; anything else (empty, form-encoded, wrong types) is 47001
/// `data format error`, as the real API answers.
pub(super) fn json_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, i64> {
    serde_json::from_slice(body).map_err(|_| 47001)
}
