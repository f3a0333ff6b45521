//! The console's template catalog page:
//!
//! - `/admin/templates`: every app's templates with their source (`api`: listed by WeChat;
//!   `manual`: registered by hand), the ones WeChat stopped listing, and for an admin the form
//!   that registers a template by hand and a remove button on each manual one;
//! - `POST /admin/templates`: the registration, and `POST /admin/templates/{app}/{id}/remove`:
//!   the removal, through the admin API's functions (same checks, same `admin_audit` rows).
//!
//! Every POST carries the session's CSRF token; a viewer sees no form and is refused (403).

use axum::Form;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};

use crate::admin::AdminState;
use crate::admin::api::templates::{self as api, RegisteredTemplate};
use crate::admin::console::session::Session;
use crate::admin::console::{PageError, PageResult, acting, error_page, pages, pairs, value};
use wxnotify_services::templates::AppListing;
use wxnotify_services::templates::manual::{MAX_CONTENT_CHARS, MAX_TITLE_CHARS};

/// `GET /admin/templates`.
pub async fn list(
    State(state): State<AdminState>,
    s: Session,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q = pairs(raw.as_deref());
    let listings = api::listings(&state, None).await.map_err(error_page)?;
    Ok(page(&s, &listings, value(&q, "done")).into_response())
}

/// `POST /admin/templates`: registers a template by hand.
pub async fn add(
    State(state): State<AdminState>,
    s: Session,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    acting(&s, &form)?;
    let field = |k: &str| value(&form, k).unwrap_or("");
    let RegisteredTemplate {
        app,
        action,
        template,
    } = api::register(
        &state,
        &s.principal,
        value(&form, "app"),
        field("template_id"),
        field("title"),
        field("content"),
    )
    .await
    .map_err(|e| PageError::from(error_page(e)))?;
    let done = format!(
        "{app}: template {} {} (manual), keys {}.",
        template.template_id,
        action.replace('_', " "),
        template.placeholders.join(", ")
    );
    Ok(back(&done))
}

/// `POST /admin/templates/{app}/{id}/remove`: removes a template registered by hand.
pub async fn remove(
    State(state): State<AdminState>,
    s: Session,
    Path((app, template_id)): Path<(String, String)>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    acting(&s, &form)?;
    let removed = api::unregister(&state, &s.principal, &app, &template_id)
        .await
        .map_err(|e| PageError::from(error_page(e)))?;
    Ok(back(&format!(
        "{app}: manual template {} removed; its jobs are sent unchecked.",
        removed.template_id
    )))
}

fn back(done: &str) -> axum::response::Response {
    let mut url = url::form_urlencoded::Serializer::new(String::new());
    url.append_pair("done", done);
    Redirect::to(&format!("/admin/templates?{}", url.finish())).into_response()
}

fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The page.
fn page(s: &Session, listings: &[AppListing], notice: Option<&str>) -> Markup {
    let admin = s.is_admin();
    pages::layout(
        "Templates",
        Some(s),
        html! {
            h1 { "Templates" }
            @if let Some(n) = notice { p.notice #notice { (n) } }
            p.muted {
                "WeChat's template list (get_all_private_template) holds historical templates only, never category templates (thing1, time2 …). "
                "A job naming a template listed here is checked before sending (keys, value rules); any other template is sent and WeChat decides. "
                "Register a category template by hand so its jobs are checked too; a listed template that vanished from WeChat's list is refused as deleted."
            }
            @for l in listings {
                h2 { (l.app) }
                p.muted {
                    @match &l.synced_at {
                        Some(at) => { "WeChat's list fetched " (time(at)) " UTC." }
                        None => { "WeChat's list was never fetched (wxnotify templates sync)." }
                    }
                }
                div.scroll {
                    table.templates data-app=(l.app) {
                        tr { th { "template id" } th { "source" } th { "title" } th { "keys" } @if admin { th {} } }
                        @for t in &l.templates {
                            tr.template data-id=(t.template_id) {
                                td.name { (t.template_id) }
                                td.source { (t.source.as_str()) }
                                td { (t.title) }
                                td.msg { (t.placeholders.join(", ")) }
                                @if admin {
                                    td {
                                        @if t.source == wxnotify_services::templates::TemplateSource::Manual {
                                            form method="post" action=(format!("/admin/templates/{}/{}/remove", l.app, t.template_id)) {
                                                input type="hidden" name="csrf" value=(s.csrf);
                                                button.secondary type="submit" aria-label=(format!("remove {}", t.template_id)) { "Remove" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        @for t in &l.removed {
                            tr.template.removed data-id=(t.template_id) {
                                td.name { (t.template_id) }
                                td.source { "removed" br; span.muted { @if let Some(at) = &t.removed_at { (time(at)) } } }
                                td { (t.title) }
                                td.msg { (t.placeholders.join(", ")) }
                                @if admin { td {} }
                            }
                        }
                    }
                }
                @if l.templates.is_empty() && l.removed.is_empty() { p.muted { "No templates." } }
            }
            @if admin {
                h2 { "Register a template by hand" }
                form #add-template method="post" action="/admin/templates" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    div.filters {
                        label { "App"
                            select name="app" {
                                @for l in listings { option value=(l.app) { (l.app) } }
                            }
                        }
                        label { "Template id" input #template-id type="text" name="template_id" required maxlength="64"; }
                        label { "Title (optional)" input #template-title type="text" name="title" maxlength=(MAX_TITLE_CHARS); }
                        label { "Content, with its {{key.DATA}} placeholders"
                            textarea #template-content name="content" rows="3" required maxlength=(MAX_CONTENT_CHARS) placeholder="商品：{{thing1.DATA}} 时间：{{time2.DATA}}" {}
                        }
                        div { button #add type="submit" { "Register" } }
                    }
                }
            }
        },
    )
}
