//! Strict admin input: a key the admin API does not know is a 400 naming it, never silently
//! ignored (a misspelt filter key would otherwise widen a purge to every letter, and `dryrun`
//! instead of `dry_run` would make a real run of a dry one).
//!
//! The known keys are read from the types' own serde derive ([`fields_of`]), so a field added
//! to a struct is known here at once: there is no second list to keep up to date.

use axum::extract::FromRequest;
use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer};

use crate::admin::error::AdminError;

/// The field names serde's derive gives `T` (a struct without `flatten`).
pub fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut probe = FieldsProbe(&[]);
    let _ = T::deserialize(&mut probe);
    probe.0
}

/// A deserializer that only records the field list it is asked for.
struct FieldsProbe(&'static [&'static str]);

#[derive(Debug)]
struct Probed;

impl std::fmt::Display for Probed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("probed")
    }
}

impl std::error::Error for Probed {}

impl de::Error for Probed {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Probed
    }
}

impl<'de> Deserializer<'de> for &mut FieldsProbe {
    type Error = Probed;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        Err(Probed)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Probed> {
        self.0 = fields;
        Err(Probed)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The first key of `keys` that is not in `known`, as the 400 to answer.
pub fn check_keys<'k>(
    what: &str,
    keys: impl IntoIterator<Item = &'k str>,
    known: &[&str],
) -> Result<(), AdminError> {
    for key in keys {
        if !known.contains(&key) {
            return Err(AdminError::BadRequest(format!(
                "unknown {what} {key:?}; known: {}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

/// Checks that every key of a query string is a field of one of `types` (400 naming the first
/// that is not).
pub fn check_query(raw: Option<&str>, known: &[&[&str]]) -> Result<(), AdminError> {
    let known: Vec<&str> = known.iter().flat_map(|k| k.iter().copied()).collect();
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    check_keys(
        "query parameter",
        pairs.iter().map(|(k, _)| k.as_str()),
        &known,
    )
}

/// A query string of `T`'s fields only: an unknown key, or a value that does not fit its field,
/// is a 400 naming it, as `{"error": …}`.
pub struct StrictQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for StrictQuery<T> {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, AdminError> {
        check_query(parts.uri.query(), &[fields_of::<T>()])?;
        let axum::extract::Query(value) = axum::extract::Query::try_from_uri(&parts.uri)
            .map_err(|e| AdminError::BadRequest(e.body_text()))?;
        Ok(StrictQuery(value))
    }
}

/// A JSON body whose every problem (an unknown key, a missing field, a number out of its type)
/// is a 400 with the message, as `{"error": …}`, instead of axum's plain-text 422.
pub struct StrictJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for StrictJson<T> {
    type Rejection = AdminError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, AdminError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| AdminError::BadRequest(e.body_text()))?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            AdminError::BadRequest(if path == "." {
                format!("the body is not valid: {inner}")
            } else {
                format!("{path}: {inner}")
            })
        })?;
        Ok(StrictJson(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Two {
        a: u32,
        #[serde(rename = "b_b")]
        b: Option<String>,
    }

    #[test]
    fn the_fields_come_from_the_derive() {
        assert_eq!(fields_of::<Two>(), ["a", "b_b"]);
    }

    #[test]
    fn an_unknown_key_is_named() {
        let err = check_query(Some("a=1&errode=2"), &[fields_of::<Two>()]).unwrap_err();
        assert!(err.to_string().contains("\"errode\""), "{err}");
        check_query(Some("a=1&b_b=x"), &[fields_of::<Two>()]).unwrap();
        check_query(None, &[fields_of::<Two>()]).unwrap();
    }
}
