//! The template catalog in the admin API: every app's templates with their source (any role),
//! and templates registered or removed by hand (role admin, audited). The console calls the
//! same functions ([`listings`], [`register`], [`unregister`]).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

use crate::admin::AdminState;
use crate::admin::auth::{AdminOnly, Principal};
use crate::admin::error::{AdminError, ErrorBody};
use crate::admin::store::{self, AuditEntry};
use wxnotify_core::domain::AppName;
use wxnotify_services::templates::manual::{self, ManualError, ManualTemplate};
use wxnotify_services::templates::{AppListing, Catalog, CatalogTemplate, TemplateSource};

/// Which app.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TemplateParams {
    /// Only this app (default: every configured app).
    pub app: Option<String>,
}

/// A template to register by hand.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(expecting = "a template {\"app\", \"template_id\", \"content\", \"title\"}")]
pub struct NewTemplate {
    /// The configured app (default: the first configured app).
    #[serde(default)]
    pub app: Option<String>,
    /// The template id, as the OA's admin page shows it.
    pub template_id: String,
    /// The template's content with its `{{key.DATA}}` placeholders (at least one): the keys
    /// of a job's data must be exactly these.
    pub content: String,
    /// Its title (optional).
    #[serde(default)]
    pub title: String,
}

/// What a registration did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RegisteredTemplate {
    /// The app.
    pub app: String,
    /// `added`, `updated` (an earlier registration) or `replaced_removed` (a template WeChat
    /// listed before and no longer lists).
    pub action: String,
    /// The template as stored (source `manual`).
    pub template: CatalogTemplate,
}

impl From<ManualError> for AdminError {
    fn from(e: ManualError) -> Self {
        match e {
            ManualError::Invalid(m) => AdminError::BadRequest(m),
            e @ (ManualError::UnknownApp(_) | ManualError::NotFound { .. }) => {
                AdminError::NotFound(e.to_string())
            }
            e @ ManualError::Listed { .. } => AdminError::Conflict(e.to_string()),
            ManualError::Db(e) => e.into(),
        }
    }
}

/// The configured app named `name` (the first configured app when `None`), or 404.
fn configured(state: &AdminState, name: Option<&str>) -> Result<AppName, AdminError> {
    let apps = &state.settings().apps;
    let found = match name.map(str::trim).filter(|n| !n.is_empty()) {
        None => apps.first(),
        Some(name) => apps.iter().find(|a| a.name.as_str() == name),
    };
    found.map(|a| a.name.clone()).ok_or_else(|| {
        AdminError::NotFound(format!(
            "no app {:?} is configured",
            name.unwrap_or_default()
        ))
    })
}

/// The catalog of every configured app (or of `app`), as `wxnotify templates list --json`
/// prints it.
pub async fn listings(
    state: &AdminState,
    app: Option<&str>,
) -> Result<Vec<AppListing>, AdminError> {
    let apps: Vec<AppName> = match app.map(str::trim).filter(|a| !a.is_empty()) {
        Some(app) => vec![configured(state, Some(app))?],
        None => state
            .settings()
            .apps
            .iter()
            .map(|a| a.name.clone())
            .collect(),
    };
    let catalog = Catalog::load(state.pool()).await?;
    Ok(apps.iter().map(|app| catalog.listing(app)).collect())
}

/// Registers a manual template of `app` for `who` (role admin); audited as `template_add`.
pub async fn register(
    state: &AdminState,
    who: &Principal,
    app: Option<&str>,
    template_id: &str,
    title: &str,
    content: &str,
) -> Result<RegisteredTemplate, AdminError> {
    who.require_admin()?;
    let app = configured(state, app)?;
    let template = ManualTemplate::parse(template_id, title, content)?;
    let added = manual::add(state.pool(), &app, &template).await?;
    let action = match added.replaced {
        None => "added",
        Some(TemplateSource::Manual) => "updated",
        Some(TemplateSource::Api) => "replaced_removed",
    };
    store::audit(
        state.pool(),
        who,
        &AuditEntry::one(
            "template_add",
            serde_json::json!({
                "app": app.as_str(),
                "template_id": added.template.template_id,
                "placeholders": added.template.placeholders,
                "action": action,
            }),
        ),
    )
    .await?;
    Ok(RegisteredTemplate {
        app: app.to_string(),
        action: action.into(),
        template: added.template,
    })
}

/// Removes the manual template `template_id` of `app` for `who` (role admin); audited as
/// `template_remove`. A template WeChat lists cannot be removed (409).
pub async fn unregister(
    state: &AdminState,
    who: &Principal,
    app: &str,
    template_id: &str,
) -> Result<CatalogTemplate, AdminError> {
    who.require_admin()?;
    let app = configured(state, Some(app))?;
    let removed = manual::remove(state.pool(), &app, template_id.trim()).await?;
    store::audit(
        state.pool(),
        who,
        &AuditEntry::one(
            "template_remove",
            serde_json::json!({
                "app": app.as_str(),
                "template_id": removed.template_id,
            }),
        ),
    )
    .await?;
    Ok(removed)
}

/// `GET /admin/api/templates?app=`: each app's templates with their source (`api`: listed by
/// WeChat; `manual`: registered by hand), and the ones WeChat stopped listing (`removed`).
#[utoipa::path(get, path = "/admin/api/templates", tag = "admin",
    params(TemplateParams),
    responses((status = 200, body = Vec<AppListing>), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn list_templates(
    _who: Principal,
    State(state): State<AdminState>,
    Query(p): Query<TemplateParams>,
) -> Result<Json<Vec<AppListing>>, AdminError> {
    Ok(Json(listings(&state, p.app.as_deref()).await?))
}

/// `POST /admin/api/templates`: register a template by hand (e.g. a category template, which
/// WeChat's API does not list) so that its jobs are checked before sending. 409 when WeChat
/// lists the id. Admin only; audited.
#[utoipa::path(post, path = "/admin/api/templates", tag = "admin",
    request_body = NewTemplate,
    responses((status = 201, body = RegisteredTemplate), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn add_template(
    AdminOnly(who): AdminOnly,
    State(state): State<AdminState>,
    Json(body): Json<NewTemplate>,
) -> Result<(StatusCode, Json<RegisteredTemplate>), AdminError> {
    let registered = register(
        &state,
        &who,
        body.app.as_deref(),
        &body.template_id,
        &body.title,
        &body.content,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

/// `DELETE /admin/api/templates/{app}/{template_id}`: remove a template registered by hand
/// (its jobs are then sent unchecked; WeChat decides). 404 when there is no such manual
/// template, 409 when WeChat lists it. Admin only; audited.
#[utoipa::path(delete, path = "/admin/api/templates/{app}/{template_id}", tag = "admin",
    params(("app" = String, Path, description = "The app"),
        ("template_id" = String, Path, description = "The manual template's id")),
    responses((status = 200, body = CatalogTemplate), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn remove_template(
    AdminOnly(who): AdminOnly,
    State(state): State<AdminState>,
    Path((app, template_id)): Path<(String, String)>,
) -> Result<Json<CatalogTemplate>, AdminError> {
    Ok(Json(unregister(&state, &who, &app, &template_id).await?))
}
