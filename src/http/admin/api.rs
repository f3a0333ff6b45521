//! The JSON admin API at `/admin/api/...`. Reads need any role; acts need role admin (403 for a
//! viewer). Every act (and its dry run) is written to the audit trail.

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};

use super::AdminState;
use super::actions::{self, ActionReport, ActionRequest};
use super::auth::{AdminOnly, Principal};
use super::error::{AdminError, ErrorBody};
use super::queues::QueueDepth;
use super::store::{self, AppRow, AuditEntry, AuditRow, DeliveryRow, WorkerRow};
use crate::dlq::query::{self, Groups};
use crate::dlq::{self, AttemptRow, DeadLetterQuery, DeadLetterRow};

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
}

/// Paging of the dead-letter list.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// The `next_after` of the previous page.
    pub after: Option<i64>,
    /// Letters per page (1 to 1000, default 50).
    pub limit: Option<u32>,
}

/// One page of dead letters.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeadLetterPage {
    /// Newest first.
    pub letters: Vec<DeadLetterRow>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next_after: Option<i64>,
}

/// `GET /admin/api/dead-letters`: the filtered list, newest first, a keyset page at a time.
#[utoipa::path(get, path = "/admin/api/dead-letters", tag = "admin",
    params(DeadLetterQuery, PageParams),
    responses((status = 200, body = DeadLetterPage), (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn list_dead_letters(
    _who: Principal,
    State(state): State<AdminState>,
    Query(q): Query<DeadLetterQuery>,
    Query(p): Query<PageParams>,
) -> Result<Json<DeadLetterPage>, AdminError> {
    let page = query::page(state.pool(), &q, p.after, p.limit.unwrap_or(50)).await?;
    Ok(Json(DeadLetterPage {
        letters: page.letters,
        next_after: page.next_after,
    }))
}

/// The size of a filter and its groups.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeadLetterCounts {
    /// Letters matching.
    pub total: i64,
    /// The highest id matching (the snapshot to act on).
    pub max_id: Option<i64>,
    /// Grouped by reason, errcode and hour.
    #[serde(flatten)]
    pub groups: Groups,
}

/// `GET /admin/api/dead-letters/groups`: how many letters a filter matches, by reason, errcode
/// and hour.
#[utoipa::path(get, path = "/admin/api/dead-letters/groups", tag = "admin",
    params(DeadLetterQuery),
    responses((status = 200, body = DeadLetterCounts), (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn dead_letter_groups(
    _who: Principal,
    State(state): State<AdminState>,
    Query(q): Query<DeadLetterQuery>,
) -> Result<Json<DeadLetterCounts>, AdminError> {
    let (total, max_id) = query::count(state.pool(), &q).await?;
    let groups = query::groups(state.pool(), &q).await?;
    Ok(Json(DeadLetterCounts {
        total,
        max_id,
        groups,
    }))
}

/// One failed attempt, with the request id WeChat support asks for.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    /// 1-based.
    pub attempt: i32,
    /// `retry` or `dead`.
    pub outcome: String,
    /// WeChat's errcode.
    pub errcode: Option<i64>,
    /// WeChat's message.
    pub errmsg: Option<String>,
    /// The `rid` in WeChat's message.
    pub rid: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

impl From<AttemptRow> for AttemptView {
    fn from(a: AttemptRow) -> Self {
        let rid = a
            .errmsg
            .as_deref()
            .and_then(crate::wechat::response::rid_of)
            .map(str::to_owned);
        AttemptView {
            attempt: a.attempt,
            outcome: a.outcome,
            errcode: a.errcode,
            errmsg: a.errmsg,
            rid,
            at: a.at,
        }
    }
}

/// One dead letter in full.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeadLetterDetail {
    /// The letter (with its job).
    pub dead_letter: DeadLetterRow,
    /// Every attempt at WeChat.
    pub attempts: Vec<AttemptView>,
    /// The job's ledger row, if it has one.
    pub delivery: Option<DeliveryRow>,
}

/// Loads one dead letter in full.
pub async fn load_dead_letter(state: &AdminState, id: i64) -> Result<DeadLetterDetail, AdminError> {
    let row = dlq::get(state.pool(), id)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no dead letter {id}")))?;
    let attempts = dlq::history(state.pool(), row.job_id.as_deref())
        .await?
        .into_iter()
        .map(AttemptView::from)
        .collect();
    let delivery = match row.job_id.as_deref() {
        Some(job_id) => store::delivery(state.pool(), job_id).await?,
        None => None,
    };
    Ok(DeadLetterDetail {
        dead_letter: row,
        attempts,
        delivery,
    })
}

/// `GET /admin/api/dead-letters/{id}`: the letter, its job and every attempt.
#[utoipa::path(get, path = "/admin/api/dead-letters/{id}", tag = "admin",
    params(("id" = i64, Path, description = "The dead letter's id")),
    responses((status = 200, body = DeadLetterDetail), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn dead_letter(
    _who: Principal,
    State(state): State<AdminState>,
    Path(id): Path<i64>,
) -> Result<Json<DeadLetterDetail>, AdminError> {
    Ok(Json(load_dead_letter(&state, id).await?))
}

/// `POST /admin/api/dead-letters/replay`: publish the jobs again (same ids). A viewer may only
/// dry-run.
#[utoipa::path(post, path = "/admin/api/dead-letters/replay", tag = "admin",
    request_body = ActionRequest,
    responses((status = 200, body = ActionReport), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn replay(
    who: Principal,
    State(state): State<AdminState>,
    Json(req): Json<ActionRequest>,
) -> Result<Json<ActionReport>, AdminError> {
    let (target, dry_run) = req.target()?;
    Ok(Json(actions::replay(&state, &who, target, dry_run).await?))
}

/// `POST /admin/api/dead-letters/purge`: delete dead letters. A viewer may only dry-run.
#[utoipa::path(post, path = "/admin/api/dead-letters/purge", tag = "admin",
    request_body = ActionRequest,
    responses((status = 200, body = ActionReport), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn purge(
    who: Principal,
    State(state): State<AdminState>,
    Json(req): Json<ActionRequest>,
) -> Result<Json<ActionReport>, AdminError> {
    let (target, dry_run) = req.target()?;
    Ok(Json(actions::purge(&state, &who, target, dry_run).await?))
}

/// Which deliveries.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// A job id.
    pub job_id: Option<String>,
    /// A recipient (Mini Program openid, unionid or OA openid).
    pub recipient: Option<String>,
}

/// Deliveries found, with the attempts and dead letters of a single job.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeliveryLookup {
    /// Ledger rows, newest first.
    pub deliveries: Vec<DeliveryRow>,
    /// For a job id: its attempts.
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
        (Some(job_id), _) if !job_id.is_empty() => Ok(DeliveryLookup {
            deliveries: store::delivery(pool, job_id).await?.into_iter().collect(),
            attempts: dlq::history(pool, Some(job_id))
                .await?
                .into_iter()
                .map(AttemptView::from)
                .collect(),
            dead_letter_ids: store::dead_letter_ids(pool, job_id).await?,
        }),
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
    Query(p): Query<DeliveryParams>,
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

/// How long to pause.
#[derive(Debug, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PauseParams {
    /// Minutes (default 60, at most 7 days).
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
    let until =
        minutes.map(|m| Utc::now() + chrono::Duration::minutes(m.clamp(1, 7 * 24 * 60) as i64));
    let reason = format!("paused by hand ({})", who.who);
    if !store::set_pause(state.pool(), app, until, &reason).await? {
        return Err(AdminError::NotFound(format!("no app {app:?}")));
    }
    store::audit(
        state.pool(),
        who,
        &AuditEntry {
            action: if until.is_some() { "pause" } else { "resume" },
            filter: None,
            ids: None,
            affected: 1,
            dry_run: false,
            detail: serde_json::json!({ "app": app, "until": until }),
        },
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
    Query(p): Query<PauseParams>,
) -> Result<Json<Vec<AppRow>>, AdminError> {
    set_pause(&state, &who, &name, Some(p.minutes.unwrap_or(60))).await?;
    Ok(Json(store::apps(state.pool()).await?))
}

/// `POST /admin/api/apps/{name}/resume`: sending again (also ends a 45009 pause).
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
    /// Rows (default 100).
    pub limit: Option<u32>,
}

/// `GET /admin/api/audit`: the latest admin actions.
#[utoipa::path(get, path = "/admin/api/audit", tag = "admin",
    params(AuditParams),
    responses((status = 200, body = Vec<AuditRow>)), security(("admin_token" = [])))]
pub async fn audit(
    _who: Principal,
    State(state): State<AdminState>,
    Query(p): Query<AuditParams>,
) -> Result<Json<Vec<AuditRow>>, AdminError> {
    Ok(Json(
        store::audit_log(state.pool(), p.limit.unwrap_or(100)).await?,
    ))
}

/// The OpenAPI description of the admin API (merge it into the service's document).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_dead_letters,
        dead_letter_groups,
        dead_letter,
        replay,
        purge,
        deliveries,
        apps,
        pause,
        resume,
        workers,
        queues,
        audit
    ),
    modifiers(&AdminTokenScheme),
    tags((name = "admin", description = "Dead letters, deliveries, apps, workers and queues for ops; bearer token of role admin or viewer"))
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
        let doc = super::AdminApiDoc::openapi().to_json().unwrap();
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
        ] {
            assert!(doc.contains(&format!("\"{path}\"")), "{path} missing");
        }
        assert!(doc.contains("\"admin_token\""));
    }
}
