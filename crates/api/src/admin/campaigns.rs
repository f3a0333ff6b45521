//! The campaign operations over HTTP, under `/admin/api/campaigns`, behind the admin token:
//!
//! | method and path | what |
//! |---|---|
//! | `GET /admin/api/campaigns` | the newest campaigns |
//! | `POST /admin/api/campaigns` | create (audience `"followers"` or `{"recipients": [...]}`); 201 with the create report |
//! | `GET /admin/api/campaigns/{id}` | status (the `campaign status --json` shape) |
//! | `GET /admin/api/campaigns/{id}/preview` | reachable / unreachable by reason |
//! | `POST /admin/api/campaigns/{id}/{start,pause,resume,cancel}` | state changes (409 when not allowed) |
//!
//! Every create and state change is written to the admin audit trail (`campaign_create`,
//! `campaign_start`, …) with who did it, as the other admin actions are.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::admin::auth::{AdminAuth, Principal};
use crate::admin::campaign_body::{AudienceBody, CREATE_BODY_LIMIT, CreateBody};
use crate::admin::store::{self as audit_store, AuditEntry};
use wxnotify_core::config::Settings;
use wxnotify_core::domain::{AppName, TemplateData, TemplateId};
use wxnotify_services::campaigns::store::{self, AudienceSource, NewCampaign};
use wxnotify_services::campaigns::{Action, CampaignError, progress};
use wxnotify_services::campaigns::{pacing_from, preview};

/// What the campaign handlers share.
#[derive(Clone)]
pub struct CampaignsState {
    pool: PgPool,
    /// App → its rate (a campaign may not be faster).
    apps: Arc<HashMap<AppName, u32>>,
    default_app: Option<AppName>,
}

/// The campaign routes behind the environment tokens of `settings` alone, or `None` when
/// neither is configured (the endpoints are off). `serve` uses [`router_with`] and the admin
/// surface's check, which knows the named admins too.
pub fn router(pool: PgPool, settings: &Settings) -> Option<Router> {
    let state = crate::admin::AdminState::new(
        pool.clone(),
        settings,
        crate::admin::AdminOptions::from_settings(settings),
    );
    state
        .auth()
        .enabled()
        .then(|| router_with(pool, settings, state.auth_handle()))
}

/// The campaign routes behind `auth`.
pub fn router_with(pool: PgPool, settings: &Settings, auth: Arc<AdminAuth>) -> Router {
    let state = CampaignsState {
        pool,
        apps: Arc::new(
            settings
                .apps
                .iter()
                .map(|a| (a.name.clone(), a.rate_per_second))
                .collect(),
        ),
        default_app: settings.apps.first().map(|a| a.name.clone()),
    };
    Router::new()
        .route(
            "/admin/api/campaigns",
            get(list)
                .post(create)
                .layer(axum::middleware::from_fn_with_state(
                    CREATE_BODY_LIMIT,
                    crate::bodies::budgeted,
                )),
        )
        .route("/admin/api/campaigns/{id}", get(status))
        .route("/admin/api/campaigns/{id}/preview", get(preview_handler))
        .route("/admin/api/campaigns/{id}/{action}", post(act))
        .layer(axum::middleware::from_fn_with_state(auth, require_role))
        .layer(axum::middleware::map_response(super::private_answer))
        .with_state(state)
}

/// The shared admin check: any role reads (GET), only `admin` acts; no or a wrong token 401,
/// a viewer acting 403, too many failed tries 429 (see [`AdminAuth`]). The principal is handed
/// to the handlers, which record the person on the campaign and in the audit trail.
async fn require_role(
    axum::extract::State(auth): axum::extract::State<Arc<AdminAuth>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let (mut parts, body) = req.into_parts();
    let principal = match auth.authenticate(&parts).await {
        Ok(principal) => principal,
        Err(e) => return e.into_response(),
    };
    if parts.method != axum::http::Method::GET
        && let Err(e) = principal.require_admin()
    {
        return e.into_response();
    }
    parts.extensions.insert(principal);
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

/// Who did it, as recorded in a campaign's history: `admin-api:` and the person.
fn actor(principal: &Principal) -> String {
    format!("admin-api:{}", principal.actor)
}

/// A campaign error as an HTTP answer (never a secret in the body).
struct ApiError(CampaignError);

impl From<CampaignError> for ApiError {
    fn from(e: CampaignError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            CampaignError::NotFound(_) => StatusCode::NOT_FOUND,
            CampaignError::Transition { .. } => StatusCode::CONFLICT,
            CampaignError::Invalid(_) | CampaignError::Io(_) => StatusCode::BAD_REQUEST,
            CampaignError::Db(e) if is_out_of_range(e) => StatusCode::BAD_REQUEST,
            CampaignError::Db(e) => {
                tracing::warn!(error = %e, "campaign API: database error");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        (status, Json(json!({"error": self.0.to_string()}))).into_response()
    }
}

/// Postgres refusing a value for its column (a number out of range): the request's fault, but
/// every field is bounded before it gets there, so this is a last line only.
fn is_out_of_range(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("22003"))
}

/// Writes the audit row of a campaign action.
async fn audit(
    s: &CampaignsState,
    who: &Principal,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    audit_store::audit(&s.pool, who, &AuditEntry::one(action, detail))
        .await
        .map_err(|e| ApiError(CampaignError::Db(e)))
}

async fn list(State(s): State<CampaignsState>) -> Result<Response, ApiError> {
    Ok(Json(store::list(&s.pool, 100).await?).into_response())
}

async fn status(
    State(s): State<CampaignsState>,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    Ok(Json(progress::status(&s.pool, id).await?).into_response())
}

async fn preview_handler(
    State(s): State<CampaignsState>,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    Ok(Json(preview(&s.pool, id).await?).into_response())
}

async fn act(
    State(s): State<CampaignsState>,
    Extension(who): Extension<Principal>,
    Path((id, action)): Path<(Uuid, String)>,
) -> Result<Response, ApiError> {
    let action = match action.as_str() {
        "start" => Action::Start,
        "pause" => Action::Pause,
        "resume" => Action::Resume,
        "cancel" => Action::Cancel,
        other => {
            return Err(CampaignError::Invalid(format!(
                "unknown action {other:?} (start, pause, resume, cancel)"
            ))
            .into());
        }
    };
    let state = store::apply(&s.pool, id, action, &actor(&who)).await?;
    let name = format!("campaign_{}", action.as_str());
    audit(&s, &who, &name, json!({"campaign": id, "state": state})).await?;
    Ok(Json(json!({"id": id, "state": state})).into_response())
}

async fn create(
    State(s): State<CampaignsState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let invalid = |m: String| ApiError(CampaignError::Invalid(m));
    let body = match crate::bodies::read(&headers, body, CREATE_BODY_LIMIT).await {
        Ok(bytes) => CreateBody::parse(&bytes).map_err(invalid)?,
        Err(too_large) => return Ok(too_large),
    };
    let app = match &body.app {
        Some(a) => AppName::parse(a.clone()).map_err(|e| invalid(e.to_string()))?,
        None => s
            .default_app
            .clone()
            .ok_or_else(|| invalid("no app is configured".into()))?,
    };
    let app_rate = *s
        .apps
        .get(&app)
        .ok_or_else(|| invalid(format!("unknown app {app}")))?;
    let data: TemplateData =
        serde_json::from_value(body.data).map_err(|e| invalid(format!("data: {e}")))?;
    let pacing = pacing_from(
        body.rate.unwrap_or(app_rate),
        body.window.as_deref(),
        body.time_zone.as_deref().unwrap_or("UTC"),
        body.start_at,
        body.daily_cap,
    )?;
    let new = NewCampaign {
        app,
        template_id: TemplateId::parse(body.template_id)
            .map_err(|e| invalid(format!("template_id: {e}")))?,
        data,
        url: body.url,
        miniprogram: body.miniprogram,
        not_after: body.not_after,
        pacing,
        created_by: actor(&who),
        name: body.name,
        truncate: body.truncate,
        mp_subscribe: body.mp_subscribe,
    };
    let source = match body.audience {
        AudienceBody::Named(n) if n == "followers" => AudienceSource::Followers,
        AudienceBody::Named(n) => {
            return Err(invalid(format!(
                "audience {n:?}: use \"followers\" or {{\"recipients\": [...]}}"
            )));
        }
        AudienceBody::List(list) => AudienceSource::List(Box::new(AudienceBody::items(list))),
    };
    let report = store::create(&s.pool, &new, app_rate, source).await?;
    let detail = json!({
        "campaign": report.id,
        "name": report.name,
        "app": new.app.as_str(),
        "audience": report.audience,
        "reachable": report.reachable,
    });
    audit(&s, &who, "campaign_create", detail).await?;
    Ok((StatusCode::CREATED, Json(report)).into_response())
}
