//! Reading a batch body, `{"jobs": [job, …]}`, in memory near its size: the jobs are kept as
//! slices of the body (`&RawValue`), each parsed only when it is checked, and the array is
//! refused as soon as it passes [`MAX_BATCH`] items. No tree of the whole body is built, so an
//! 8 MiB `{"jobs":[0,0,…]}` costs its 8 MiB and no more.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::MAX_BATCH;
use crate::producer::api_error::{ApiError, FieldError};
use crate::producer::job_input;

/// Unknown top-level keys listed in an answer (all are refused).
const MAX_UNKNOWN_LISTED: usize = 20;

/// Parses a JSON body into a slice of it, or 400 when it is not JSON.
pub(super) fn raw_body(body: &[u8]) -> Result<&RawValue, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))
}

/// The jobs of a batch body, each a slice of the body; 400 when the body is not JSON, 422 when
/// it is not a batch of 1 to [`MAX_BATCH`] jobs with no other key.
pub(super) fn jobs(body: &[u8]) -> Result<Vec<&RawValue>, ApiError> {
    let raw = raw_body(body)?;
    if !raw.get().starts_with('{') {
        return Err(invalid("", "a batch is an object: {\"jobs\": [job, …]}"));
    }
    let too_many = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let parsed = de
        .deserialize_map(BatchVisitor {
            too_many: &too_many,
        })
        .map_err(|e| {
            if too_many.get() {
                invalid(
                    "/jobs",
                    format!(
                        "has more than {MAX_BATCH} jobs; a batch holds 1 to {MAX_BATCH} (split larger ones)"
                    ),
                )
            } else {
                ApiError::BadRequest(format!("the body is not JSON: {e}"))
            }
        })?;
    if !parsed.unknown.is_empty() {
        return Err(ApiError::Invalid(
            parsed
                .unknown
                .iter()
                .map(|k| {
                    FieldError::new(
                        format!("/{}", job_input::escape(k)),
                        "unknown field; a batch has only `jobs`",
                    )
                })
                .collect(),
        ));
    }
    match parsed.jobs {
        Some(Jobs::Items(items)) if !items.is_empty() => Ok(items),
        Some(Jobs::Items(_)) => Err(invalid(
            "/jobs",
            format!("has 0 jobs; a batch holds 1 to {MAX_BATCH}"),
        )),
        Some(Jobs::NotArray) | None => Err(invalid(
            "/jobs",
            format!("required: an array of 1 to {MAX_BATCH} jobs"),
        )),
    }
}

fn invalid(pointer: &str, message: impl Into<String>) -> ApiError {
    ApiError::Invalid(vec![FieldError::new(pointer, message)])
}

/// The `jobs` value.
enum Jobs<'a> {
    Items(Vec<&'a RawValue>),
    NotArray,
}

/// What the top-level object held.
struct Parsed<'a> {
    jobs: Option<Jobs<'a>>,
    unknown: Vec<String>,
}

struct BatchVisitor<'c> {
    too_many: &'c Cell<bool>,
}

impl<'de> Visitor<'de> for BatchVisitor<'_> {
    type Value = Parsed<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a batch object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed<'de>, A::Error> {
        let mut parsed = Parsed {
            jobs: None,
            unknown: Vec::new(),
        };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "jobs" {
                parsed.jobs = Some(map.next_value_seed(JobsSeed {
                    too_many: self.too_many,
                })?);
            } else {
                map.next_value::<IgnoredAny>()?;
                if parsed.unknown.len() < MAX_UNKNOWN_LISTED {
                    parsed.unknown.push(key.into_owned());
                }
            }
        }
        Ok(parsed)
    }
}

struct JobsSeed<'c> {
    too_many: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for JobsSeed<'_> {
    type Value = Jobs<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Jobs<'de>, D::Error> {
        let raw = <&'de RawValue as serde::Deserialize>::deserialize(d)?;
        if !raw.get().starts_with('[') {
            return Ok(Jobs::NotArray);
        }
        let mut de = serde_json::Deserializer::from_str(raw.get());
        de.deserialize_seq(ItemsVisitor {
            too_many: self.too_many,
        })
        .map(Jobs::Items)
        .map_err(de::Error::custom)
    }
}

struct ItemsVisitor<'c> {
    too_many: &'c Cell<bool>,
}

impl<'de> Visitor<'de> for ItemsVisitor<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of jobs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_BATCH));
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if items.len() == MAX_BATCH {
                self.too_many.set(true);
                return Err(de::Error::custom("too many jobs"));
            }
            items.push(item);
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointer_of(e: ApiError) -> String {
        match e {
            ApiError::Invalid(v) => v[0].pointer.clone(),
            other => panic!("not a 422: {other:?}"),
        }
    }

    #[test]
    fn the_jobs_are_slices_of_the_body() {
        let body = br#"{"jobs": [{"a": 1}, 2 , "x"]}"#;
        let jobs = jobs(body).unwrap();
        let texts: Vec<&str> = jobs.iter().map(|j| j.get()).collect();
        assert_eq!(texts, [r#"{"a": 1}"#, "2", r#""x""#]);
    }

    #[test]
    fn a_batch_past_its_limit_is_refused_while_reading() {
        let mut body = String::from("{\"jobs\":[");
        for _ in 0..=MAX_BATCH {
            body.push_str("0,");
        }
        body.push_str("0]}");
        let e = jobs(body.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("more than 1000") || pointer_of(e) == "/jobs");
        assert!(matches!(
            jobs(b"{\"jobs\":[0,"),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn not_a_batch_is_a_422_at_its_pointer() {
        assert_eq!(pointer_of(jobs(b"[1]").unwrap_err()), "");
        assert_eq!(pointer_of(jobs(b"{\"jobs\":[]}").unwrap_err()), "/jobs");
        assert_eq!(pointer_of(jobs(b"{\"jobs\":{}}").unwrap_err()), "/jobs");
        assert_eq!(pointer_of(jobs(b"{}").unwrap_err()), "/jobs");
        assert_eq!(
            pointer_of(jobs(b"{\"jobs\":[1],\"job\":2}").unwrap_err()),
            "/job"
        );
        assert!(matches!(jobs(b"nope"), Err(ApiError::BadRequest(_))));
    }
}
