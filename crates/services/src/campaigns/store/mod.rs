//! Campaigns in Postgres: creation with its snapshot, reading and listing; state changes (each
//! recorded with who and when) are in `state.rs`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use url::Url;
use uuid::Uuid;

mod state;

pub(super) use self::state::change_state;
pub use self::state::{StateChange, apply, history};
use super::CampaignError;
use super::audience::{BadLines, Item};
use super::model::{CampaignState, Channels, Pacing, SendWindow, Unreachable};
use super::rows::RowCheck;
use super::snapshot::{self, Snapshot};
use wxnotify_core::domain::job::{JobError, check_pagepath, check_url};
use wxnotify_core::domain::{AppName, MiniProgramLink, MpSubscribe, TemplateData, TemplateId};

/// Everything a new campaign needs besides its audience.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    /// Which app sends it.
    pub app: AppName,
    /// The OA template.
    pub template_id: TemplateId,
    /// Template fields shared by every recipient (a recipient's own fields override them).
    pub data: TemplateData,
    /// Optional web page opened on tap.
    pub url: Option<Url>,
    /// Optional Mini Program page opened on tap.
    pub miniprogram: Option<MiniProgramLink>,
    /// Not sent after this instant.
    pub not_after: Option<DateTime<Utc>>,
    /// Rate, window, start time, daily cap.
    pub pacing: Pacing,
    /// Who creates it (shown in its history).
    pub created_by: String,
    /// Its name, for people (1 to [`MAX_NAME_CHARS`] characters); the id stays the key.
    pub name: Option<String>,
    /// Shorten values too long for their key type instead of refusing them (as a job's
    /// `truncate`).
    pub truncate: bool,
    /// The Mini Program subscribe message every job also carries (the job's `mp_subscribe`):
    /// recipients who do not follow the OA but hold a grant for its template get it instead.
    pub mp_subscribe: Option<MpSubscribe>,
}

/// The longest campaign name, in characters.
pub const MAX_NAME_CHARS: usize = 120;

/// Who receives a campaign.
pub enum AudienceSource {
    /// Every subscribed follower of the app's OA, as synced.
    Followers,
    /// Recipients from a file (see `audience`).
    File(Box<dyn Iterator<Item = Item> + Send>),
    /// Recipients from an explicit list (see `audience::list_items`).
    List(Box<dyn Iterator<Item = Item> + Send>),
}

/// How many of each unreachable reason.
pub type UnreachableCounts = BTreeMap<&'static str, u64>;

/// What `create` (and `preview`) report: the `--json` shape of `campaign create`.
#[derive(Debug, Clone, Serialize)]
pub struct CreateReport {
    /// The campaign.
    pub id: Uuid,
    /// Its name.
    pub name: Option<String>,
    /// Its state (`draft`).
    pub state: CampaignState,
    /// Distinct recipients in the snapshot.
    pub audience: u64,
    /// Of them, reachable.
    pub reachable: u64,
    /// Unreachable, by reason.
    pub unreachable: UnreachableCounts,
    /// The audience by the channel that reaches it.
    pub by_channel: Channels,
    /// Repeated recipients kept once.
    pub repeats: u64,
    /// Lines skipped as bad (unreadable, or data that breaks the template), with the first
    /// ones' line numbers and reasons.
    pub bad_lines: BadLines,
}

/// A stored campaign.
#[derive(Debug, Clone, Serialize)]
pub struct Campaign {
    /// Its id.
    pub id: Uuid,
    /// Its name, for people.
    pub name: Option<String>,
    /// The app.
    pub app: String,
    /// The template.
    pub template_id: String,
    /// Shared template data.
    pub data: Value,
    /// Web page link.
    pub url: Option<String>,
    /// Mini Program link.
    pub miniprogram: Option<Value>,
    /// The Mini Program subscribe message its jobs carry (`mp_subscribe`).
    pub mp_subscribe: Option<Value>,
    /// Not sent after.
    pub not_after: Option<DateTime<Utc>>,
    /// `followers`, `file` or `list`.
    pub audience_kind: String,
    /// Whether its jobs shorten values too long for their key type.
    pub truncate: bool,
    /// Its state.
    pub state: CampaignState,
    /// Sends per second at most.
    pub rate_per_second: u32,
    /// The send window, `HH:MM-HH:MM`.
    pub window: Option<String>,
    /// The time zone of the window and the daily cap.
    pub time_zone: String,
    /// Not before.
    pub start_at: Option<DateTime<Utc>>,
    /// At most this many a day.
    pub daily_cap: Option<i64>,
    /// Distinct recipients in the snapshot.
    pub audience: i64,
    /// Of them, reachable.
    pub reachable: i64,
    /// Unreachable, by reason.
    pub unreachable: Value,
    /// Of the reachable, those reached by a grant (the subscribe message).
    pub grant_holders: i64,
    /// Reachable recipients dispatched so far (the dispatcher's cursor).
    pub dispatched: i64,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    name: Option<String>,
    truncate: bool,
    app: String,
    template_id: String,
    data: Value,
    url: Option<String>,
    miniprogram: Option<Value>,
    mp_subscribe: Option<Value>,
    not_after: Option<DateTime<Utc>>,
    audience_kind: String,
    state: String,
    rate_per_second: i32,
    window_start: Option<NaiveTime>,
    window_end: Option<NaiveTime>,
    time_zone: String,
    start_at: Option<DateTime<Utc>>,
    daily_cap: Option<i64>,
    audience: i64,
    reachable: i64,
    unreachable: Value,
    grant_holders: i64,
    cursor: i64,
    created_by: String,
    created_at: DateTime<Utc>,
}

impl From<Row> for Campaign {
    fn from(r: Row) -> Self {
        let window = match (r.window_start, r.window_end) {
            (Some(start), Some(end)) => Some(SendWindow { start, end }.to_string()),
            _ => None,
        };
        Campaign {
            id: r.id,
            name: r.name,
            truncate: r.truncate,
            app: r.app,
            template_id: r.template_id,
            data: r.data,
            url: r.url,
            miniprogram: r.miniprogram,
            mp_subscribe: r.mp_subscribe,
            not_after: r.not_after,
            audience_kind: r.audience_kind,
            state: CampaignState::parse(&r.state).unwrap_or(CampaignState::Draft),
            rate_per_second: r.rate_per_second.max(1) as u32,
            window,
            time_zone: r.time_zone,
            start_at: r.start_at,
            daily_cap: r.daily_cap,
            audience: r.audience,
            reachable: r.reachable,
            unreachable: r.unreachable,
            grant_holders: r.grant_holders,
            dispatched: r.cursor,
            created_by: r.created_by,
            created_at: r.created_at,
        }
    }
}

impl Campaign {
    /// The audience by the channel that reaches it.
    pub fn by_channel(&self) -> Channels {
        Channels::of(self.audience, self.reachable, self.grant_holders)
    }

    /// Its subscribe message as typed (none when it has none or it no longer reads).
    pub fn mp_subscribe(&self) -> Option<MpSubscribe> {
        self.mp_subscribe
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
    }

    /// The pacing as typed values.
    pub fn pacing(&self) -> Pacing {
        Pacing {
            rate_per_second: self.rate_per_second,
            window: self
                .window
                .as_deref()
                .and_then(|w| SendWindow::parse(w).ok()),
            time_zone: self.time_zone.parse().unwrap_or(chrono_tz::UTC),
            start_at: self.start_at,
            daily_cap: self.daily_cap.map(|c| c.max(0) as u64),
        }
    }
}

const COLUMNS: &str =
    "id, name, truncate, app, template_id, data, url, miniprogram, mp_subscribe, not_after,
    audience_kind, state, rate_per_second, window_start, window_end, time_zone, start_at, daily_cap,
    audience, reachable, unreachable, grant_holders, cursor, created_by, created_at";

/// The template check before anything is written: the template exists in the app's catalog,
/// the shared data's keys are placeholders of it, and each value keeps its key type's rules.
/// Missing keys are not refused here, since per-recipient data may fill them; the worker checks
/// every job again before its send.
pub async fn check_template(
    pool: &PgPool,
    app: &AppName,
    template_id: &TemplateId,
    data: &TemplateData,
    truncate: bool,
) -> Result<(), CampaignError> {
    use crate::templates::{Catalog, Problem, check_message};
    let catalog = Catalog::load_app(pool, app).await?;
    let Err(mut refusal) = check_message(&catalog, app, template_id, data, truncate) else {
        return Ok(());
    };
    refusal
        .problems
        .retain(|p| !matches!(p, Problem::MissingKeys { .. }));
    if refusal.problems.is_empty() {
        return Ok(());
    }
    Err(CampaignError::Invalid(refusal.to_string()))
}

/// The subscribe template check before anything is written: the form's data against the Mini
/// Program's subscribe template when the synced catalog holds it (one it never listed is left to
/// WeChat). Every job carries the same data, so missing keys are refused too.
pub async fn check_subscribe_form(
    pool: &PgPool,
    app: &AppName,
    form: &MpSubscribe,
    truncate: bool,
) -> Result<(), CampaignError> {
    use crate::templates::{SubscribeCatalog, check_subscribe};
    let catalog = SubscribeCatalog::load(pool, app).await?;
    check_subscribe(&catalog, app, &form.template_id, &form.data, truncate)
        .map(|_| ())
        .map_err(|refusal| CampaignError::Invalid(format!("mp_subscribe: {refusal}")))
}

/// Checks what a new campaign's types cannot express, with the producer API's own rules for
/// the link (`url` http or https only: a `javascript:` link would kill every job), and its
/// rate against the app's.
fn check_new(new: &NewCampaign, app_rate: u32) -> Result<(), CampaignError> {
    let invalid = |field: &str, e: JobError| CampaignError::Invalid(format!("{field}: {e}"));
    if let Some(name) = &new.name {
        let chars = name.chars().count();
        if name.trim().is_empty() || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(CampaignError::Invalid(format!(
                "name: give 1 to {MAX_NAME_CHARS} characters without line breaks ({chars} given)"
            )));
        }
    }
    wxnotify_core::bounds::in_range("rate", new.pacing.rate_per_second, 1..=app_rate.max(1))
        .map_err(|e| CampaignError::Invalid(format!("{e} (the app's rate)")))?;
    if let Some(url) = &new.url {
        check_url(url).map_err(|e| invalid("url", e))?;
    }
    if let Some(mp) = &new.miniprogram {
        check_pagepath(&mp.pagepath).map_err(|e| invalid("miniprogram.pagepath", e))?;
    }
    if let Some(page) = new.mp_subscribe.as_ref().and_then(|m| m.page.as_deref()) {
        check_pagepath(page).map_err(|e| invalid("mp_subscribe.page", e))?;
    }
    Ok(())
}

/// Creates a campaign in `draft` with its audience snapshot, in one transaction. `app_rate` is
/// the app's configured rate: a campaign may not be faster.
pub async fn create(
    pool: &PgPool,
    new: &NewCampaign,
    app_rate: u32,
    audience: AudienceSource,
) -> Result<CreateReport, CampaignError> {
    check_new(new, app_rate)?;
    check_template(pool, &new.app, &new.template_id, &new.data, new.truncate).await?;
    if let Some(form) = &new.mp_subscribe {
        check_subscribe_form(pool, &new.app, form, new.truncate).await?;
    }
    let shared = serde_json::to_value(&new.data).unwrap_or(Value::Null);
    let rows = RowCheck::load(pool, &new.app, &new.template_id, &shared, new.truncate).await?;
    let id = Uuid::now_v7();
    let mut tx = pool.begin().await?;
    let kind = match &audience {
        AudienceSource::Followers => "followers",
        AudienceSource::File(_) => "file",
        AudienceSource::List(_) => "list",
    };
    sqlx::query(
        "INSERT INTO campaigns (id, app, template_id, data, url, miniprogram, not_after, audience_kind,
             rate_per_second, window_start, window_end, time_zone, start_at, daily_cap,
             audience, reachable, created_by, name, truncate, mp_subscribe)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 0, 0, $15, $16, $17,
                 $18)",
    )
    .bind(id)
    .bind(new.app.as_str())
    .bind(new.template_id.as_str())
    .bind(serde_json::to_value(&new.data).unwrap_or(Value::Null))
    .bind(new.url.as_ref().map(Url::as_str))
    .bind(
        new.miniprogram
            .as_ref()
            .and_then(|m| serde_json::to_value(m).ok()),
    )
    .bind(new.not_after)
    .bind(kind)
    .bind(new.pacing.rate_per_second as i32)
    .bind(new.pacing.window.map(|w| w.start))
    .bind(new.pacing.window.map(|w| w.end))
    .bind(new.pacing.time_zone.name())
    .bind(new.pacing.start_at)
    .bind(new.pacing.daily_cap.map(|c| c as i64))
    .bind(&new.created_by)
    .bind(new.name.as_deref().map(str::trim))
    .bind(new.truncate)
    .bind(
        new.mp_subscribe
            .as_ref()
            .and_then(|m| serde_json::to_value(m).ok()),
    )
    .execute(&mut *tx)
    .await?;
    let mp_template = new.mp_subscribe.as_ref().map(|m| m.template_id.as_str());
    let mut snap: Snapshot = match audience {
        AudienceSource::Followers => {
            snapshot::followers(&mut tx, id, &new.app, mp_template).await?
        }
        AudienceSource::File(items) | AudienceSource::List(items) => {
            snapshot::recipients(&mut tx, id, &new.app, mp_template, rows.items(items)).await?
        }
    };
    let mut unreachable: UnreachableCounts =
        Unreachable::ALL.iter().map(|u| (u.as_str(), 0)).collect();
    let (mut reachable, mut grant_holders) = (0u64, 0u64);
    for kept in std::mem::take(&mut snap.kept) {
        let n = kept.count as u64;
        match kept.unreachable {
            None => {
                reachable += n;
                if kept.by_grant {
                    grant_holders += n;
                }
            }
            Some(r) => {
                if let Some(u) = Unreachable::ALL.iter().find(|u| u.as_str() == r) {
                    *unreachable.entry(u.as_str()).or_default() += n;
                }
            }
        }
    }
    let audience_n = reachable + unreachable.values().sum::<u64>();
    sqlx::query(
        "UPDATE campaigns SET audience = $2, reachable = $3, unreachable = $4, grant_holders = $5
         WHERE id = $1",
    )
    .bind(id)
    .bind(audience_n as i64)
    .bind(reachable as i64)
    .bind(serde_json::to_value(&unreachable).unwrap_or_default())
    .bind(grant_holders as i64)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO campaign_state_changes (campaign_id, from_state, to_state, actor) VALUES ($1, NULL, 'draft', $2)",
    )
    .bind(id)
    .bind(&new.created_by)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(CreateReport {
        id,
        name: new.name.as_deref().map(|n| n.trim().to_owned()),
        state: CampaignState::Draft,
        audience: audience_n,
        reachable,
        unreachable,
        by_channel: Channels::of(audience_n as i64, reachable as i64, grant_holders as i64),
        repeats: snap.repeats,
        bad_lines: snap.bad_lines,
    })
}

/// The campaign `id`.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Campaign, CampaignError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM campaigns WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(Campaign::from).ok_or(CampaignError::NotFound(id))
}

/// The newest campaigns first (at most `limit`).
pub async fn list(pool: &PgPool, limit: i64) -> Result<Vec<Campaign>, CampaignError> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM campaigns ORDER BY created_at DESC LIMIT $1"
    )))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Campaign::from).collect())
}
