//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' annotations and types
//! (utoipa) — `schemas/openapi.json` holds the same text (a test fails when they drift;
//! regenerate with `UPDATE_SCHEMAS=1 cargo nextest run -E 'test(openapi)'`). `serve` answers the
//! public part (no `/admin` path) at `GET /openapi.json` on the public address, and the whole
//! document at `GET /admin/openapi.json` (behind the admin check) and at `GET /openapi.json` of
//! `--admin-listen`.
//!
//! The job's schema is not described twice: the `Job` component is the JSON Schema of
//! `schemas/job.schema.json` (schemars, from the Rust types), its definitions moved into
//! `components/schemas` (OpenAPI 3.1 schemas are JSON Schema 2020-12, as schemars writes them).
//!
//! To add endpoints (e.g. the admin API), list their `#[utoipa::path]` handlers in
//! [`ApiDoc`]'s `paths(...)` and their types in `components(schemas(...))`.

use std::borrow::Cow;
use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, OpenApi};

use crate::producer::api_error::{ErrorBody, FieldError};
use crate::producer::notification_store::{NotificationStatus, Receipt, State};
use crate::producer::notifications::{Accepted, BatchItem, BatchResponse};

/// The API's OpenAPI description (before the job schema is put in; see [`openapi_json`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "wxnotify HTTP API",
        description = "WeChat Official Account template messages for Mini Program users: the producer API (`/v1/notifications`), Mini Program login, the OA callback and operations endpoints. Producer requests authenticate with a per-app API key (`wxnotify api-key create --app NAME`) as `Authorization: Bearer wxn_…`."
    ),
    paths(
        crate::producer::notifications::create,
        crate::producer::notifications::create_batch,
        crate::producer::notifications::status,
        described::login,
        described::report_subscriptions,
        described::mp_verify_default,
        described::mp_push_default,
        described::verify_default,
        described::push_default,
        described::verify,
        described::push,
        described::healthz,
        described::livez,
        described::readyz,
        described::metrics,
        described::openapi,
    ),
    components(schemas(
        Accepted,
        BatchItem,
        BatchResponse,
        NotificationStatus,
        Receipt,
        State,
        ErrorBody,
        FieldError,
        BatchDocument,
        described::LoginRequest,
        described::LoginResponse,
        described::SubscriptionReport,
        crate::edge::subscriptions::ReportResponse,
        described::PlainError,
    )),
    modifiers(&BearerKey),
    tags(
        (name = "notifications", description = "Send template messages and follow what became of them."),
        (name = "users", description = "Mini Program logins (openid, unionid and a session) and the Mini Program's report of its person's subscribe choices."),
        (name = "wechat", description = "The OA server URL and the Mini Program's message push URL: WeChat's handshakes and event pushes."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
    )
)]
pub struct ApiDoc;

/// Declares the `api_key` bearer scheme the producer endpoints name.
struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Stands for a job in the annotations; its schema is replaced by the job's JSON Schema.
pub struct JobDocument;

impl utoipa::PartialSchema for JobDocument {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::Object(utoipa::openapi::schema::Object::new()))
    }
}

impl utoipa::ToSchema for JobDocument {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Job")
    }
}

/// The body of `POST /v1/notifications/batch`.
#[derive(utoipa::ToSchema)]
#[schema(as = BatchRequest)]
#[allow(dead_code)] // documentation only: the handler reads the JSON itself, for the pointers
pub struct BatchDocument {
    /// 1 to 1,000 jobs; each item's result comes back at the same index.
    #[schema(min_items = 1, max_items = 1000)]
    jobs: Vec<JobDocument>,
}

/// The whole document as pretty JSON (what `schemas/openapi.json` holds).
pub fn openapi_json() -> String {
    document(true)
}

/// The document without the admin surface (what the public address serves): no `/admin` path,
/// no admin schema, no admin security scheme.
pub fn public_openapi_json() -> String {
    document(false)
}

fn document(with_admin: bool) -> String {
    let mut api = ApiDoc::openapi();
    if with_admin {
        // The admin API (dead letters, deliveries, apps, workers, queues, audit) documents
        // itself.
        api.merge(crate::admin::api::AdminApiDoc::openapi());
        // So do the campaign endpoints (`/admin/api/campaigns`).
        api.merge(crate::admin::campaigns_openapi::CampaignsApiDoc::openapi());
    }
    let mut doc = serde_json::to_value(api).expect("the OpenAPI document serialises");
    let mut job: Value = serde_json::from_str(&wxnotify_core::domain::job::schema_json())
        .expect("the job schema is JSON");
    let defs = job
        .as_object_mut()
        .and_then(|o| o.remove("$defs"))
        .unwrap_or_default();
    if let Some(o) = job.as_object_mut() {
        o.remove("$schema");
    }
    let schemas = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
        .expect("the document has component schemas");
    if let Value::Object(defs) = defs {
        for (name, mut schema) in defs {
            rewrite_refs(&mut schema);
            let clash = schemas.insert(name.clone(), schema);
            assert!(clash.is_none(), "component {name} is defined twice");
        }
    }
    rewrite_refs(&mut job);
    schemas.insert("Job".into(), job);
    serde_json::to_string_pretty(&doc).expect("JSON serialises") + "\n"
}

/// `#/$defs/X` (schemars) → `#/components/schemas/X` (OpenAPI).
fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(o) => {
            for (k, v) in o.iter_mut() {
                match v {
                    Value::String(s) if k == "$ref" => {
                        if let Some(name) = s.strip_prefix("#/$defs/") {
                            *s = format!("#/components/schemas/{name}");
                        }
                    }
                    other => rewrite_refs(other),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// `GET /openapi.json` of the public address: the document without the admin surface.
pub async fn serve_openapi() -> impl IntoResponse {
    static DOC: OnceLock<String> = OnceLock::new();
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOC.get_or_init(public_openapi_json).clone(),
    )
}

/// The whole document (`/admin/openapi.json`, and `/openapi.json` of the admin address).
pub async fn serve_full_openapi() -> impl IntoResponse {
    static DOC: OnceLock<String> = OnceLock::new();
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOC.get_or_init(openapi_json).clone(),
    )
}

/// Descriptions of the endpoints that other modules serve (their handlers stay as they are;
/// these functions exist only to carry the annotations).
mod described {
    #![allow(dead_code)]

    use serde::Serialize;

    /// `POST /v1/miniprogram/login` body.
    #[derive(Serialize, utoipa::ToSchema)]
    pub struct LoginRequest {
        /// The code `wx.login()` returned (single use).
        pub code: String,
        /// The app, if not in the query string (else the default app).
        pub app: Option<String>,
    }

    /// `POST /v1/miniprogram/login` answer (never the session key).
    #[derive(Serialize, utoipa::ToSchema)]
    pub struct LoginResponse {
        /// The Mini Program openid.
        pub openid: String,
        /// The unionid, when the Mini Program is bound to an Open Platform account.
        pub unionid: Option<String>,
        /// A subscribed OA follower with this unionid is known.
        pub notifiable: bool,
        /// An opaque token for this person (`Authorization: Bearer …` on
        /// `POST /v1/miniprogram/subscriptions`); only its hash is stored.
        pub session: String,
        /// When the session stops working (log in again for a new one).
        pub session_expires_at: String,
    }

    /// `POST /v1/miniprogram/subscriptions` body.
    #[derive(Serialize, utoipa::ToSchema)]
    pub struct SubscriptionReport {
        /// What `wx.requestSubscribeMessage` resolved with: template id → `accept`, `reject`,
        /// `ban`, `filter` or `acceptWithAudio` (`errMsg` is ignored).
        #[schema(value_type = Object, example = json!({"MP_ORDER_SHIPPED": "accept", "errMsg": "requestSubscribeMessage:ok"}))]
        pub results: serde_json::Value,
        /// The person's Mini Program openid: required with an API key; with a session, it must
        /// be the session's person.
        pub mp_openid: Option<String>,
    }

    /// The error body of the non-producer endpoints.
    #[derive(Serialize, utoipa::ToSchema)]
    pub struct PlainError {
        /// What went wrong and how to fix it.
        pub error: String,
    }

    /// Mini Program login.
    #[utoipa::path(post, path = "/v1/miniprogram/login", tag = "users",
        params(("app" = Option<String>, Query, description = "The app (or `app` in the body; default app otherwise)")),
        request_body = LoginRequest,
        responses(
            (status = 200, description = "The user, upserted", body = LoginResponse),
            (status = 400, description = "A used or invalid code: call wx.login() again", body = PlainError),
            (status = 404, description = "Unknown app", body = PlainError),
            (status = 429, description = "WeChat's login quota (45011); see Retry-After", body = PlainError),
            (status = 503, description = "WeChat or Postgres unavailable", body = PlainError),
        ))]
    pub fn login() {}

    /// The Mini Program reports its person's subscribe choices.
    #[utoipa::path(post, path = "/v1/miniprogram/subscriptions", tag = "users",
        request_body = SubscriptionReport,
        responses(
            (status = 200, description = "What each choice did: counted, paired (WeChat's event already counted that tap), refused, ignored", body = crate::edge::subscriptions::ReportResponse),
            (status = 400, description = "A body that is not such an object, or an API key without mp_openid", body = PlainError),
            (status = 401, description = "No, an unknown or an expired session or API key", body = PlainError),
            (status = 403, description = "A session naming another person", body = PlainError),
        ),
        security(("session" = []), ("api_key" = [])))]
    pub fn report_subscriptions() {}

    /// The Mini Program's message push URL handshake (default app; `/wechat/mp-callback/{app}`
    /// for another app).
    #[utoipa::path(get, path = "/wechat/mp-callback", tag = "wechat",
        params(
            ("signature" = String, Query, description = "sha1 of the sorted Mini Program token, timestamp and nonce"),
            ("timestamp" = String, Query), ("nonce" = String, Query),
            ("echostr" = String, Query, description = "Echoed back when the signature matches"),
        ),
        responses((status = 200, description = "echostr", content_type = "text/plain", body = String),
                  (status = 403, description = "Bad signature or a replay", body = PlainError)))]
    pub fn mp_verify_default() {}

    /// WeChat's subscribe-message pushes (default app; `/wechat/mp-callback/{app}` for another
    /// app): subscribe_msg_popup_event, subscribe_msg_change_event, subscribe_msg_sent_event,
    /// XML or JSON, plaintext or safe mode.
    #[utoipa::path(post, path = "/wechat/mp-callback", tag = "wechat",
        params(("signature" = String, Query), ("timestamp" = String, Query), ("nonce" = String, Query),
               ("encrypt_type" = Option<String>, Query, description = "`aes` in safe mode"),
               ("msg_signature" = Option<String>, Query, description = "safe mode's signature")),
        request_body(content = String, content_type = "text/xml", description = "WeChat's XML or JSON (plain or with Encrypt)"),
        responses((status = 200, description = "`success` (an empty body in safe mode)", content_type = "text/plain", body = String),
                  (status = 400, description = "Not a Mini Program push", body = PlainError),
                  (status = 403, description = "Bad signature or a replay", body = PlainError)))]
    pub fn mp_push_default() {}

    /// The OA server URL's handshake (default app).
    #[utoipa::path(get, path = "/wechat/callback", tag = "wechat",
        params(
            ("signature" = String, Query, description = "sha1 of the sorted token, timestamp and nonce"),
            ("timestamp" = String, Query), ("nonce" = String, Query),
            ("echostr" = String, Query, description = "Echoed back when the signature matches"),
        ),
        responses((status = 200, description = "echostr", content_type = "text/plain", body = String),
                  (status = 403, description = "Bad signature", body = PlainError)))]
    pub fn verify_default() {}

    /// WeChat's event pushes (default app): subscribe, unsubscribe, TEMPLATESENDJOBFINISH.
    #[utoipa::path(post, path = "/wechat/callback", tag = "wechat",
        params(("signature" = String, Query), ("timestamp" = String, Query), ("nonce" = String, Query),
               ("encrypt_type" = Option<String>, Query, description = "`aes` in safe mode"),
               ("msg_signature" = Option<String>, Query, description = "safe mode's signature")),
        request_body(content = String, content_type = "text/xml", description = "WeChat's XML (plain or with <Encrypt>)"),
        responses((status = 200, description = "`success`", content_type = "text/plain", body = String),
                  (status = 403, description = "Bad signature", body = PlainError)))]
    pub fn push_default() {}

    /// The OA server URL's handshake of one app.
    #[utoipa::path(get, path = "/wechat/callback/{app}", tag = "wechat",
        params(("app" = String, Path), ("signature" = String, Query), ("timestamp" = String, Query),
               ("nonce" = String, Query), ("echostr" = String, Query)),
        responses((status = 200, description = "echostr", content_type = "text/plain", body = String),
                  (status = 403, description = "Bad signature", body = PlainError),
                  (status = 404, description = "Unknown app", body = PlainError)))]
    pub fn verify() {}

    /// WeChat's event pushes for one app.
    #[utoipa::path(post, path = "/wechat/callback/{app}", tag = "wechat",
        params(("app" = String, Path), ("signature" = String, Query), ("timestamp" = String, Query),
               ("nonce" = String, Query), ("encrypt_type" = Option<String>, Query),
               ("msg_signature" = Option<String>, Query)),
        request_body(content = String, content_type = "text/xml"),
        responses((status = 200, description = "`success`", content_type = "text/plain", body = String),
                  (status = 403, description = "Bad signature", body = PlainError),
                  (status = 404, description = "Unknown app", body = PlainError)))]
    pub fn push() {}

    /// The process answers.
    #[utoipa::path(get, path = "/healthz", tag = "operations",
        responses((status = 200, description = "`ok`", content_type = "text/plain", body = String)))]
    pub fn healthz() {}

    /// The process works (a liveness probe): 200 even while Postgres is away.
    #[utoipa::path(get, path = "/livez", tag = "operations",
        responses((status = 200, description = "`{\"status\":\"ok\"}`", body = Object)))]
    pub fn livez() {}

    /// It can do its job now (a readiness probe): Postgres answers.
    #[utoipa::path(get, path = "/readyz", tag = "operations",
        responses((status = 200, description = "`{\"status\":\"ready\",\"checks\":{\"postgres\":\"ok\"}}`", body = Object),
                  (status = 503, description = "`{\"status\":\"unavailable\",\"missing\":[\"postgres\"],\"checks\":{...}}`", body = Object)))]
    pub fn readyz() {}

    /// Prometheus metrics.
    #[utoipa::path(get, path = "/metrics", tag = "operations",
        responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
    pub fn metrics() {}

    /// This document (on the public address without the admin surface; on `--admin-listen`
    /// whole).
    #[utoipa::path(get, path = "/openapi.json", tag = "operations",
        responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = serde_json::Value)))]
    pub fn openapi() {}
}
