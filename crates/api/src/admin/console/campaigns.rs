//! The console's campaign pages:
//!
//! - `/admin/campaigns`: the newest campaigns with their state and dispatch progress;
//! - `/admin/campaigns/{id}`: one campaign's numbers, from the same status the admin API answers
//!   (`GET /admin/api/campaigns/{id}`) with its progress as a bar of sent, dead and left, its
//!   history, and for an admin the buttons that apply
//!   (start, pause, resume, cancel);
//! - `POST /admin/campaigns/{id}/{start|pause|resume|cancel}`: the change, through the campaign
//!   store (allowed transitions only, recorded with who and when) and the audit table. Cancel is
//!   final, so its first POST answers a confirmation page; only the confirmation's POST cancels.
//!
//! Every POST carries the session's CSRF token; a viewer sees no buttons and is refused (403).

use axum::Form;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use uuid::Uuid;

use crate::admin::AdminState;
use crate::admin::console::charts::{self, Part};
use crate::admin::console::session::Session;
use crate::admin::console::{PageError, PageResult, acting, audit_simple, pages, pairs, value};
use wxnotify_services::campaigns::store::{self, Campaign, StateChange};
use wxnotify_services::campaigns::{Action, CampaignError, CampaignState, Status, progress};

/// Campaigns listed on the campaigns page.
pub const LIST_SIZE: i64 = 100;

/// A campaign error as a console page (never a database detail).
fn error_page(e: CampaignError) -> PageError {
    let status = match &e {
        CampaignError::NotFound(_) => StatusCode::NOT_FOUND,
        CampaignError::Transition { .. } => StatusCode::CONFLICT,
        CampaignError::Invalid(_) | CampaignError::Io(_) => StatusCode::BAD_REQUEST,
        CampaignError::Db(err) => {
            tracing::warn!(error = %err, "console campaigns: database error");
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    let message = e.to_string();
    PageError::from(
        (
            status,
            pages::layout(
                "Error",
                None,
                html! { h1 { "Error" } p.error #campaign-error { (message) } p { a href="/admin/campaigns" { "Back to the campaigns" } } },
            ),
        )
            .into_response(),
    )
}

/// `GET /admin/campaigns`.
pub async fn list(State(state): State<AdminState>, s: Session) -> PageResult {
    let campaigns = store::list(state.pool(), LIST_SIZE)
        .await
        .map_err(error_page)?;
    Ok(list_page(&s, &campaigns).into_response())
}

/// `GET /admin/campaigns/{id}`.
pub async fn show(
    State(state): State<AdminState>,
    s: Session,
    Path(id): Path<Uuid>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q = pairs(raw.as_deref());
    let pool = state.pool();
    let campaign = store::get(pool, id).await.map_err(error_page)?;
    let status = progress::status(pool, id).await.map_err(error_page)?;
    let history = store::history(pool, id).await.map_err(error_page)?;
    Ok(campaign_page(&s, &campaign, &status, &history, value(&q, "done")).into_response())
}

/// `POST /admin/campaigns/{id}/{action}`.
pub async fn act(
    State(state): State<AdminState>,
    s: Session,
    Path((id, action)): Path<(Uuid, String)>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    acting(&s, &form)?;
    let action = match action.as_str() {
        "start" => Action::Start,
        "pause" => Action::Pause,
        "resume" => Action::Resume,
        "cancel" => Action::Cancel,
        other => {
            return Err(error_page(CampaignError::Invalid(format!(
                "unknown action {other:?} (start, pause, resume, cancel)"
            ))));
        }
    };
    if action == Action::Cancel && value(&form, "confirmed") != Some("yes") {
        let campaign = store::get(state.pool(), id).await.map_err(error_page)?;
        return Ok(confirm_cancel(&s, &campaign).into_response());
    }
    let to = store::apply(state.pool(), id, action, &s.principal.who)
        .await
        .map_err(error_page)?;
    audit_simple(
        &state,
        &s.principal,
        &format!("campaign_{}", action.as_str()),
        serde_json::json!({"campaign": id, "state": to}),
    )
    .await?;
    let mut url = url::form_urlencoded::Serializer::new(String::new());
    url.append_pair("done", &format!("Campaign {}: now {to}.", action.as_str()));
    Ok(Redirect::to(&format!("/admin/campaigns/{id}?{}", url.finish())).into_response())
}

/// The actions an operator may take in `state`, in button order.
fn actions_for(state: CampaignState) -> Vec<Action> {
    [Action::Start, Action::Pause, Action::Resume, Action::Cancel]
        .into_iter()
        .filter(|a| a.from_states().contains(&state))
        .collect()
}

fn percent(part: i64, whole: i64) -> String {
    if whole <= 0 {
        return "–".into();
    }
    format!("{:.0} %", part as f64 * 100.0 / whole as f64)
}

fn eta(s: Option<u64>) -> String {
    match s {
        None => "–".into(),
        Some(s) if s < 120 => format!("{s} s"),
        Some(s) if s < 7200 => format!("{} min", s.div_ceil(60)),
        Some(s) => format!("{:.1} h", s as f64 / 3600.0),
    }
}

fn short(id: &Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}

/// `/admin/campaigns`.
fn list_page(s: &Session, campaigns: &[Campaign]) -> Markup {
    pages::layout(
        "Campaigns",
        Some(s),
        html! {
            h1 { "Campaigns" }
            @if campaigns.is_empty() {
                p.muted #no-campaigns { "No campaign yet. Create one with " code { "wxnotify campaign create" } " or " code { "POST /admin/api/campaigns" } "." }
            } @else {
                div.scroll {
                    table #campaigns {
                        tr { th { "campaign" } th { "name" } th { "app" } th { "template" } th { "state" } th { "reachable" } th { "dispatched" } th { "progress" } th { "created" } }
                        @for c in campaigns {
                            tr.campaign data-id=(c.id) {
                                td { a href=(format!("/admin/campaigns/{}", c.id)) { (short(&c.id)) } }
                                td.name { (c.name.as_deref().unwrap_or("–")) }
                                td { (c.app) }
                                td { (c.template_id) }
                                td.state { (c.state.as_str()) }
                                td { (c.reachable) " of " (c.audience) }
                                td { (c.dispatched) }
                                td { (percent(c.dispatched, c.reachable)) }
                                td { (c.created_at.format("%Y-%m-%d %H:%M")) }
                            }
                        }
                    }
                }
                p.muted { "Progress is the share of reachable recipients dispatched; a campaign's page has what became of them." }
            }
        },
    )
}

/// `/admin/campaigns/{id}`.
fn campaign_page(
    s: &Session,
    c: &Campaign,
    st: &Status,
    history: &[StateChange],
    notice: Option<&str>,
) -> Markup {
    let dead: u64 = st.dead.values().sum();
    let title = match &c.name {
        Some(n) => format!("Campaign {n}"),
        None => format!("Campaign {}", short(&c.id)),
    };
    html_page(
        s,
        &title,
        html! {
            h1 {
                "Campaign "
                @if let Some(n) = &c.name { span #campaign-name { (n) } " " }
                span.muted { (c.id) }
            }
            @if let Some(n) = notice { p.notice #notice { (n) } }
            @if let Some(w) = &st.waiting {
                p.notice #campaign-waiting data-reason=(w.reason.as_str()) {
                    b { "Waiting: " } (w.message)
                    @if let Some(until) = w.until {
                        " " time #campaign-waiting-until datetime=(until.to_rfc3339()) {
                            "(" (until.format("%Y-%m-%d %H:%M UTC")) ")"
                        }
                    }
                }
            }
            p { "State: " b #campaign-state { (st.state.as_str()) } " · app " (c.app) " · template " (c.template_id) " · " (c.rate_per_second) "/s"
                @if let Some(w) = &c.window { " · window " (w) " " (c.time_zone) }
                @if let Some(cap) = c.daily_cap { " · at most " (cap) " a day" } }
            @if s.is_admin() {
                div.actions #campaign-actions {
                    @for a in actions_for(st.state) {
                        form method="post" action=(format!("/admin/campaigns/{}/{}", c.id, a.as_str())) {
                            input type="hidden" name="csrf" value=(s.csrf);
                            @if a == Action::Cancel {
                                button.danger id=(format!("campaign-{}", a.as_str())) type="submit" { "Cancel…" }
                            } @else {
                                button.secondary id=(format!("campaign-{}", a.as_str())) type="submit" { (capitalized(a.as_str())) }
                            }
                        }
                    }
                }
            }
            h2 { "Progress" }
            (progress_bar(st))
            div.cards {
                div.card {
                    h2 { "Numbers" }
                    table #progress {
                        tr { th { "audience" } td #n-audience { (st.audience) } }
                        tr { th { "reachable" } td #n-reachable { (st.reachable) } }
                        tr { th { "dispatched" } td #n-dispatched { (st.dispatched) } }
                        tr { th { "sent" } td #n-sent { (st.sent) } }
                        tr { th { "duplicate" } td #n-duplicate { (st.duplicate) } }
                        tr { th { "dead" } td #n-dead { (dead) } }
                        tr { th { "cancelled" } td #n-cancelled { (st.cancelled) } }
                        tr { th { "in flight" } td #n-in-flight { (st.in_flight) } }
                        tr { th { "not dispatched" } td #n-not-dispatched { (st.not_dispatched) } }
                        tr { th { "rate" } td #n-rate { (st.send_rate.map(|r| format!("{r:.1}/s")).unwrap_or_else(|| "–".into())) } }
                        tr { th { "ETA" } td #n-eta { (match &st.waiting { Some(w) => format!("– (waiting: {})", w.reason.as_str()), None => eta(st.eta_s) }) } }
                    }
                }
                div.card {
                    h2 { "Dead by reason" }
                    @if st.dead.is_empty() { p.muted { "None." } } @else {
                        table #dead-by-reason { tr { th { "reason" } th { "jobs" } }
                            @for (reason, n) in &st.dead { tr { td { (reason) } td { (n) } } } }
                    }
                    h2 { "Delivery receipts" }
                    table #receipts {
                        tr { th { "success" } td { (st.receipts.success) } }
                        tr { th { "user block" } td { (st.receipts.user_block) } }
                        tr { th { "system failed" } td { (st.receipts.system_failed) } }
                        tr { th { "other" } td { (st.receipts.other) } }
                    }
                }
                div.card {
                    h2 { "Audience by channel" }
                    table #by-channel {
                        tr { th { "channel" } th { "recipients" } th { "sent" } }
                        tr { td { "followers (OA template)" } td #n-followers { (st.by_channel.followers) }
                             td #n-sent-oa { (st.sent_by_channel.get("oa_template").copied().unwrap_or(0)) } }
                        tr { td { "grant holders (subscribe)" } td #n-grant-holders { (st.by_channel.grant_holders) }
                             td #n-sent-mp { (st.sent_by_channel.get("mp_subscribe").copied().unwrap_or(0)) } }
                        tr { td { "unreachable" } td #n-unreachable { (st.by_channel.unreachable) } td { "–" } }
                    }
                    h2 { "Unreachable at snapshot" }
                    @match st.unreachable.as_object() {
                        Some(m) if !m.is_empty() => table #unreachable { tr { th { "reason" } th { "recipients" } }
                            @for (reason, n) in m { tr { td { (reason) } td { (n) } } } },
                        _ => p.muted { "None." },
                    }
                }
            }
            h2 { "History" }
            div.scroll {
                table #history {
                    tr { th { "when" } th { "from" } th { "to" } th { "who" } }
                    @for h in history {
                        tr { td { (h.at.format("%Y-%m-%d %H:%M:%S")) } td { (h.from_state.as_deref().unwrap_or("–")) } td { (h.to_state) } td { (h.actor) } }
                    }
                }
            }
            p { a href="/admin/campaigns" { "All campaigns" } }
        },
    )
}

/// The campaign's reachable recipients as one bar: sent, dead, otherwise finished (cancelled,
/// duplicate, held for review) and left.
fn progress_bar(st: &Status) -> Markup {
    let dead: u64 = st.dead.values().sum();
    let other = st.finished().saturating_sub(st.sent + dead);
    let left = st.reachable.saturating_sub(st.finished());
    let mut parts = vec![
        Part {
            name: "sent",
            count: st.sent,
            color: charts::SENT,
        },
        Part {
            name: "dead",
            count: dead,
            color: charts::DEAD,
        },
    ];
    if other > 0 {
        parts.push(Part {
            name: "cancelled, duplicate or held",
            count: other,
            color: "#9aa1ad",
        });
    }
    parts.push(Part {
        name: "left",
        count: left,
        color: "#dfe3ea",
    });
    charts::progress("campaign-progress", &parts)
}

fn html_page(s: &Session, title: &str, body: Markup) -> Markup {
    pages::layout(title, Some(s), body)
}

fn capitalized(verb: &str) -> String {
    let mut c = verb.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The confirmation before a cancel: what stops for good, and the form that does it.
fn confirm_cancel(s: &Session, c: &Campaign) -> Markup {
    let left = (c.reachable - c.dispatched).max(0);
    html_page(
        s,
        "Cancel the campaign?",
        html! {
            h1 { "Cancel campaign " (short(&c.id)) "?" }
            p.error #cancel-warning {
                "Cancelling is final: the " (left) " reachable recipients not dispatched yet will not be sent to, "
                "and jobs still on the bulk lane are recorded cancelled, not sent. It is "
                b { (c.state.as_str()) } " now."
            }
            div.actions {
                form method="post" action=(format!("/admin/campaigns/{}/cancel", c.id)) {
                    input type="hidden" name="csrf" value=(s.csrf);
                    input type="hidden" name="confirmed" value="yes";
                    button.danger #confirm-cancel type="submit" { "Yes, cancel it" }
                }
                a.button.secondary #keep-campaign href=(format!("/admin/campaigns/{}", c.id)) { "No, keep it" }
            }
        },
    )
}
