//! The job: "notify user X with template Y". Its JSON form is the contract for producers in any
//! language; `schemas/job.schema.json` is generated from these types (`wxnotify schema`).
//! Who it is for is [`Recipient`] (in `recipient`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{AppId, AppName, JobId, TemplateData, TemplateId};

mod recipient;

pub use recipient::Recipient;

/// The largest encoded job accepted, in bytes. A template message is small; anything larger is
/// a bug or an attack and is refused (or dead-lettered as `malformed`).
pub const MAX_JOB_BYTES: usize = 16 * 1024;
/// The longest `url`, in bytes.
pub const MAX_URL_BYTES: usize = 1024;
/// The longest `miniprogram.pagepath`, in bytes.
pub const MAX_PAGEPATH_BYTES: usize = 256;

/// Where a tap on the message opens a Mini Program page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "an object {\"appid\": \"wx…\", \"pagepath\": \"pages/…\"}"
)]
pub struct MiniProgramLink {
    /// The Mini Program's appid; it must be linked to the OA.
    pub appid: AppId,
    /// A page of the published Mini Program, without a leading `/`, query allowed
    /// (`pages/order?id=1`).
    pub pagepath: String,
}

/// `miniprogram_state` of a subscribe message: which version of the Mini Program a tap opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MiniprogramState {
    /// The developer version.
    Developer,
    /// The trial version.
    Trial,
    /// The released version (WeChat's default).
    Formal,
}

/// The Mini Program subscribe message a job sends when the person does not follow the OA (or
/// when the job has no OA template message): it spends one of the person's grants for
/// `template_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MpSubscribe {
    /// The Mini Program's subscribe template (`priTmplId`).
    pub template_id: TemplateId,
    /// The template's fields, in the same form as the OA template's `data`.
    pub data: TemplateData,
    /// A page of the released Mini Program opened on tap, without a leading `/`, query allowed
    /// (`pages/order?id=1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// Which version of the Mini Program a tap opens (WeChat's default: `formal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miniprogram_state: Option<MiniprogramState>,
}

/// A request to send one notification to one person: the OA template message (`template_id`,
/// `data`), the Mini Program subscribe message (`mp_subscribe`), or either, the OA's first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a job object (see schemas/job.schema.json)"
)]
pub struct Job {
    /// Idempotency key, also WeChat's `client_msg_id`. A job id that was already sent is not
    /// sent again. Generated when the producer leaves it out.
    #[serde(default = "generated_id")]
    pub id: JobId,
    /// Which configured OA / Mini Program pair sends it.
    #[serde(default = "AppName::default_app")]
    pub app: AppName,
    /// The recipient.
    pub to: Recipient,
    /// The OA template (with `data`; leave both out for a job that only has `mp_subscribe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<TemplateId>,
    /// The OA template's fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<TemplateData>,
    /// Optional web page opened on tap (http or https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Url>,
    /// Optional Mini Program page opened on tap (preferred over `url` by WeChat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miniprogram: Option<MiniProgramLink>,
    /// A notification too late to be useful: not sent after this instant (dead, reason `expired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<DateTime<Utc>>,
    /// Set by campaign dispatch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<uuid::Uuid>,
    /// Shorten values that break their field type's length rule (`thing` > 20 characters …)
    /// instead of refusing the job. Off by default: never silent, and every cut is recorded on
    /// the ledger (`deliveries.truncated`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncate: bool,
    /// The Mini Program subscribe message sent when the person does not follow the OA and holds
    /// a grant for its template; without it such a person's job dies `not_following`, with it
    /// (and no grant left) `no_channel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mp_subscribe: Option<MpSubscribe>,
}

thread_local! {
    /// Set when deserialising a job on this thread filled in a missing `id` (deserialisation is
    /// synchronous, so the flag belongs to the job being parsed): tells the consumer, without a
    /// second parse, that the producer sent no id.
    static ID_GENERATED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The `id` of a job published without one.
fn generated_id() -> JobId {
    ID_GENERATED.set(true);
    JobId::generate()
}

/// Why bytes were refused as a job. The message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Larger than [`MAX_JOB_BYTES`].
    #[error("job is {0} bytes, at most {MAX_JOB_BYTES} are allowed")]
    TooLarge(usize),
    /// Not JSON, or not a job (the serde message names the field and position).
    #[error("not a valid job: {0}")]
    Invalid(#[from] serde_json::Error),
    /// `url` is not http(s) or too long.
    #[error("url must be an http or https URL of at most {MAX_URL_BYTES} bytes")]
    BadUrl,
    /// `miniprogram.pagepath` has a leading `/`, whitespace, or is too long or empty.
    #[error(
        "miniprogram.pagepath must be a page path like \"pages/order?id=1\": no leading '/', no whitespace, at most {MAX_PAGEPATH_BYTES} bytes"
    )]
    BadPagepath,
    /// `mp_subscribe.page` has a leading `/`, whitespace, or is too long or empty.
    #[error(
        "mp_subscribe.page must be a page path like \"pages/order?id=1\": no leading '/', no whitespace, at most {MAX_PAGEPATH_BYTES} bytes"
    )]
    BadPage,
    /// `template_id` without `data` or the other way round.
    #[error(
        "template_id and data go together: give both (the OA template message) or neither (a job with only mp_subscribe)"
    )]
    HalfOaMessage,
    /// Neither an OA template message nor a subscribe message.
    #[error(
        "nothing to send: give template_id and data (the OA template message), mp_subscribe (the Mini Program subscribe message), or both"
    )]
    NoMessage,
}

impl Job {
    /// A job for the default app with a new id and no link or deadline.
    pub fn new(to: Recipient, template_id: TemplateId, data: TemplateData) -> Self {
        Job {
            id: JobId::generate(),
            app: AppName::default_app(),
            to,
            template_id: Some(template_id),
            data: Some(data),
            url: None,
            miniprogram: None,
            not_after: None,
            campaign_id: None,
            truncate: false,
            mp_subscribe: None,
        }
    }

    /// The OA template message, when the job has one.
    pub fn oa_message(&self) -> Option<(&TemplateId, &TemplateData)> {
        self.template_id.as_ref().zip(self.data.as_ref())
    }

    /// The template the ledger files the job under: the OA template, else the subscribe
    /// template. Every checked job has one.
    pub fn ledger_template(&self) -> &str {
        match (&self.template_id, &self.mp_subscribe) {
            (Some(t), _) => t.as_str(),
            (None, Some(mp)) => mp.template_id.as_str(),
            (None, None) => "",
        }
    }

    /// Parses and checks a job from its JSON bytes: the one way bytes become a `Job`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, JobError> {
        if bytes.len() > MAX_JOB_BYTES {
            return Err(JobError::TooLarge(bytes.len()));
        }
        let job: Job = serde_json::from_slice(bytes)?;
        job.check()?;
        Ok(job)
    }

    /// Like [`Job::from_json`], for a consumer: a job without `id` gets a stable one, the same
    /// on every redelivery (`message_id` when it is a valid id, else a UUID v5 of the bytes),
    /// so the ledger recognises it when it comes again.
    pub fn from_json_with_fallback_id(
        bytes: &[u8],
        message_id: Option<&str>,
    ) -> Result<Self, JobError> {
        ID_GENERATED.set(false);
        let mut job = Self::from_json(bytes)?;
        if ID_GENERATED.get() {
            job.id = message_id
                .and_then(|m| JobId::parse(m).ok())
                .unwrap_or_else(|| JobId::from_content(bytes));
        }
        Ok(job)
    }

    /// Checks what serde's types cannot express.
    pub fn check(&self) -> Result<(), JobError> {
        if let Some(url) = &self.url {
            check_url(url)?;
        }
        if let Some(mp) = &self.miniprogram {
            check_pagepath(&mp.pagepath)?;
        }
        if self.template_id.is_some() != self.data.is_some() {
            return Err(JobError::HalfOaMessage);
        }
        if let Some(sub) = &self.mp_subscribe {
            if let Some(page) = &sub.page {
                check_pagepath(page).map_err(|_| JobError::BadPage)?;
            }
        } else if self.template_id.is_none() {
            return Err(JobError::NoMessage);
        }
        Ok(())
    }

    /// The JSON bytes published to RabbitMQ.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a Job always serialises")
    }
}

/// The one decision whether a link may be sent on tap: http or https, at most
/// [`MAX_URL_BYTES`] (a `javascript:` or `ftp:` URL is refused). Jobs, the producer API and
/// campaigns all ask here.
pub fn check_url(url: &Url) -> Result<(), JobError> {
    if !matches!(url.scheme(), "http" | "https") || url.as_str().len() > MAX_URL_BYTES {
        return Err(JobError::BadUrl);
    }
    Ok(())
}

/// The one decision whether a Mini Program page path may be sent: not empty, no leading `/`,
/// no whitespace or control characters, at most [`MAX_PAGEPATH_BYTES`].
pub fn check_pagepath(p: &str) -> Result<(), JobError> {
    if p.is_empty()
        || p.starts_with('/')
        || p.len() > MAX_PAGEPATH_BYTES
        || p.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(JobError::BadPagepath);
    }
    Ok(())
}

/// The JSON Schema of a job, pretty-printed; `schemas/job.schema.json` holds the same text.
pub fn schema_json() -> String {
    let mut schema = schemars::schema_for!(Job);
    // The generated id is a per-process default, not part of the contract.
    if let Some(id) = schema
        .get_mut("properties")
        .and_then(|p| p.get_mut("id"))
        .and_then(|id| id.as_object_mut())
    {
        id.remove("default");
    }
    serde_json::to_string_pretty(&schema).expect("a schema always serialises") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OpenId;

    const GOOD: &str = r#"{
        "id": "order-1-shipped",
        "to": {"mp_openid": "oMP123"},
        "template_id": "ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY",
        "data": {"thing1": "订单已发货", "time2": {"value": "2026-11-24 10:00"}},
        "url": "https://example.com/orders/1",
        "miniprogram": {"appid": "wx1234567890abcdef", "pagepath": "pages/order?id=1"},
        "not_after": "2026-11-24T12:00:00Z"
    }"#;

    #[test]
    fn no_error_names_an_internal_type() {
        let messages = [
            serde_json::from_value::<Recipient>(serde_json::json!(5))
                .unwrap_err()
                .to_string(),
            serde_json::from_value::<Recipient>(serde_json::json!("oMP1"))
                .unwrap_err()
                .to_string(),
            serde_json::from_value::<MiniProgramLink>(serde_json::json!("pages/a"))
                .unwrap_err()
                .to_string(),
            serde_json::from_value::<TemplateData>(serde_json::json!({"thing1": 5}))
                .unwrap_err()
                .to_string(),
            serde_json::from_value::<Job>(serde_json::json!([1]))
                .unwrap_err()
                .to_string(),
        ];
        for m in &messages {
            for leak in ["struct", "enum", "Raw", "Field", "MiniProgramLink", "Job"] {
                assert!(!m.contains(leak), "{m:?} names {leak}");
            }
        }
        assert!(messages[0].contains("mp_openid"), "{}", messages[0]);
        assert!(messages[3].contains("{\"value\""), "{}", messages[3]);
    }

    #[test]
    fn a_full_job_parses_with_defaults_filled() {
        let job = Job::from_json(GOOD.as_bytes()).unwrap();
        assert_eq!(job.app, AppName::default_app());
        assert_eq!(
            job.to,
            Recipient::MpOpenid(OpenId::parse("oMP123").unwrap())
        );
        let again = Job::from_json(&job.to_json()).unwrap();
        assert_eq!(again, job);
    }

    #[test]
    fn a_job_without_id_gets_one() {
        let job = Job::from_json(br#"{"to":{"unionid":"u1"},"template_id":"t","data":{"k":"v"}}"#)
            .unwrap();
        assert!(!job.id.as_str().is_empty());
    }

    #[test]
    fn bad_jobs_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("{", "EOF"),
            (
                r#"{"to":{"mp_openid":"o","unionid":"u"},"template_id":"t","data":{"k":"v"}}"#,
                "exactly one of",
            ),
            (
                r#"{"to":{"email":"x"},"template_id":"t","data":{"k":"v"}}"#,
                "unknown field `email`",
            ),
            (
                r#"{"template_id":"t","data":{"k":"v"}}"#,
                "missing field `to`",
            ),
            (
                r#"{"to":{"unionid":"u"},"template_id":"t","data":{"k":"v"},"url":"javascript:alert(1)"}"#,
                "http or https",
            ),
            (
                r#"{"to":{"unionid":"u"},"template_id":"t","data":{"k":"v"},"miniprogram":{"appid":"wx1","pagepath":"/pages/a"}}"#,
                "no leading '/'",
            ),
            (
                r#"{"to":{"unionid":"u"},"template_id":"t","data":{"k":1}}"#,
                "data",
            ),
            (
                r#"{"to":{"unionid":"u"},"template_id":"t","data":{"k":"v"},"extra":1}"#,
                "unknown field `extra`",
            ),
            (r#"{"to":{"unionid":"u"},"template_id":"t"}"#, "go together"),
            (r#"{"to":{"unionid":"u"}}"#, "nothing to send"),
            (
                r#"{"to":{"unionid":"u"},"mp_subscribe":{"template_id":"m","data":{"k":"v"},"page":"/index"}}"#,
                "mp_subscribe.page",
            ),
            (
                r#"{"to":{"unionid":"u"},"mp_subscribe":{"template_id":"m","data":{"k":"v"},"miniprogram_state":"beta"}}"#,
                "unknown variant `beta`",
            ),
        ];
        for (input, expect) in cases {
            let err = Job::from_json(input.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(expect), "{input} -> {err}");
        }
    }

    #[test]
    fn a_job_without_id_gets_the_same_id_on_every_delivery() {
        let body = br#"{"to":{"unionid":"u1"},"template_id":"t","data":{"k":"v"}}"#;
        let a = Job::from_json_with_fallback_id(body, None).unwrap();
        let b = Job::from_json_with_fallback_id(body, None).unwrap();
        assert_eq!(a.id, b.id);
        let c = Job::from_json_with_fallback_id(body, Some("m-1")).unwrap();
        assert_eq!(c.id.as_str(), "m-1");
        let d = Job::from_json_with_fallback_id(GOOD.as_bytes(), Some("m-1")).unwrap();
        assert_eq!(d.id.as_str(), "order-1-shipped");
    }

    #[test]
    fn a_job_may_carry_only_the_subscribe_message() {
        let job = Job::from_json(
            br#"{"to":{"mp_openid":"oMP1"},"mp_subscribe":{"template_id":"mT1","data":{"thing1":"v"},"page":"index?x=1","miniprogram_state":"trial"}}"#,
        )
        .unwrap();
        assert!(job.oa_message().is_none());
        assert_eq!(job.ledger_template(), "mT1");
        let sub = job.mp_subscribe.as_ref().unwrap();
        assert_eq!(sub.miniprogram_state, Some(MiniprogramState::Trial));
        assert_eq!(Job::from_json(&job.to_json()).unwrap(), job);
    }

    #[test]
    fn huge_jobs_are_refused_before_parsing() {
        let big = vec![b' '; MAX_JOB_BYTES + 1];
        assert!(matches!(Job::from_json(&big), Err(JobError::TooLarge(_))));
    }
}
