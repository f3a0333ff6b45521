//! The JSON admin API at `/admin/api/...`. Reads need any role; acts need role admin (403 for a
//! viewer). Every act (and its dry run) is written to the audit trail. The template catalog's
//! endpoints are in [`templates`], a person's subscribe grants in [`subscriptions`].

use axum::extract::{Path, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};

mod dead_letters;
pub mod subscriptions;
pub mod templates;

pub use self::dead_letters::{
    AttemptView, DeadLetterCounts, DeadLetterDetail, DeadLetterPage, PageParams, dead_letter,
    dead_letter_groups, list_dead_letters, load_dead_letter, purge, replay,
};
use crate::admin::AdminState;
use crate::admin::auth::{AdminOnly, Principal};
use crate::admin::error::{AdminError, ErrorBody};
use crate::admin::queues::QueueDepth;
use crate::admin::store::{self, AppRow, AuditEntry, AuditRow, DeliveryRow, WorkerRow};
use crate::admin::strict::StrictQuery;
use wxnotify_services::dlq;

/// The routes (nested at `/admin/api`).
pub fn router() -> Router<AdminState> {
    Router::new()
        .route("/dead-letters", get(list_dead_letters))
        .route("/dead-letters/groups", get(dead_letter_groups))
        .route("/dead-letters/replay", post(replay))
        .route("/dead-letters/purge", post(purge))
        .route("/dead-letters/{id}", get(dead_letter))
        .route("/deliveries", get(deliveries))
        .route("/apps", get(apps))
        .route("/apps/{name}/pause", post(pause))
        .route("/apps/{name}/resume", post(resume))
        .route("/workers", get(workers))
        .route("/queues", get(queues))
        .route("/audit", get(audit))
        .route("/subscriptions", get(subscriptions::subscriptions))
        .route(
            "/templates",
            get(templates::list_templates).post(templates::add_template),
        )
        .route(
            "/templates/{app}/{template_id}",
            delete(templates::remove_template),
        )
}

/// Which deliveries.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// A job id (job ids are per app: every app's job of that id, unless `app` is given).
    pub job_id: Option<String>,
    /// With `job_id`: only this app's job.
    pub app: Option<String>,
    /// A recipient (Mini Program openid, unionid or OA openid).
    pub recipient: Option<String>,
}

/// Deliveries found, with the attempts and dead letters of a single job.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeliveryLookup {
    /// Ledger rows, newest first (for a job id: one per app that used it, by app).
    pub deliveries: Vec<DeliveryRow>,
    /// For a job id that one app used (or with `app`): its attempts.
    pub attempts: Vec<AttemptView>,
    /// For a job id: its dead letters' ids.
    pub dead_letter_ids: Vec<i64>,
}

/// Looks a job up by id, or a recipient's latest jobs.
pub async fn lookup(state: &AdminState, p: &DeliveryParams) -> Result<DeliveryLookup, AdminError> {
    let pool = state.pool();
    match (
        p.job_id.as_deref().map(str::trim),
        p.recipient.as_deref().map(str::trim),
    ) {
        (Some(job_id), _) if !job_id.is_empty() => {
            let app = p.app.as_deref().map(str::trim).filter(|a| !a.is_empty());
            let deliveries = store::deliveries(pool, app, job_id).await?;
            // Attempts belong to one job: shown when the id names one.
            let attempts = match deliveries.as_slice() {
                [one] => dlq::history(pool, Some((&one.app, job_id)))
                    .await?
                    .into_iter()
                    .map(AttemptView::from)
                    .collect(),
                _ => Vec::new(),
            };
            Ok(DeliveryLookup {
                deliveries,
                attempts,
                dead_letter_ids: store::dead_letter_ids(pool, app, job_id).await?,
            })
        }
        (_, Some(recipient)) if !recipient.is_empty() => Ok(DeliveryLookup {
            deliveries: store::deliveries_of(pool, recipient, 100).await?,
            attempts: Vec::new(),
            dead_letter_ids: Vec::new(),
        }),
        _ => Err(AdminError::BadRequest(
            "give `job_id` or `recipient`".into(),
        )),
    }
}

/// `GET /admin/api/deliveries?job_id=…|recipient=…`.
#[utoipa::path(get, path = "/admin/api/deliveries", tag = "admin",
    params(DeliveryParams),
    responses((status = 200, body = DeliveryLookup), (status = 400, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn deliveries(
    _who: Principal,
    State(state): State<AdminState>,
    StrictQuery(p): StrictQuery<DeliveryParams>,
) -> Result<Json<DeliveryLookup>, AdminError> {
    Ok(Json(lookup(&state, &p).await?))
}

/// `GET /admin/api/apps`: pauses and today's sends.
#[utoipa::path(get, path = "/admin/api/apps", tag = "admin",
    responses((status = 200, body = Vec<AppRow>)), security(("admin_token" = [])))]
pub async fn apps(
    _who: Principal,
    State(state): State<AdminState>,
) -> Result<Json<Vec<AppRow>>, AdminError> {
    Ok(Json(store::apps(state.pool()).await?))
}

/// The longest pause by hand, minutes (7 days).
pub const MAX_PAUSE_MINUTES: u32 = 7 * 24 * 60;

/// The most audit rows one request reads.
pub const MAX_AUDIT_ROWS: u32 = 1000;

/// How long to pause.
#[derive(Debug, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PauseParams {
    /// Minutes (default 60; 1 to 10080, 7 days; other values are a 400).
    pub minutes: Option<u32>,
}

/// Pauses or resumes an app; audited. `minutes: None` resumes.
pub async fn set_pause(
    state: &AdminState,
    who: &Principal,
    app: &str,
    minutes: Option<u32>,
) -> Result<Option<DateTime<Utc>>, AdminError> {
    who.require_admin()?;
    let minutes = minutes
        .map(|m| wxnotify_core::bounds::in_range("minutes", m, 1..=MAX_PAUSE_MINUTES))
        .transpose()?;
    let until = minutes.map(|m| Utc::now() + chrono::Duration::minutes(i64::from(m)));
    let reason = format!("paused by hand ({})", who.who);
    if !store::set_pause(state.pool(), app, until, &reason).await? {
        return Err(AdminError::NotFound(format!("no app {app:?}")));
    }
    store::audit(
        state.pool(),
        who,
        &AuditEntry::one(
            if until.is_some() { "pause" } else { "resume" },
            serde_json::json!({ "app": app, "until": until }),
        ),
    )
    .await?;
    Ok(until)
}

/// `POST /admin/api/apps/{name}/pause?minutes=60`: stop sending for the app in every worker.
#[utoipa::path(post, path = "/admin/api/apps/{name}/pause", tag = "admin",
    params(("name" = String, Path, description = "The app"), PauseParams),
    responses((status = 200, body = Vec<AppRow>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn pause(
    AdminOnly(who): AdminOnly,
    State(state): State<AdminState>,
    Path(name): Path<String>,
    StrictQuery(p): StrictQuery<PauseParams>,
) -> Result<Json<Vec<AppRow>>, AdminError> {
    set_pause(&state, &who, &name, Some(p.minutes.unwrap_or(60))).await?;
    Ok(Json(store::apps(state.pool()).await?))
}

/// `POST /admin/api/apps/{name}/resume`: sending again at once (also ends a 45009 pause, and
/// lifts a suspension: if WeChat still refuses the account, the next send suspends it again).
#[utoipa::path(post, path = "/admin/api/apps/{name}/resume", tag = "admin",
    params(("name" = String, Path, description = "The app")),
    responses((status = 200, body = Vec<AppRow>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn resume(
    AdminOnly(who): AdminOnly,
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<AppRow>>, AdminError> {
    set_pause(&state, &who, &name, None).await?;
    Ok(Json(store::apps(state.pool()).await?))
}

/// `GET /admin/api/workers`: live worker processes.
#[utoipa::path(get, path = "/admin/api/workers", tag = "admin",
    responses((status = 200, body = Vec<WorkerRow>)), security(("admin_token" = [])))]
pub async fn workers(
    _who: Principal,
    State(state): State<AdminState>,
) -> Result<Json<Vec<WorkerRow>>, AdminError> {
    Ok(Json(store::live_workers(state.pool()).await?))
}

/// `GET /admin/api/queues`: messages and consumers of every queue (503 when RabbitMQ is away).
#[utoipa::path(get, path = "/admin/api/queues", tag = "admin",
    responses((status = 200, body = Vec<QueueDepth>), (status = 503, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn queues(
    _who: Principal,
    State(state): State<AdminState>,
) -> Result<Json<Vec<QueueDepth>>, AdminError> {
    let depths = state
        .queues()
        .depths()
        .await
        .map_err(AdminError::Unavailable)?;
    Ok(Json(depths))
}

/// How many audit rows.
#[derive(Debug, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Rows (default 100; 1 to 1000, other values are a 400).
    pub limit: Option<u32>,
}

/// `GET /admin/api/audit`: the latest admin actions.
#[utoipa::path(get, path = "/admin/api/audit", tag = "admin",
    params(AuditParams),
    responses((status = 200, body = Vec<AuditRow>)), security(("admin_token" = [])))]
pub async fn audit(
    _who: Principal,
    State(state): State<AdminState>,
    StrictQuery(p): StrictQuery<AuditParams>,
) -> Result<Json<Vec<AuditRow>>, AdminError> {
    let limit =
        wxnotify_core::bounds::in_range("limit", p.limit.unwrap_or(100), 1..=MAX_AUDIT_ROWS)?;
    Ok(Json(store::audit_log(state.pool(), limit).await?))
}

/// The OpenAPI description of the admin API (merge it into the service's document).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        dead_letters::list_dead_letters,
        dead_letters::dead_letter_groups,
        dead_letters::dead_letter,
        dead_letters::replay,
        dead_letters::purge,
        deliveries,
        apps,
        pause,
        resume,
        workers,
        queues,
        audit,
        templates::list_templates,
        templates::add_template,
        templates::remove_template,
        subscriptions::subscriptions
    ),
    modifiers(&AdminTokenScheme),
    tags((name = "admin", description = "Dead letters, deliveries, apps, workers, queues, the template catalog and subscribe grants for ops; bearer token of role admin or viewer"))
)]
pub struct AdminApiDoc;

/// Declares the `admin_token` bearer scheme the paths name.
struct AdminTokenScheme;

impl utoipa::Modify for AdminTokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    #[test]
    fn the_openapi_document_lists_every_admin_endpoint() {
        let doc = crate::admin::api::AdminApiDoc::openapi().to_json().unwrap();
        for path in [
            "/admin/api/dead-letters",
            "/admin/api/dead-letters/groups",
            "/admin/api/dead-letters/{id}",
            "/admin/api/dead-letters/replay",
            "/admin/api/dead-letters/purge",
            "/admin/api/deliveries",
            "/admin/api/apps",
            "/admin/api/apps/{name}/pause",
            "/admin/api/apps/{name}/resume",
            "/admin/api/workers",
            "/admin/api/queues",
            "/admin/api/audit",
            "/admin/api/templates",
            "/admin/api/templates/{app}/{template_id}",
            "/admin/api/subscriptions",
        ] {
            assert!(doc.contains(&format!("\"{path}\"")), "{path} missing");
        }
        assert!(doc.contains("\"admin_token\""));
    }
}
