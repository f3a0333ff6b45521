//! `GET /admin/api/subscriptions?app=&mp_openid=`: what the grant ledger holds for one person,
//! per subscribe template (any role).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use wxnotify_core::domain::AppName;

use crate::admin::AdminState;
use crate::admin::auth::Principal;
use crate::admin::error::{AdminError, ErrorBody};
use crate::admin::strict::StrictQuery;

/// Whose grants.
#[derive(Debug, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionParams {
    /// The app.
    pub app: String,
    /// The person's Mini Program openid.
    pub mp_openid: String,
}

/// One template's grants of the person.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SubscriptionRow {
    /// The subscribe template.
    pub template_id: String,
    /// Acceptances counted (each once, whichever sources reported it).
    pub granted: i64,
    /// Grants spent by sends.
    pub used: i64,
    /// One-time grants left: `granted - used` less those WeChat proved gone (43101).
    pub remaining: i64,
    /// `accept`, `reject` or `ban`: the person's latest choice (sends only in `accept`).
    pub state: String,
    /// A long-term grant is in force (while `accept`, sends spend no one-time grant).
    pub long_term: bool,
    /// Grants written off on 43101.
    pub voided: i64,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
}

/// The person's grants, by template.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Subscriptions {
    /// The app.
    pub app: String,
    /// The person.
    pub mp_openid: String,
    /// One row per template the person ever chose for (none: no choice recorded).
    pub templates: Vec<SubscriptionRow>,
}

/// `GET /admin/api/subscriptions?app=…&mp_openid=…`.
#[utoipa::path(get, path = "/admin/api/subscriptions", tag = "admin",
    params(SubscriptionParams),
    responses((status = 200, body = Subscriptions), (status = 400, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn subscriptions(
    _who: Principal,
    State(state): State<AdminState>,
    StrictQuery(p): StrictQuery<SubscriptionParams>,
) -> Result<Json<Subscriptions>, AdminError> {
    let app = AppName::parse(p.app.trim().to_owned())
        .map_err(|e| AdminError::BadRequest(format!("app: {e}")))?;
    let mp_openid = p.mp_openid.trim();
    if mp_openid.is_empty() {
        return Err(AdminError::BadRequest(
            "give mp_openid, the person's Mini Program openid".into(),
        ));
    }
    let rows = wxnotify_services::subscriptions::grants_of(state.pool(), &app, mp_openid).await?;
    Ok(Json(Subscriptions {
        app: app.to_string(),
        mp_openid: mp_openid.to_owned(),
        templates: rows
            .into_iter()
            .map(|g| SubscriptionRow {
                template_id: g.template_id,
                granted: g.granted,
                used: g.used,
                remaining: g.remaining,
                state: g.state,
                long_term: g.long_term,
                voided: g.voided,
                updated_at: g.updated_at,
            })
            .collect(),
    }))
}
