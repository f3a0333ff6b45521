//! The dead-letter endpoints of the admin API: the list, its groups, one letter in full, and
//! the replay and purge actions.

use axum::Json;
use axum::extract::{Path, Query, RawQuery, State};
use chrono::{DateTime, Utc};

use crate::admin::AdminState;
use crate::admin::actions::{self, ActionReport, ActionRequest};
use crate::admin::auth::Principal;
use crate::admin::error::{AdminError, ErrorBody};
use crate::admin::store::{self, DeliveryRow};
use crate::admin::strict::{self, StrictJson};
use wxnotify_services::dlq::query::{self, Groups};
use wxnotify_services::dlq::{self, AttemptRow, DeadLetterQuery, DeadLetterRow};

/// The most letters one page may hold.
pub const MAX_PAGE: u32 = 1000;

/// Paging of the dead-letter list.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// The `next_after` of the previous page.
    pub after: Option<i64>,
    /// Letters per page (default 50; 1 to 1000, other values are a 400).
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
    RawQuery(raw): RawQuery,
    Query(q): Query<DeadLetterQuery>,
    Query(p): Query<PageParams>,
) -> Result<Json<DeadLetterPage>, AdminError> {
    strict::check_query(
        raw.as_deref(),
        &[
            strict::fields_of::<DeadLetterQuery>(),
            strict::fields_of::<PageParams>(),
        ],
    )?;
    let limit = wxnotify_core::bounds::in_range("limit", p.limit.unwrap_or(50), 1..=MAX_PAGE)?;
    let page = query::page(state.pool(), &q, p.after, limit).await?;
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
    RawQuery(raw): RawQuery,
    Query(q): Query<DeadLetterQuery>,
) -> Result<Json<DeadLetterCounts>, AdminError> {
    strict::check_query(raw.as_deref(), &[strict::fields_of::<DeadLetterQuery>()])?;
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
            .and_then(wxnotify_core::wechat::response::rid_of)
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
    let attempts = dlq::history(state.pool(), row.job_key())
        .await?
        .into_iter()
        .map(AttemptView::from)
        .collect();
    let delivery = match row.job_key() {
        Some((app, job_id)) => store::deliveries(state.pool(), Some(app), job_id)
            .await?
            .pop(),
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
/// dry-run. An unknown key is a 400 naming it; an empty filter needs `"all": true`.
/// `outcome_unknown` letters may have reached the person already: they are left out (and
/// counted in `outcome_unknown_skipped`, with a `warning`) unless `"include_outcome_unknown":
/// true` chooses them.
#[utoipa::path(post, path = "/admin/api/dead-letters/replay", tag = "admin",
    request_body = ActionRequest,
    responses((status = 200, body = ActionReport), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn replay(
    who: Principal,
    State(state): State<AdminState>,
    StrictJson(req): StrictJson<ActionRequest>,
) -> Result<Json<ActionReport>, AdminError> {
    let include_outcome_unknown = req.include_outcome_unknown;
    let (target, dry_run) = req.target()?;
    let options = dlq::ReplayOptions {
        dry_run,
        include_outcome_unknown,
    };
    Ok(Json(actions::replay(&state, &who, target, options).await?))
}

/// `POST /admin/api/dead-letters/purge`: delete dead letters. A viewer may only dry-run. An
/// unknown key is a 400 naming it; an empty filter needs `"all": true`.
#[utoipa::path(post, path = "/admin/api/dead-letters/purge", tag = "admin",
    request_body = ActionRequest,
    responses((status = 200, body = ActionReport), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn purge(
    who: Principal,
    State(state): State<AdminState>,
    StrictJson(req): StrictJson<ActionRequest>,
) -> Result<Json<ActionReport>, AdminError> {
    let (target, dry_run) = req.target()?;
    Ok(Json(actions::purge(&state, &who, target, dry_run).await?))
}
