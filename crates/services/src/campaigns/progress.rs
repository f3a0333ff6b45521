//! A campaign's progress, read from the ledger: one indexed aggregate over the campaign's
//! `deliveries` rows (`deliveries_campaign`), joined to the campaign row. No counter is kept
//! that could drift from what happened.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::CampaignError;
use super::model::CampaignState;
use super::store::{self, Campaign};

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
    /// Its app.
    pub app: String,
    /// Its state.
    pub state: CampaignState,
    /// Distinct recipients in the snapshot.
    pub audience: u64,
    /// Of them, reachable.
    pub reachable: u64,
    /// Unreachable by reason (from the snapshot).
    pub unreachable: serde_json::Value,
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
    /// Sends per second over the last ten seconds.
    pub send_rate: f64,
    /// Seconds until every reachable recipient is finished at the current rate (none when
    /// nothing is being sent).
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

    /// One human line.
    pub fn line(&self) -> String {
        let dead: u64 = self.dead.values().sum();
        let eta = self
            .eta_s
            .map(|s| format!(", ETA {s} s"))
            .unwrap_or_default();
        format!(
            "campaign {} {}: {} reachable of {}, {} dispatched, {} sent, {} dead, {} cancelled, {} duplicate, {} held for review; receipts {} ok / {} user block / {} system failed; {:.0}/s{}",
            self.id,
            self.state,
            self.reachable,
            self.audience,
            self.dispatched,
            self.sent,
            dead,
            self.cancelled,
            self.duplicate,
            self.held,
            self.receipts.success,
            self.receipts.user_block,
            self.receipts.system_failed,
            self.send_rate,
            eta
        )
    }
}

#[derive(sqlx::FromRow)]
struct Group {
    state: String,
    dead_reason: Option<String>,
    receipt_status: Option<String>,
    n: i64,
    duplicates: i64,
    recent: i64,
}

/// The status of campaign `id`.
pub async fn status(pool: &PgPool, id: Uuid) -> Result<Status, CampaignError> {
    let campaign = store::get(pool, id).await?;
    let groups: Vec<Group> = sqlx::query_as(
        "SELECT d.state, d.dead_reason, d.receipt_status, count(*) AS n,
                COALESCE(sum(d.duplicates), 0)::bigint AS duplicates,
                count(*) FILTER (WHERE d.state = 'sent' AND d.sent_at > now() - make_interval(secs => $2)) AS recent
         FROM campaigns c JOIN deliveries d ON d.campaign_id = c.id
         WHERE c.id = $1
         GROUP BY d.state, d.dead_reason, d.receipt_status",
    )
    .bind(id)
    .bind(RATE_WINDOW_S as f64)
    .fetch_all(pool)
    .await?;
    Ok(summarise(&campaign, &groups))
}

fn summarise(c: &Campaign, groups: &[Group]) -> Status {
    let mut s = Status {
        id: c.id,
        app: c.app.clone(),
        state: c.state,
        audience: c.audience as u64,
        reachable: c.reachable as u64,
        unreachable: c.unreachable.clone(),
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
        send_rate: 0.0,
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
    s.send_rate = recent as f64 / RATE_WINDOW_S as f64;
    let left = s.reachable.saturating_sub(s.finished());
    if s.state == CampaignState::Running && s.send_rate > 0.0 && left > 0 {
        s.eta_s = Some((left as f64 / s.send_rate).ceil() as u64);
    } else if left == 0 {
        s.eta_s = Some(0);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

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
