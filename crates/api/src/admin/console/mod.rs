//! The ops console at `/admin`: server-rendered HTML (maud), no script, for a laptop or a phone.
//!
//! - `/admin/login`: the token → a session cookie ([`session`]);
//! - `/admin`: sends and deaths over time, outcomes as bars, queue depths (empty retry tiers
//!   folded into one row), workers, apps (pause / resume);
//! - `/admin/dead-letters`: the filter form, dead letters by hour and reason over the last day
//!   as a chart, counts by errcode and reason, select or "all matching", then a confirmation
//!   page with the dry run's count before anything changes;
//! - `/admin/dead-letters/{id}`: one letter, its attempts (errcode, errmsg, rid) and job;
//! - `/admin/jobs?q=`: a job by id (its current life first, earlier lives in its history), or a
//!   recipient's latest jobs;
//! - `/admin/campaigns`, `/admin/campaigns/{id}`: campaigns, their progress, pause / resume /
//!   cancel, with progress as a bar ([`campaigns`]);
//! - `/admin/templates`: each app's template catalog with its sources, and templates registered
//!   or removed by hand ([`templates`]).
//!
//! Charts are inline SVG drawn on the server ([`charts`]).
//!
//! Every POST carries the session's CSRF token; a viewer sees no button that changes anything
//! and is refused (403) if it posts anyway. Pages answer with a strict Content-Security-Policy.

pub mod campaigns;
pub mod charts;
pub mod filter;
mod login;
pub mod pages;
pub mod session;
pub mod templates;

use axum::Form;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::Utc;
use maud::Markup;

use crate::admin::AdminState;
use crate::admin::actions::{self, Target};
use crate::admin::api::{self as admin_api, DeliveryParams};
use crate::admin::auth::Role;
use crate::admin::error::AdminError;
use crate::admin::store::{self, AuditEntry};
use filter::FilterForm;
use login::{login, login_page, logout};
use session::Session;
use wxnotify_services::dlq::query;

/// How many hours the overview's chart covers.
pub const CHART_HOURS: u32 = 3;
/// Letters per console page.
pub const PAGE_SIZE: u32 = 50;

/// The console's routes.
pub fn router() -> Router<AdminState> {
    Router::new()
        .route("/admin", get(overview))
        .route("/admin/", get(|| async { Redirect::to("/admin") }))
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/dead-letters", get(letters))
        .route("/admin/dead-letters/confirm", post(confirm))
        .route("/admin/dead-letters/act", post(act))
        .route("/admin/dead-letters/{id}", get(letter))
        .route("/admin/jobs", get(jobs))
        .route("/admin/apps/{name}/{op}", post(app_op))
        .route("/admin/campaigns", get(campaigns::list))
        .route("/admin/campaigns/{id}", get(campaigns::show))
        .route("/admin/campaigns/{id}/{action}", post(campaigns::act))
        .route(
            "/admin/templates",
            get(templates::list).post(templates::add),
        )
        .route(
            "/admin/templates/{app}/{id}/remove",
            post(templates::remove),
        )
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(r: Response) -> Response {
    // No cache, no sniffing: what every admin answer says; then what a page says besides.
    let mut r = crate::admin::private_answer(r).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// An error as a console page.
fn error_page(e: AdminError) -> Response {
    let status = e.status();
    let message = e.public_message();
    (
        status,
        pages::layout("Error", None, maud::html! { h1 { "Error" } p.error { (message) } p { a href="/admin" { "Back to the console" } } }),
    )
        .into_response()
}

/// A page that answers an error (boxed: a response is large).
pub struct PageError(Box<Response>);

impl From<Response> for PageError {
    fn from(r: Response) -> Self {
        PageError(Box::new(r))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        *self.0
    }
}

type PageResult = Result<Response, PageError>;

fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

async fn audit_simple(
    state: &AdminState,
    who: &crate::admin::auth::Principal,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), Response> {
    store::audit(
        state.pool(),
        who,
        &AuditEntry {
            action,
            filter: None,
            ids: None,
            affected: 0,
            dry_run: false,
            detail,
        },
    )
    .await
    .map_err(|e| error_page(e.into()))
}

async fn overview(
    State(state): State<AdminState>,
    s: Session,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q = pairs(raw.as_deref());
    let pool = state.pool();
    let e = |e: sqlx::Error| error_page(e.into());
    let o = pages::Overview {
        activity: store::activity(
            pool,
            Utc::now() - chrono::Duration::hours(CHART_HOURS.into()),
        )
        .await
        .map_err(e)?,
        outcomes: store::outcomes(pool, 24).await.map_err(e)?,
        queues: state.queues().depths().await.map_err(|e| e.to_string()),
        workers: store::live_workers(pool).await.map_err(e)?,
        apps: store::apps(pool).await.map_err(e)?,
        hours: CHART_HOURS,
    };
    Ok(html(pages::overview(&s, &o, value(&q, "done"))))
}

fn html(m: Markup) -> Response {
    m.into_response()
}

async fn letters(
    State(state): State<AdminState>,
    s: Session,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q = pairs(raw.as_deref());
    let form = FilterForm::from_pairs(&q);
    let after = value(&q, "after").and_then(|a| a.parse::<i64>().ok());
    let (query, error) = match form.to_query() {
        Ok(query) => (query, None),
        Err(e) => (wxnotify_services::dlq::DeadLetterQuery::default(), Some(e)),
    };
    let pool = state.pool();
    let e = |e: sqlx::Error| error_page(e.into());
    let page = query::page(pool, &query, after, PAGE_SIZE)
        .await
        .map_err(e)?;
    let (total, _) = query::count(pool, &query).await.map_err(e)?;
    let groups = query::groups(pool, &query).await.map_err(e)?;
    let by_hour =
        store::dead_by_hour_and_reason(pool, &query, Utc::now() - chrono::Duration::hours(24))
            .await
            .map_err(e)?;
    let list = pages::LetterList {
        by_hour,
        form: &form,
        error,
        notice: value(&q, "done").map(str::to_owned),
        page,
        total,
        groups,
        after,
    };
    Ok(html(pages::letters(&s, &list)))
}

/// The operation of a dead-letter form: `replay|purge` and `selected|filter`.
fn operation(form: &[(String, String)]) -> Result<(&'static str, &'static str), PageError> {
    match value(form, "op") {
        Some("replay:selected") => Ok(("replay", "selected")),
        Some("replay:filter") => Ok(("replay", "filter")),
        Some("purge:selected") => Ok(("purge", "selected")),
        Some("purge:filter") => Ok(("purge", "filter")),
        _ => Err(error_page(AdminError::BadRequest(
            "unknown operation; use the buttons of the dead-letter list".into(),
        ))
        .into()),
    }
}

fn target(
    form: &[(String, String)],
    scope: &str,
) -> Result<(Target, Vec<i64>, FilterForm), PageError> {
    let filter = FilterForm::from_pairs(form);
    if scope == "filter" {
        let q = filter
            .to_query()
            .map_err(|e| PageError::from(error_page(AdminError::BadRequest(e))))?;
        return Ok((Target::Filter(q), Vec::new(), filter));
    }
    let ids: Vec<i64> = form
        .iter()
        .filter(|(k, _)| k == "id")
        .filter_map(|(_, v)| v.parse().ok())
        .take(actions::MAX_IDS)
        .collect();
    if ids.is_empty() {
        return Err(error_page(AdminError::BadRequest(
            "no dead letter selected: tick some in the list first".into(),
        ))
        .into());
    }
    Ok((Target::Ids(ids.clone()), ids, filter))
}

fn acting(s: &Session, form: &[(String, String)]) -> Result<(), PageError> {
    s.check_csrf(value(form, "csrf"))?;
    if s.principal.role != Role::Admin {
        return Err(PageError::from(pages::refused(
            "The viewer role reads only; log in with the admin token to change anything.",
        )));
    }
    Ok(())
}

async fn confirm(
    State(state): State<AdminState>,
    s: Session,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    acting(&s, &form)?;
    let (op, scope) = operation(&form)?;
    let (target, ids, filter) = target(&form, scope)?;
    let report = match op {
        "replay" => actions::replay(&state, &s.principal, target, true).await,
        _ => actions::purge(&state, &s.principal, target, true).await,
    }
    .map_err(error_page)?;
    let proposal = pages::Proposal {
        op,
        scope,
        ids: &ids,
        form: &filter,
        report: &report,
    };
    Ok(html(pages::confirm(&s, &proposal)))
}

async fn act(
    State(state): State<AdminState>,
    s: Session,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    acting(&s, &form)?;
    let (op, scope) = operation(&form)?;
    let (target, _, mut filter) = target(&form, scope)?;
    let report = match op {
        "replay" => actions::replay(&state, &s.principal, target, false).await,
        _ => actions::purge(&state, &s.principal, target, false).await,
    }
    .map_err(error_page)?;
    let mut done = format!(
        "{} {} dead letter{}.",
        if op == "replay" { "Replayed" } else { "Purged" },
        report.affected,
        if report.affected == 1 { "" } else { "s" }
    );
    if !report.skipped.is_empty() {
        done.push_str(&format!(" {} skipped.", report.skipped.len()));
    }
    if !report.failed.is_empty() {
        done.push_str(&format!(
            " {} failed: {}",
            report.failed.len(),
            report.failed[0].why
        ));
    }
    filter.max_id.clear();
    let mut url = url::form_urlencoded::Serializer::new(filter.to_url_query());
    url.append_pair("done", &done);
    Ok(Redirect::to(&format!("/admin/dead-letters?{}", url.finish())).into_response())
}

async fn letter(State(state): State<AdminState>, s: Session, Path(id): Path<i64>) -> PageResult {
    let detail = admin_api::load_dead_letter(&state, id)
        .await
        .map_err(error_page)?;
    Ok(html(pages::letter(&s, &detail)))
}

async fn jobs(State(state): State<AdminState>, s: Session, RawQuery(raw): RawQuery) -> PageResult {
    let q = pairs(raw.as_deref());
    let text = value(&q, "q").unwrap_or("").trim().to_owned();
    let app = value(&q, "app").map(str::to_owned);
    let found = if text.is_empty() {
        None
    } else {
        let by_id = DeliveryParams {
            job_id: Some(text.clone()),
            app,
            recipient: None,
        };
        let mut found = admin_api::lookup(&state, &by_id).await;
        if found.as_ref().is_ok_and(|f| f.deliveries.is_empty()) {
            let by_recipient = DeliveryParams {
                job_id: None,
                app: None,
                recipient: Some(text.clone()),
            };
            found = admin_api::lookup(&state, &by_recipient).await;
        }
        Some(found.map_err(|e| e.public_message()))
    };
    let lives = match &found {
        Some(Ok(f)) => match f.deliveries.as_slice() {
            [one] => Some(job_lives(state.pool(), &one.app, &one.job_id).await?),
            _ => None,
        },
        _ => None,
    };
    Ok(html(pages::jobs(&s, &text, found, lives.as_ref())))
}

/// The lives of one job: the one it is in, how the earlier ones ended, every failed attempt.
async fn job_lives(
    pool: &sqlx::PgPool,
    app: &str,
    job_id: &str,
) -> Result<pages::JobLives, PageError> {
    let e = |e: sqlx::Error| PageError::from(error_page(e.into()));
    let job = Some((app, job_id));
    Ok(pages::JobLives {
        life: store::life(pool, app, job_id)
            .await
            .map_err(e)?
            .unwrap_or(1),
        ended: wxnotify_services::dlq::store::lives(pool, job)
            .await
            .map_err(e)?,
        attempts: wxnotify_services::dlq::history(pool, job)
            .await
            .map_err(e)?,
    })
}

async fn app_op(
    State(state): State<AdminState>,
    s: Session,
    Path((name, op)): Path<(String, String)>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    acting(&s, &form)?;
    let minutes = match op.as_str() {
        "pause" => Some(60),
        "resume" => None,
        _ => {
            return Err(error_page(AdminError::NotFound("use pause or resume".into())).into());
        }
    };
    admin_api::set_pause(&state, &s.principal, &name, minutes)
        .await
        .map_err(error_page)?;
    let done = format!(
        "{name}: {}",
        if minutes.is_some() {
            "paused for an hour"
        } else {
            "resumed"
        }
    );
    let mut url = url::form_urlencoded::Serializer::new(String::new());
    url.append_pair("done", &done);
    Ok(Redirect::to(&format!("/admin?{}", url.finish())).into_response())
}
