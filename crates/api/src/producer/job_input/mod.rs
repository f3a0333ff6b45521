//! A job from an HTTP body: every problem found at once, each with the JSON pointer of the
//! offending value and a message a developer can act on — unlike [`Job::from_json`], which stops
//! at serde's first error. What WeChat would reject and wxnotify can know here is caught here:
//! an unknown app, a `not_after` already past (the job would die `expired`), a job too large for
//! the worker, and a job that breaks its template's rules (the template check).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

mod data;
mod pointer;

use self::data::{check_data, template_check};
pub use self::pointer::escape;
use self::pointer::{field, required};
use crate::producer::api_error::FieldError;
use wxnotify_core::domain::job::{MAX_JOB_BYTES, check_pagepath, check_url};
use wxnotify_core::domain::{
    AppName, Job, JobId, MiniProgramLink, MpSubscribe, Recipient, TemplateId,
};

/// The fields of a job, in the order the schema lists them.
const FIELDS: &[&str] = &[
    "id",
    "app",
    "to",
    "template_id",
    "data",
    "url",
    "miniprogram",
    "not_after",
    "truncate",
    "campaign_id",
    "mp_subscribe",
];

/// A job that passed every check, with what idempotency needs.
#[derive(Debug, Clone)]
pub struct AcceptedInput {
    /// The job, its `app` filled in with the caller's app when the body had none.
    pub job: Job,
    /// SHA-256 of the job's normalised JSON (the bytes published): the same job written
    /// differently (`"k": "v"` or `"k": {"value": "v"}`, other key order) hashes the same.
    pub content_sha256: [u8; 32],
    /// The JSON published to RabbitMQ.
    pub body: Vec<u8>,
    /// What the template check found worth telling the producer (each at its pointer); the
    /// job is sent all the same.
    pub warnings: Vec<FieldError>,
}

/// Why a job was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// 422: the values listed are wrong.
    Invalid(Vec<FieldError>),
    /// 403: the job names an app the caller's key is not for.
    ForbiddenApp(FieldError),
}

/// What the checks need to know about the caller and the server.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The app of the caller's key.
    pub caller_app: &'a AppName,
    /// The apps this server has configured.
    pub apps: &'a HashSet<AppName>,
    /// Now, for `not_after`.
    pub now: DateTime<Utc>,
    /// The caller's app's template catalog (`None` when it could not be read: then the worker's
    /// own check is the only one).
    pub catalog: Option<&'a wxnotify_services::templates::Catalog>,
}

/// Checks the job at `pointer` (`""` for a whole body, `/jobs/3` in a batch).
pub fn check_job(
    value: &Value,
    pointer: &str,
    cx: Context<'_>,
) -> Result<AcceptedInput, Rejection> {
    let Some(obj) = value.as_object() else {
        return Err(Rejection::Invalid(vec![FieldError::new(
            pointer,
            "a job must be a JSON object (see schemas/job.schema.json)",
        )]));
    };
    let mut errors = Vec::new();
    let at = |field: &str| format!("{pointer}/{field}");
    for key in obj.keys() {
        if !FIELDS.contains(&key.as_str()) {
            errors.push(FieldError::new(
                format!("{pointer}/{}", escape(key)),
                format!(
                    "unknown field {key:?}; a job has: id, app, to, template_id, data, url, miniprogram, not_after, truncate, mp_subscribe"
                ),
            ));
        }
    }
    let id: Option<JobId> = field(obj, "id", pointer, &mut errors);
    let app = check_app(obj, pointer, cx, &mut errors)?;
    let to: Option<Recipient> = required(
        obj,
        "to",
        pointer,
        &mut errors,
        "who to notify: {\"mp_openid\": …}, {\"unionid\": …} or {\"oa_openid\": …}",
    );
    let mp_subscribe: Option<MpSubscribe> = field(obj, "mp_subscribe", pointer, &mut errors);
    if let Some(e) = mp_subscribe
        .as_ref()
        .and_then(|s| s.page.as_deref())
        .and_then(|p| check_pagepath(p).err())
    {
        errors.push(FieldError::new(at("mp_subscribe/page"), e.to_string()));
    }
    // The OA template message: `template_id` and `data` together, or neither when the job has
    // `mp_subscribe` (or `mp_subscribe` is itself wrong: that error is already listed).
    let oa_optional = obj.contains_key("mp_subscribe")
        && !obj.contains_key("template_id")
        && !obj.contains_key("data");
    let template_id: Option<TemplateId> = if oa_optional {
        None
    } else {
        required(
            obj,
            "template_id",
            pointer,
            &mut errors,
            "the OA template's id (leave template_id and data out only for a job with mp_subscribe)",
        )
    };
    let data = match obj.get("data") {
        None if oa_optional => None,
        None => {
            errors.push(FieldError::new(
                at("data"),
                "required: the template's fields, e.g. {\"thing1\": \"订单已发货\"} (leave template_id and data out only for a job with mp_subscribe)",
            ));
            None
        }
        Some(v) => check_data(v, &at("data"), &mut errors),
    };
    let url: Option<url::Url> = field(obj, "url", pointer, &mut errors);
    if let Some(e) = url.as_ref().and_then(|u| check_url(u).err()) {
        errors.push(FieldError::new(at("url"), e.to_string()));
    }
    let miniprogram: Option<MiniProgramLink> = field(obj, "miniprogram", pointer, &mut errors);
    if let Some(e) = miniprogram
        .as_ref()
        .and_then(|mp| check_pagepath(&mp.pagepath).err())
    {
        errors.push(FieldError::new(at("miniprogram/pagepath"), e.to_string()));
    }
    let not_after: Option<DateTime<Utc>> = field(obj, "not_after", pointer, &mut errors);
    if let Some(t) = not_after
        && t <= cx.now
    {
        errors.push(FieldError::new(
            at("not_after"),
            format!("{} is already past: the job would expire without being sent; leave it out or give a later RFC 3339 time", t.to_rfc3339()),
        ));
    }
    let truncate: Option<bool> = field(obj, "truncate", pointer, &mut errors);
    if obj.contains_key("campaign_id") {
        errors.push(FieldError::new(
            at("campaign_id"),
            "set by campaign dispatch; leave it out of API requests",
        ));
    }
    let (Some(to), true) = (to, errors.is_empty()) else {
        return Err(Rejection::Invalid(errors));
    };
    let job = Job {
        id: id.unwrap_or_else(JobId::generate),
        app,
        to,
        template_id,
        data,
        mp_subscribe,
        url,
        miniprogram,
        not_after,
        campaign_id: None,
        truncate: truncate.unwrap_or(false),
    };
    // The same checks the worker makes, so nothing accepted here is dead `malformed` there.
    if let Err(e) = job.check() {
        return Err(Rejection::Invalid(vec![FieldError::new(
            pointer,
            e.to_string(),
        )]));
    }
    let warnings = template_check(&job, pointer, cx.catalog).map_err(Rejection::Invalid)?;
    let body = job.to_json();
    if body.len() > MAX_JOB_BYTES {
        return Err(Rejection::Invalid(vec![FieldError::new(
            pointer,
            format!(
                "the job is {} bytes as JSON; at most {MAX_JOB_BYTES} are allowed",
                body.len()
            ),
        )]));
    }
    let content_sha256 = Sha256::digest(&body).into();
    Ok(AcceptedInput {
        job,
        content_sha256,
        body,
        warnings,
    })
}

/// The job's app: its `app` field, or the caller's app when there is none. An app this server
/// does not have is 422; another app than the caller's is 403.
fn check_app(
    obj: &Map<String, Value>,
    pointer: &str,
    cx: Context<'_>,
    errors: &mut Vec<FieldError>,
) -> Result<AppName, Rejection> {
    let Some(app) = field::<AppName>(obj, "app", pointer, errors) else {
        if !cx.apps.contains(cx.caller_app) {
            errors.push(FieldError::new(
                format!("{pointer}/app"),
                format!(
                    "this API key's app {:?} is not configured on this server; configure it or use a key of a configured app",
                    cx.caller_app.as_str()
                ),
            ));
        }
        return Ok(cx.caller_app.clone());
    };
    let at = format!("{pointer}/app");
    if !cx.apps.contains(&app) {
        let mut known: Vec<&str> = cx.apps.iter().map(AppName::as_str).collect();
        known.sort_unstable();
        errors.push(FieldError::new(
            at,
            format!(
                "unknown app {:?}; this server has: {}",
                app.as_str(),
                known.join(", ")
            ),
        ));
        return Ok(cx.caller_app.clone());
    }
    if &app != cx.caller_app {
        return Err(Rejection::ForbiddenApp(FieldError::new(
            at,
            format!(
                "this API key is for app {:?}, not {:?}; use a key of that app (wxnotify api-key create --app {})",
                cx.caller_app.as_str(),
                app.as_str(),
                app.as_str()
            ),
        )));
    }
    Ok(app)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cx<'a>(caller: &'a AppName, apps: &'a HashSet<AppName>) -> Context<'a> {
        Context {
            caller_app: caller,
            apps,
            now: Utc::now(),
            catalog: None,
        }
    }

    fn apps() -> HashSet<AppName> {
        ["default", "shop"]
            .into_iter()
            .map(|a| AppName::parse(a).unwrap())
            .collect()
    }

    #[test]
    fn every_problem_is_reported_at_its_pointer() {
        let apps = apps();
        let caller = AppName::default_app();
        let body = json!({
            "id": "bad id",
            "to": {"email": "x"},
            "data": {"thing1": "", "time2": {"value": "ok"}, "bad key": "v", "n": 3},
            "url": "ftp://x",
            "miniprogram": {"appid": "wx1", "pagepath": "/pages/a"},
            "not_after": "2000-01-01T00:00:00Z",
            "extra/field": 1
        });
        let Err(Rejection::Invalid(errors)) = check_job(&body, "/jobs/2", cx(&caller, &apps))
        else {
            panic!("must be invalid");
        };
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        for expected in [
            "/jobs/2/id",
            "/jobs/2/to/email",
            "/jobs/2/template_id",
            "/jobs/2/data/thing1",
            "/jobs/2/data/bad key",
            "/jobs/2/data/n",
            "/jobs/2/url",
            "/jobs/2/miniprogram/pagepath",
            "/jobs/2/not_after",
            "/jobs/2/extra~1field",
        ] {
            assert!(
                pointers.contains(&expected),
                "{expected} missing from {errors:#?}"
            );
        }
    }

    #[test]
    fn truncate_is_a_field_of_a_job() {
        let apps = apps();
        let caller = AppName::default_app();
        let body = json!({"to": {"unionid": "u"}, "template_id": "t", "data": {"thing1": "x"}, "truncate": true});
        let accepted = check_job(&body, "", cx(&caller, &apps)).unwrap();
        assert!(accepted.job.truncate);
        let body = json!({"to": {"unionid": "u"}, "template_id": "t", "data": {"thing1": "x"}, "truncate": "yes"});
        let Err(Rejection::Invalid(errors)) = check_job(&body, "", cx(&caller, &apps)) else {
            panic!("a string is no bool");
        };
        assert_eq!(errors[0].pointer, "/truncate");
    }

    #[test]
    fn the_same_job_written_two_ways_hashes_the_same() {
        let apps = apps();
        let caller = AppName::default_app();
        let a = json!({"id": "j1", "to": {"unionid": "u"}, "template_id": "t", "data": {"a": "x", "b": "y"}});
        let b = json!({"data": {"b": {"value": "y"}, "a": "x"}, "template_id": "t", "app": "default", "to": {"unionid": "u"}, "id": "j1"});
        let a = check_job(&a, "", cx(&caller, &apps)).unwrap();
        let b = check_job(&b, "", cx(&caller, &apps)).unwrap();
        assert_eq!(a.content_sha256, b.content_sha256);
    }

    #[test]
    fn another_apps_job_is_forbidden_and_an_unknown_app_invalid() {
        let apps = apps();
        let caller = AppName::default_app();
        let job = |app: &str| json!({"app": app, "to": {"unionid": "u"}, "template_id": "t", "data": {"a": "x"}});
        assert!(
            matches!(check_job(&job("shop"), "", cx(&caller, &apps)), Err(Rejection::ForbiddenApp(e)) if e.pointer == "/app")
        );
        let Err(Rejection::Invalid(errors)) = check_job(&job("nope"), "", cx(&caller, &apps))
        else {
            panic!("unknown app is invalid");
        };
        assert_eq!(errors[0].pointer, "/app");
        assert!(errors[0].message.contains("default, shop"), "{errors:?}");
    }
}
