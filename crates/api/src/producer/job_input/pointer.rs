//! JSON-pointer plumbing for the job checks: escaping a reference token, and reading a field
//! with its type so that a problem is reported at the pointer of the offending value.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::producer::api_error::FieldError;

/// Escapes one reference token of a JSON pointer (RFC 6901).
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// An optional field, checked with its type; a problem is recorded at its pointer (deeper
/// inside the value when serde can say where).
pub(super) fn field<T: DeserializeOwned>(
    obj: &Map<String, Value>,
    name: &str,
    pointer: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let value = obj.get(name)?;
    if value.is_null() {
        return None;
    }
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let mut at = format!("{pointer}/{name}");
            for segment in e.path().iter() {
                match segment {
                    serde_path_to_error::Segment::Seq { index } => {
                        at.push_str(&format!("/{index}"))
                    }
                    serde_path_to_error::Segment::Map { key } => {
                        at.push('/');
                        at.push_str(&escape(key));
                    }
                    serde_path_to_error::Segment::Enum { variant } => {
                        at.push('/');
                        at.push_str(&escape(variant));
                    }
                    serde_path_to_error::Segment::Unknown => {}
                }
            }
            errors.push(FieldError::new(at, e.into_inner().to_string()));
            None
        }
    }
}

/// A required field; its absence is reported with what it should hold.
pub(super) fn required<T: DeserializeOwned>(
    obj: &Map<String, Value>,
    name: &str,
    pointer: &str,
    errors: &mut Vec<FieldError>,
    what: &str,
) -> Option<T> {
    if obj.get(name).is_none_or(Value::is_null) {
        errors.push(FieldError::new(
            format!("{pointer}/{name}"),
            format!("required: {what}"),
        ));
        return None;
    }
    field(obj, name, pointer, errors)
}
