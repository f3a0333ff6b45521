//! The OpenAPI description of the campaign endpoints under `/admin/api/campaigns`
//! ([`crate::admin::campaigns`]), merged into `schemas/openapi.json` by [`crate::openapi`].
//!
//! The handlers take and answer the campaign module's own types, which serialise without
//! utoipa; the schemas here name the same fields (a unit test compares them with what the real
//! values serialise to, so the two cannot drift apart unnoticed).

#![allow(dead_code)] // documentation only: the functions and structs carry annotations

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::OpenApi;
use uuid::Uuid;

/// The campaign endpoints' part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(list, create, status, preview, start, pause, resume, cancel),
    components(schemas(
        CampaignDoc,
        CampaignStatusDoc,
        ReceiptsDoc,
        ChannelsDoc,
        CreateCampaignDoc,
        CreateReportDoc,
        BadLinesDoc,
        BadLineDoc,
        PreviewDoc,
        WaitingDoc,
        WaitReasonDoc,
        StateAnswerDoc,
        CampaignErrorDoc,
        CampaignStateDoc,
    )),
    tags((name = "campaigns", description = "Bulk campaigns: one template to an audience, paced; create, follow, pause, resume, cancel. Bearer token of role admin (viewer: GET only)."))
)]
pub struct CampaignsApiDoc;

/// A campaign's state.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CampaignState)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStateDoc {
    /// Created with its snapshot; nothing sent until `start`.
    Draft,
    /// Started with a start time ahead.
    Scheduled,
    /// Being dispatched.
    Running,
    /// Stopped by an operator; `resume` continues.
    Paused,
    /// Every reachable recipient finished.
    Completed,
    /// Stopped for good.
    Cancelled,
}

/// Why a campaign sends nothing now.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CampaignWaitReason)]
#[serde(rename_all = "snake_case")]
pub enum WaitReasonDoc {
    /// Started with a start time ahead (`until`: the start time).
    Scheduled,
    /// Paused by an operator (no `until`: someone must resume it).
    Paused,
    /// Outside its daily send window (`until`: when it opens).
    WindowClosed,
    /// Its daily cap is reached (`until`: its next day, or the window's opening that day).
    DailyCap,
    /// The app's daily WeChat quota is used up (`until`: the end of the app's quota pause).
    Quota,
    /// The app is paused by an operator (`until`) or suspended while WeChat refuses it.
    AppPaused,
}

/// Why a running, scheduled or paused campaign sends nothing now, and when it goes on.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CampaignWaiting)]
pub struct WaitingDoc {
    pub reason: WaitReasonDoc,
    /// When it goes on by itself (null: someone must act).
    pub until: Option<DateTime<Utc>>,
    /// One sentence for people, with the time in the campaign's time zone.
    pub message: String,
}

/// A stored campaign (`GET /admin/api/campaigns`).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Campaign)]
pub struct CampaignDoc {
    pub id: Uuid,
    /// Its name, for people (the id stays the key).
    pub name: Option<String>,
    /// Whether its jobs shorten values too long for their key type.
    pub truncate: bool,
    pub app: String,
    pub template_id: String,
    /// Shared template fields.
    pub data: serde_json::Value,
    pub url: Option<String>,
    pub miniprogram: Option<serde_json::Value>,
    /// The Mini Program subscribe message its jobs carry: `{"template_id", "data", "page",
    /// "miniprogram_state"}` (a job's `mp_subscribe`).
    pub mp_subscribe: Option<serde_json::Value>,
    /// Not sent after.
    pub not_after: Option<DateTime<Utc>>,
    /// `followers`, `file` or `list`.
    pub audience_kind: String,
    pub state: CampaignStateDoc,
    pub rate_per_second: u32,
    /// `HH:MM-HH:MM`.
    pub window: Option<String>,
    /// IANA time zone of the window and the daily cap.
    pub time_zone: String,
    pub start_at: Option<DateTime<Utc>>,
    pub daily_cap: Option<i64>,
    /// Distinct recipients in the snapshot.
    pub audience: i64,
    pub reachable: i64,
    /// Unreachable by reason.
    pub unreachable: BTreeMap<String, u64>,
    /// Of the reachable, those reached by a grant (the subscribe message).
    pub grant_holders: i64,
    /// Reachable recipients dispatched so far.
    pub dispatched: i64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A campaign's audience by the channel that reaches it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CampaignChannels)]
pub struct ChannelsDoc {
    /// OA followers: the OA's template message.
    pub followers: u64,
    /// Mini Program users who do not follow but hold a grant for the campaign's subscribe
    /// template: the subscribe message.
    pub grant_holders: u64,
    /// Reached by neither.
    pub unreachable: u64,
}

/// Delivery receipts of a campaign's sends.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CampaignReceipts)]
pub struct ReceiptsDoc {
    pub success: u64,
    pub user_block: u64,
    pub system_failed: u64,
    pub other: u64,
}

/// A campaign's progress, read from the ledger (`campaign status --json`).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CampaignStatus)]
pub struct CampaignStatusDoc {
    pub id: Uuid,
    pub name: Option<String>,
    pub app: String,
    pub state: CampaignStateDoc,
    /// Why it sends nothing now and when it goes on; null while it may send and once finished.
    pub waiting: Option<WaitingDoc>,
    pub audience: u64,
    pub reachable: u64,
    /// Unreachable by reason (from the snapshot).
    pub unreachable: BTreeMap<String, u64>,
    /// The audience by channel (from the snapshot).
    pub by_channel: ChannelsDoc,
    /// Sent, by the channel that sent them (`oa_template`, `mp_subscribe`).
    pub sent_by_channel: BTreeMap<String, u64>,
    /// Published to the bulk lane.
    pub dispatched: u64,
    /// Accepted by WeChat.
    pub sent: u64,
    /// Not sent again: repeated arrivals of a finished job id, and jobs WeChat answered 40241.
    pub duplicate: u64,
    /// Held by WeChat for its content review (40252): never sent again; each ends sent or
    /// dead `content_blocked`.
    pub held: u64,
    /// Dead, by reason.
    pub dead: BTreeMap<String, u64>,
    /// Recorded `cancelled` (not sent).
    pub cancelled: u64,
    /// Dispatched, not finished yet.
    pub in_flight: u64,
    /// Reachable, never dispatched.
    pub not_dispatched: u64,
    pub receipts: ReceiptsDoc,
    /// Sends per second over the last ten seconds (null once completed or cancelled).
    pub send_rate: Option<f64>,
    /// Seconds until done at the campaign's pace: what is left over its rate (null while it
    /// waits, and when it is not sending).
    pub eta_s: Option<u64>,
}

/// `POST /admin/api/campaigns` body.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CreateCampaign)]
pub struct CreateCampaignDoc {
    /// A name for people, 1 to 120 characters (the id stays the key).
    pub name: Option<String>,
    /// Shorten values too long for their key type instead of refusing those recipients
    /// (default false).
    pub truncate: Option<bool>,
    /// The app (default: the first configured).
    pub app: Option<String>,
    /// The OA template.
    pub template_id: String,
    /// Shared template fields, `{"thing1": "…"}`.
    pub data: serde_json::Value,
    pub url: Option<String>,
    /// `{"appid": "…", "pagepath": "…"}`.
    pub miniprogram: Option<serde_json::Value>,
    /// The Mini Program subscribe message, as a job's: `{"template_id", "data", "page",
    /// "miniprogram_state"}`. Mini Program users who do not follow the OA but hold a grant for
    /// its template join the audience and get it; every job carries it, so the worker chooses
    /// the channel per person.
    pub mp_subscribe: Option<serde_json::Value>,
    /// `"followers"` or `{"recipients": [{"to": {"mp_openid": "…"}, "data": {…}}, …]}`.
    pub audience: serde_json::Value,
    /// Sends per second (default and ceiling: the app's rate).
    pub rate: Option<u32>,
    /// `HH:MM-HH:MM`.
    pub window: Option<String>,
    /// IANA time zone (default UTC).
    pub time_zone: Option<String>,
    pub start_at: Option<DateTime<Utc>>,
    pub daily_cap: Option<u64>,
    pub not_after: Option<DateTime<Utc>>,
}

/// One skipped recipient line.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CampaignBadLine)]
pub struct BadLineDoc {
    pub line: u64,
    pub error: String,
}

/// Skipped recipient lines: how many, and the first ones.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CampaignBadLines)]
pub struct BadLinesDoc {
    pub count: u64,
    pub first: Vec<BadLineDoc>,
}

/// What a create reports (state `draft`).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CampaignCreated)]
pub struct CreateReportDoc {
    pub id: Uuid,
    pub name: Option<String>,
    pub state: CampaignStateDoc,
    pub audience: u64,
    pub reachable: u64,
    pub unreachable: BTreeMap<String, u64>,
    /// The audience by channel.
    pub by_channel: ChannelsDoc,
    /// Repeated recipients kept once.
    pub repeats: u64,
    /// Skipped lines: unreadable, or recipients whose data breaks the template.
    pub bad_lines: BadLinesDoc,
}

/// The snapshot's figures.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CampaignPreview)]
pub struct PreviewDoc {
    pub id: Uuid,
    pub name: Option<String>,
    pub state: CampaignStateDoc,
    pub audience: u64,
    pub reachable: u64,
    pub unreachable: BTreeMap<String, u64>,
    /// The audience by channel.
    pub by_channel: ChannelsDoc,
    /// The template check of the shared data against today's catalog.
    pub template: serde_json::Value,
    /// The check of `mp_subscribe.data` against today's subscribe templates (null without
    /// `mp_subscribe`).
    pub mp_subscribe_template: Option<serde_json::Value>,
    /// Recipients whose own data breaks the template, by line.
    pub bad_rows: BadLinesDoc,
}

/// The state after an action.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CampaignStateChange)]
pub struct StateAnswerDoc {
    pub id: Uuid,
    pub state: CampaignStateDoc,
}

/// A campaign error (never a secret).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CampaignError)]
pub struct CampaignErrorDoc {
    pub error: String,
}

/// The newest campaigns (at most 100).
#[utoipa::path(get, path = "/admin/api/campaigns", tag = "campaigns", operation_id = "list_campaigns",
    responses((status = 200, body = Vec<CampaignDoc>), (status = 401, body = CampaignErrorDoc)),
    security(("admin_token" = [])))]
pub fn list() {}

/// Creates a campaign and its audience snapshot (state `draft`).
#[utoipa::path(post, path = "/admin/api/campaigns", tag = "campaigns", operation_id = "create_campaign",
    request_body = CreateCampaignDoc,
    responses(
        (status = 201, body = CreateReportDoc),
        (status = 400, description = "Bad input, naming the field: an unknown key or app, a rate outside 1 to the app's, a daily_cap outside 1 to 100,000,000, a url not http(s), a bad window, template data, more than 100,000 recipients inline", body = CampaignErrorDoc),
        (status = 413, description = "The body is over 8 MiB (`limit_bytes`): give a larger audience as a recipients file", body = CampaignErrorDoc),
        (status = 401, body = CampaignErrorDoc),
        (status = 403, description = "A viewer token", body = CampaignErrorDoc),
    ),
    security(("admin_token" = [])))]
pub fn create() {}

/// A campaign's progress.
#[utoipa::path(get, path = "/admin/api/campaigns/{id}", tag = "campaigns", operation_id = "campaign_status",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = CampaignStatusDoc), (status = 401, body = CampaignErrorDoc),
              (status = 404, body = CampaignErrorDoc)),
    security(("admin_token" = [])))]
pub fn status() {}

/// Reachable and unreachable recipients of the snapshot.
#[utoipa::path(get, path = "/admin/api/campaigns/{id}/preview", tag = "campaigns", operation_id = "preview_campaign",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PreviewDoc), (status = 401, body = CampaignErrorDoc),
              (status = 404, body = CampaignErrorDoc)),
    security(("admin_token" = [])))]
pub fn preview() {}

/// draft → running (or scheduled when its start time is ahead).
#[utoipa::path(post, path = "/admin/api/campaigns/{id}/start", tag = "campaigns", operation_id = "start_campaign",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = StateAnswerDoc), (status = 401, body = CampaignErrorDoc),
              (status = 403, body = CampaignErrorDoc), (status = 404, body = CampaignErrorDoc),
              (status = 409, description = "Not a draft", body = CampaignErrorDoc)),
    security(("admin_token" = [])))]
pub fn start() {}

/// scheduled / running → paused.
#[utoipa::path(post, path = "/admin/api/campaigns/{id}/pause", tag = "campaigns", operation_id = "pause_campaign",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = StateAnswerDoc), (status = 401, body = CampaignErrorDoc),
              (status = 403, body = CampaignErrorDoc), (status = 404, body = CampaignErrorDoc),
              (status = 409, description = "Not scheduled or running", body = CampaignErrorDoc)),
    security(("admin_token" = [])))]
pub fn pause() {}

/// paused → running (or scheduled).
#[utoipa::path(post, path = "/admin/api/campaigns/{id}/resume", tag = "campaigns", operation_id = "resume_campaign",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = StateAnswerDoc), (status = 401, body = CampaignErrorDoc),
              (status = 403, body = CampaignErrorDoc), (status = 404, body = CampaignErrorDoc),
              (status = 409, description = "Not paused", body = CampaignErrorDoc)),
    security(("admin_token" = [])))]
pub fn resume() {}

/// Anything not final → cancelled (jobs still on the lane are recorded cancelled, not sent).
#[utoipa::path(post, path = "/admin/api/campaigns/{id}/cancel", tag = "campaigns", operation_id = "cancel_campaign",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = StateAnswerDoc), (status = 401, body = CampaignErrorDoc),
              (status = 403, body = CampaignErrorDoc), (status = 404, body = CampaignErrorDoc),
              (status = 409, description = "Already completed or cancelled", body = CampaignErrorDoc)),
    security(("admin_token" = [])))]
pub fn cancel() {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;
    use utoipa::OpenApi;

    fn properties(doc: &Value, schema: &str) -> BTreeSet<String> {
        doc.pointer(&format!("/components/schemas/{schema}/properties"))
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("{schema} has properties"))
            .keys()
            .cloned()
            .collect()
    }

    fn keys(v: &impl serde::Serialize) -> BTreeSet<String> {
        serde_json::to_value(v)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn the_openapi_campaign_schemas_name_the_fields_the_real_types_serialise() {
        use wxnotify_services::campaigns::CampaignState;
        use wxnotify_services::campaigns::progress::{Receipts, Status};
        let doc = serde_json::to_value(crate::admin::campaigns_openapi::CampaignsApiDoc::openapi())
            .unwrap();
        let status = Status {
            id: uuid::Uuid::nil(),
            name: Some("December sale".into()),
            app: "default".into(),
            state: CampaignState::Running,
            waiting: Some(wxnotify_services::campaigns::Waiting {
                reason: wxnotify_services::campaigns::WaitReason::WindowClosed,
                until: None,
                message: "outside its send window".into(),
            }),
            audience: 1,
            reachable: 1,
            unreachable: serde_json::json!({}),
            by_channel: Default::default(),
            sent_by_channel: Default::default(),
            dispatched: 0,
            sent: 0,
            duplicate: 0,
            held: 0,
            duplicate_jobs: 0,
            dead: Default::default(),
            cancelled: 0,
            in_flight: 0,
            not_dispatched: 1,
            receipts: Receipts::default(),
            send_rate: Some(0.0),
            eta_s: None,
        };
        assert_eq!(properties(&doc, "CampaignStatus"), keys(&status));
        assert_eq!(
            properties(&doc, "CampaignChannels"),
            keys(&status.by_channel)
        );
        assert_eq!(
            properties(&doc, "CampaignReceipts"),
            keys(&Receipts::default())
        );
        assert_eq!(
            properties(&doc, "CampaignWaiting"),
            keys(status.waiting.as_ref().unwrap())
        );
        for path in [
            "/admin/api/campaigns",
            "/admin/api/campaigns/{id}",
            "/admin/api/campaigns/{id}/preview",
            "/admin/api/campaigns/{id}/start",
            "/admin/api/campaigns/{id}/pause",
            "/admin/api/campaigns/{id}/resume",
            "/admin/api/campaigns/{id}/cancel",
        ] {
            assert!(
                doc.pointer(&format!("/paths/{}", path.replace('/', "~1")))
                    .is_some(),
                "{path} missing"
            );
        }
    }
}
