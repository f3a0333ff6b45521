//! A campaign's progress, read from the ledger: one indexed aggregate over the campaign's
//! `deliveries` rows (`deliveries_campaign`), joined to the campaign row. No counter is kept
//! that could drift from what happened.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use chrono::{DateTime, NaiveDate, Utc};

use super::CampaignError;
use super::model::{CampaignState, Channels};
use super::store::{self, Campaign};
use super::waiting::{self, AppHold, Waiting};

/// How long a window the send rate is measured over, in seconds.
const RATE_WINDOW_S: i64 = 10;

/// Delivery receipts (TEMPLATESENDJOBFINISH) of the campaign's sends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Receipts {
    /// `success`.
    pub success: u64,
    /// `failed:user block` (the person blocked the account's messages).
    pub user_block: u64,
    /// `failed: system failed`.
    pub system_failed: u64,
    /// Any other status text.
    pub other: u64,
}

/// The kinds of receipt status WeChat reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    /// Delivered.
    Success,
    /// Blocked by the person.
    UserBlock,
    /// WeChat failed.
    SystemFailed,
    /// Unknown text.
    Other,
}

/// Classifies a receipt status: WeChat writes both `failed:user block` and `failed: user block`
/// (and the same for `system failed`); case and spaces do not matter.
pub fn receipt_kind(status: &str) -> ReceiptKind {
    let norm: String = status
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    match norm.as_str() {
        "success" => ReceiptKind::Success,
        "failed:userblock" => ReceiptKind::UserBlock,
        "failed:systemfailed" => ReceiptKind::SystemFailed,
        _ => ReceiptKind::Other,
    }
}

/// `campaign status --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The campaign.
    pub id: Uuid,
    /// Its name, for people (none when it was given none).
    pub name: Option<String>,
    /// Its app.
    pub app: String,
    /// Its state.
    pub state: CampaignState,
    /// Why a running, scheduled or paused campaign sends nothing now and when it goes on;
    /// none while it may send and once it is finished.
    pub waiting: Option<Waiting>,
    /// Distinct recipients in the snapshot.
    pub audience: u64,
    /// Of them, reachable.
    pub reachable: u64,
    /// Unreachable by reason (from the snapshot).
    pub unreachable: serde_json::Value,
    /// The audience by the channel that reaches it (from the snapshot).
    pub by_channel: Channels,
    /// Sent, by the channel that sent them (`oa_template`, `mp_subscribe`).
    pub sent_by_channel: BTreeMap<String, u64>,
    /// Reachable recipients published to the bulk lane.
    pub dispatched: u64,
    /// Accepted by WeChat.
    pub sent: u64,
    /// Not sent again: repeated arrivals of a job id already finished, and jobs WeChat answered
    /// 40241 (an identical message went out within 60 seconds).
    pub duplicate: u64,
    /// Held by WeChat for its content review (40252): never sent again; each ends sent
    /// (delivered after review) or dead `content_blocked`.
    pub held: u64,
    /// Jobs recorded `duplicate` (40241), counted in `duplicate` and among the finished.
    #[serde(skip)]
    pub duplicate_jobs: u64,
    /// Dead, by reason.
    pub dead: BTreeMap<String, u64>,
    /// Recorded `cancelled` (on the lane when the campaign was cancelled; not sent).
    pub cancelled: u64,
    /// Dispatched but not finished yet (on the lane, retrying, or being sent).
    pub in_flight: u64,
    /// Reachable recipients never dispatched (a cancelled campaign keeps them here).
    pub not_dispatched: u64,
    /// Delivery receipts.
    pub receipts: Receipts,
    /// Sends per second over the last ten seconds; none once the campaign is completed or
    /// cancelled.
    pub send_rate: Option<f64>,
    /// Seconds until every reachable recipient is finished at the campaign's pace (its rate):
    /// what is left divided by the rate. None while it waits, and when it is not sending (a
    /// draft, a finished campaign); 0 once nothing is left.
    pub eta_s: Option<u64>,
}

impl Status {
    /// Recipients in a final state (sent, dead, cancelled, held for review, duplicate).
    pub fn finished(&self) -> u64 {
        self.sent
            + self.dead.values().sum::<u64>()
            + self.cancelled
            + self.held
            + self.duplicate_jobs
    }

    /// The campaign's label for people: its name and short id, or its id alone.
    pub fn label(&self) -> String {
        label(self.id, self.name.as_deref())
    }

    /// What it is doing, for a line: the rate and ETA while sending, why and until when while
    /// waiting, nothing once finished.
    pub fn pace_text(&self) -> String {
        if let Some(w) = &self.waiting {
            return format!("waiting ({}): {}", w.reason.as_str(), w.message);
        }
        let mut s = self
            .send_rate
            .map(|r| format!("{r:.0}/s"))
            .unwrap_or_default();
        if let Some(e) = self.eta_s.filter(|_| !self.state.is_final()) {
            s.push_str(&format!(", ETA {e} s"));
        }
        s
    }

    /// One human line.
    pub fn line(&self) -> String {
        let dead: u64 = self.dead.values().sum();
        let pace = self.pace_text();
        format!(
            "campaign {} {}: {} reachable of {} ({} followers, {} grant holders), {} dispatched, {} sent, {} dead, {} cancelled, {} duplicate, {} held for review; receipts {} ok / {} user block / {} system failed{}",
            self.label(),
            self.state,
            self.reachable,
            self.audience,
            self.by_channel.followers,
            self.by_channel.grant_holders,
            self.dispatched,
            self.sent,
            dead,
            self.cancelled,
            self.duplicate,
            self.held,
            self.receipts.success,
            self.receipts.user_block,
            self.receipts.system_failed,
            if pace.is_empty() {
                String::new()
            } else {
                format!("; {pace}")
            }
        )
    }
}

/// A campaign's label for people: `name (0193abcd)`, or its id when it has no name.
pub fn label(id: Uuid, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{n} ({})", &id.simple().to_string()[..8]),
        None => id.to_string(),
    }
}

#[derive(sqlx::FromRow)]
struct Group {
    state: String,
    dead_reason: Option<String>,
    receipt_status: Option<String>,
    channel: Option<String>,
    n: i64,
    duplicates: i64,
    recent: i64,
}

/// The status of campaign `id`.
pub async fn status(pool: &PgPool, id: Uuid) -> Result<Status, CampaignError> {
    let campaign = store::get(pool, id).await?;
    let groups: Vec<Group> = sqlx::query_as(
        "SELECT d.state, d.dead_reason, d.receipt_status, d.channel, count(*) AS n,
                COALESCE(sum(d.duplicates), 0)::bigint AS duplicates,
                count(*) FILTER (WHERE d.state = 'sent' AND d.sent_at > now() - make_interval(secs => $2)) AS recent
         FROM campaigns c JOIN deliveries d ON d.campaign_id = c.id
         WHERE c.id = $1
         GROUP BY d.state, d.dead_reason, d.receipt_status, d.channel",
    )
    .bind(id)
    .bind(RATE_WINDOW_S as f64)
    .fetch_all(pool)
    .await?;
    let pace: PaceRow = sqlx::query_as(
        "SELECT c.cap_day, c.cap_day_dispatched, a.paused_until, a.pause_cause,
                a.suspended_at IS NOT NULL AS suspended
         FROM campaigns c LEFT JOIN apps a ON a.name = c.app WHERE c.id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    Ok(summarise(&campaign, &groups, &pace, Utc::now()))
}

/// What the waiting decision reads besides the campaign row's public fields.
#[derive(sqlx::FromRow)]
struct PaceRow {
    cap_day: Option<NaiveDate>,
    cap_day_dispatched: i64,
    paused_until: Option<DateTime<Utc>>,
    pause_cause: Option<String>,
    suspended: Option<bool>,
}

impl PaceRow {
    fn app_hold(&self, now: DateTime<Utc>) -> AppHold {
        if self.suspended == Some(true) {
            return AppHold::Other(None);
        }
        match self.paused_until.filter(|t| *t > now) {
            None => AppHold::None,
            Some(t) if self.pause_cause.as_deref() == Some("quota") => AppHold::Quota(Some(t)),
            Some(t) => AppHold::Other(Some(t)),
        }
    }
}

fn summarise(c: &Campaign, groups: &[Group], pace: &PaceRow, now: DateTime<Utc>) -> Status {
    let mut s = Status {
        id: c.id,
        name: c.name.clone(),
        app: c.app.clone(),
        state: c.state,
        waiting: None,
        audience: c.audience as u64,
        reachable: c.reachable as u64,
        unreachable: c.unreachable.clone(),
        by_channel: c.by_channel(),
        sent_by_channel: BTreeMap::new(),
        dispatched: c.dispatched as u64,
        sent: 0,
        duplicate: 0,
        held: 0,
        duplicate_jobs: 0,
        dead: BTreeMap::new(),
        cancelled: 0,
        in_flight: 0,
        not_dispatched: (c.reachable - c.dispatched).max(0) as u64,
        receipts: Receipts::default(),
        send_rate: None,
        eta_s: None,
    };
    let mut recent = 0u64;
    let mut rows = 0u64;
    for g in groups {
        let n = g.n as u64;
        rows += n;
        s.duplicate += g.duplicates as u64;
        recent += g.recent as u64;
        match g.state.as_str() {
            "sent" => {
                s.sent += n;
                if let Some(ch) = &g.channel {
                    *s.sent_by_channel.entry(ch.clone()).or_default() += n;
                }
                if let Some(r) = &g.receipt_status {
                    let slot = match receipt_kind(r) {
                        ReceiptKind::Success => &mut s.receipts.success,
                        ReceiptKind::UserBlock => &mut s.receipts.user_block,
                        ReceiptKind::SystemFailed => &mut s.receipts.system_failed,
                        ReceiptKind::Other => &mut s.receipts.other,
                    };
                    *slot += n;
                }
            }
            "dead" => {
                *s.dead
                    .entry(g.dead_reason.clone().unwrap_or_default())
                    .or_default() += n;
            }
            "cancelled" => s.cancelled += n,
            "held" => s.held += n,
            "duplicate" => {
                s.duplicate += n;
                s.duplicate_jobs += n;
            }
            _ => {}
        }
    }
    // Dispatched jobs without a ledger row yet are waiting on the lane.
    s.in_flight = s.dispatched.saturating_sub(s.finished());
    let _ = rows;
    let pacing = c.pacing();
    s.waiting = waiting::waiting(
        &waiting::Inputs {
            state: c.state,
            pacing: &pacing,
            cap_day: pace.cap_day,
            cap_day_dispatched: pace.cap_day_dispatched.max(0) as u64,
            not_dispatched: s.not_dispatched,
            app: pace.app_hold(now),
        },
        now,
    );
    if !c.state.is_final() {
        s.send_rate = Some(recent as f64 / RATE_WINDOW_S as f64);
    }
    s.eta_s = eta(
        c.state,
        s.waiting.is_some(),
        left(&s),
        pacing.rate_per_second,
    );
    s
}

/// Reachable recipients not finished yet.
fn left(s: &Status) -> u64 {
    s.reachable.saturating_sub(s.finished())
}

/// Seconds until done at the campaign's pace: what is left over its rate. None while it waits
/// or is not sending; 0 once nothing is left.
fn eta(state: CampaignState, waits: bool, left: u64, rate_per_second: u32) -> Option<u64> {
    match state {
        CampaignState::Running if left == 0 => Some(0),
        CampaignState::Running if !waits => Some(left.div_ceil(u64::from(rate_per_second.max(1)))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_is_what_is_left_at_the_pace_and_none_while_waiting() {
        assert_eq!(eta(CampaignState::Running, false, 470, 10), Some(47));
        assert_eq!(eta(CampaignState::Running, false, 471, 10), Some(48));
        assert_eq!(eta(CampaignState::Running, true, 470, 10), None);
        assert_eq!(eta(CampaignState::Paused, true, 470, 10), None);
        assert_eq!(eta(CampaignState::Cancelled, false, 470, 10), None);
        assert_eq!(eta(CampaignState::Running, false, 0, 10), Some(0));
    }

    #[test]
    fn receipts_are_read_with_or_without_the_space() {
        assert_eq!(receipt_kind("success"), ReceiptKind::Success);
        assert_eq!(receipt_kind("failed:user block"), ReceiptKind::UserBlock);
        assert_eq!(receipt_kind("failed: user block"), ReceiptKind::UserBlock);
        assert_eq!(
            receipt_kind("failed: system failed"),
            ReceiptKind::SystemFailed
        );
        assert_eq!(
            receipt_kind("failed:system failed"),
            ReceiptKind::SystemFailed
        );
        assert_eq!(receipt_kind("whatever"), ReceiptKind::Other);
    }
}
