//! The job's `data` object: each template field checked at its own pointer, then the job
//! against its app's template catalog.

use serde_json::Value;

use crate::producer::api_error::FieldError;
use crate::producer::job_input::pointer::escape;
use wxnotify_core::domain::template::{MAX_FIELDS, MAX_VALUE_CHARS};
use wxnotify_core::domain::{FieldKey, Job, TemplateData};

/// The job against its app's template catalog (the check the worker makes again before
/// sending): each problem at the JSON pointer of what to change, or, when it may be sent, the
/// warnings worth telling the producer (each at its pointer too) and the values `truncate`
/// will shorten.
pub(super) fn template_check(
    job: &Job,
    pointer: &str,
    catalog: Option<&wxnotify_services::templates::Catalog>,
) -> Result<Vec<FieldError>, Vec<FieldError>> {
    use wxnotify_services::templates::{Problem, Warning};
    let Some(catalog) = catalog else {
        return Ok(Vec::new());
    };
    let data_key = |key: &str| format!("{pointer}/data/{}", escape(key));
    let refusal = match wxnotify_services::templates::check_job(catalog, job) {
        Ok(checked) => {
            let mut warnings: Vec<FieldError> = checked
                .warnings
                .iter()
                .map(|w| {
                    let at = match w {
                        Warning::CatalogNotSynced | Warning::NotInCatalog => {
                            format!("{pointer}/template_id")
                        }
                        Warning::Ignored { key }
                        | Warning::Unconfirmed { key, .. }
                        | Warning::Folded { key, .. } => data_key(key),
                    };
                    FieldError::new(at, w.to_string())
                })
                .collect();
            warnings.extend(checked.truncations.iter().map(|t| {
                FieldError::new(
                    data_key(&t.key),
                    format!(
                        "shortened from {} to {} characters (\"truncate\": true)",
                        t.from, t.to
                    ),
                )
            }));
            return Ok(warnings);
        }
        Err(refusal) => refusal,
    };
    Err(refusal
        .problems
        .iter()
        .flat_map(|problem| match problem {
            Problem::DeletedTemplate { .. } => {
                vec![FieldError::new(
                    format!("{pointer}/template_id"),
                    problem.to_string(),
                )]
            }
            Problem::MissingKeys { .. } => {
                vec![FieldError::new(
                    format!("{pointer}/data"),
                    problem.to_string(),
                )]
            }
            Problem::UnknownKeys { keys } => keys
                .iter()
                .map(|k| {
                    FieldError::new(
                        data_key(k),
                        format!(
                            "not a placeholder of template {}: remove it",
                            job.ledger_template()
                        ),
                    )
                })
                .collect(),
            Problem::LineBreak { key } | Problem::TypeRule { key, .. } => {
                vec![FieldError::new(data_key(key), problem.to_string())]
            }
        })
        .collect())
}

/// Checks `data` field by field, so that every bad field is reported at its own pointer.
pub(super) fn check_data(
    value: &Value,
    at: &str,
    errors: &mut Vec<FieldError>,
) -> Option<TemplateData> {
    let Some(obj) = value.as_object() else {
        errors.push(FieldError::new(
            at,
            "must be an object of template fields, e.g. {\"thing1\": \"订单已发货\"}",
        ));
        return None;
    };
    let before = errors.len();
    if obj.is_empty() {
        errors.push(FieldError::new(at, "needs at least one template field"));
    }
    if obj.len() > MAX_FIELDS {
        errors.push(FieldError::new(
            at,
            format!("has {} fields; at most {MAX_FIELDS} are allowed", obj.len()),
        ));
    }
    let mut fields = std::collections::BTreeMap::new();
    for (key, v) in obj {
        let field_at = format!("{at}/{}", escape(key));
        let key = match FieldKey::parse(key.as_str()) {
            Ok(k) => k,
            Err(e) => {
                errors.push(FieldError::new(
                    &field_at,
                    format!("{e} (template placeholders look like thing1, time2)"),
                ));
                continue;
            }
        };
        let (text, value_at) = match v {
            Value::String(s) => (s, field_at),
            Value::Object(o) if o.len() == 1 && o.get("value").is_some_and(Value::is_string) => {
                let Some(Value::String(s)) = o.get("value") else {
                    unreachable!("checked to be a string")
                };
                (s, format!("{field_at}/value"))
            }
            _ => {
                errors.push(FieldError::new(
                    field_at,
                    "must be a string or {\"value\": \"…\"}",
                ));
                continue;
            }
        };
        let chars = text.chars().count();
        if text.trim().is_empty() {
            errors.push(FieldError::new(
                value_at,
                "is empty; WeChat refuses empty template values (47003)",
            ));
        } else if chars > MAX_VALUE_CHARS {
            errors.push(FieldError::new(
                value_at,
                format!("is {chars} characters long; at most {MAX_VALUE_CHARS} are allowed"),
            ));
        } else if text.chars().any(char::is_control) {
            errors.push(FieldError::new(
                value_at,
                "contains a control character (line breaks are not shown by WeChat)",
            ));
        } else {
            fields.insert(key, text.clone());
        }
    }
    if errors.len() > before {
        return None;
    }
    match TemplateData::new(fields) {
        Ok(data) => Some(data),
        Err(e) => {
            errors.push(FieldError::new(at, e.to_string()));
            None
        }
    }
}
