//! The `Idempotency-Key` header of `POST /v1/notifications`: another way to give the job's
//! `id`, with the same meaning (the key is the job id). Both given and different is a 400; a
//! request with neither gets an id made by the server and is not idempotent (a retry of it
//! sends a second message).

use axum::http::HeaderMap;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::producer::api_error::ApiError;
use wxnotify_core::domain::JobId;

/// The header's name.
pub const HEADER: &str = "idempotency-key";

/// The body with the header's key as its `id` (`None`: no header, the body as it is). 400 when
/// the key is not a valid job id, when the body is not an object, or when the body's `id` is
/// another one.
pub(super) fn with_key(
    headers: &HeaderMap,
    body: &RawValue,
) -> Result<Option<Box<RawValue>>, ApiError> {
    let Some(key) = key(headers)? else {
        return Ok(None);
    };
    let Ok(Value::Object(mut job)) = serde_json::from_str::<Value>(body.get()) else {
        // Not an object: the job check says what is wrong with it, at its pointer.
        return Ok(None);
    };
    match job.get("id") {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) if id == key.as_str() => return Ok(None),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "the Idempotency-Key header ({:?}) and the body's id ({other}) differ: they are the same thing (the job id); give one, or both equal",
                key.as_str()
            )));
        }
    }
    job.insert("id".into(), Value::String(key.as_str().to_owned()));
    let text = serde_json::to_string(&job).map_err(ApiError::internal)?;
    RawValue::from_string(text)
        .map(Some)
        .map_err(ApiError::internal)
}

/// A batch's items each carry their own `id`: a header for the whole request is refused rather
/// than ignored.
pub(super) fn refuse_on_batch(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.contains_key(HEADER) {
        return Err(ApiError::BadRequest(
            "Idempotency-Key applies to POST /v1/notifications; in a batch give each job its own `id`".into(),
        ));
    }
    Ok(())
}

/// The header's key as a job id, when there is one.
fn key(headers: &HeaderMap) -> Result<Option<JobId>, ApiError> {
    let Some(raw) = headers.get(HEADER) else {
        return Ok(None);
    };
    let text = raw.to_str().map_err(|_| {
        ApiError::BadRequest("the Idempotency-Key header must be visible ASCII text".into())
    })?;
    JobId::parse(text.to_owned())
        .map(Some)
        .map_err(|e| ApiError::BadRequest(format!("the Idempotency-Key header is the job id: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, key.parse().unwrap());
        h
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn the_key_becomes_the_jobs_id_and_a_different_id_is_refused() {
        let body = raw(r#"{"to":{"unionid":"u"}}"#);
        let keyed = with_key(&headers("order-1"), &body).unwrap().unwrap();
        let v: Value = serde_json::from_str(keyed.get()).unwrap();
        assert_eq!(v["id"], "order-1");
        assert!(with_key(&HeaderMap::new(), &body).unwrap().is_none());
        let same = raw(r#"{"id":"order-1"}"#);
        assert!(with_key(&headers("order-1"), &same).unwrap().is_none());
        let other = raw(r#"{"id":"order-2"}"#);
        let e = with_key(&headers("order-1"), &other).unwrap_err();
        assert!(matches!(e, ApiError::BadRequest(m) if m.contains("differ")));
        assert!(with_key(&headers("bad id"), &body).is_err());
    }
}
