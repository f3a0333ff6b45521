//! A campaign's figures before it starts, and pacing from its textual parts: shared by the
//! `campaign` command and the HTTP campaign API.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::CampaignError;
use super::model::{Pacing, SendWindow};
use super::store;

/// `campaign preview --json`: the snapshot's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// The campaign.
    pub id: Uuid,
    /// Its state.
    pub state: super::CampaignState,
    /// Distinct recipients.
    pub audience: u64,
    /// Reachable.
    pub reachable: u64,
    /// Unreachable by reason.
    pub unreachable: std::collections::BTreeMap<String, u64>,
}

/// The snapshot's figures of campaign `id`.
pub async fn preview(pool: &PgPool, id: Uuid) -> Result<Preview, CampaignError> {
    let c = store::get(pool, id).await?;
    Ok(Preview {
        id,
        state: c.state,
        audience: c.audience as u64,
        reachable: c.reachable as u64,
        unreachable: serde_json::from_value(c.unreachable).unwrap_or_default(),
    })
}

/// Pacing from its textual parts (CLI flags and HTTP fields).
pub fn pacing_from(
    rate: u32,
    window: Option<&str>,
    time_zone: &str,
    start_at: Option<DateTime<Utc>>,
    daily_cap: Option<u64>,
) -> Result<Pacing, CampaignError> {
    Ok(Pacing {
        rate_per_second: rate,
        window: window
            .map(SendWindow::parse)
            .transpose()
            .map_err(CampaignError::Invalid)?,
        time_zone: time_zone.parse().map_err(|_| {
            CampaignError::Invalid(format!(
                "unknown time zone {time_zone:?} (use an IANA name such as Asia/Shanghai)"
            ))
        })?,
        start_at,
        daily_cap: match daily_cap {
            Some(0) => {
                return Err(CampaignError::Invalid(
                    "the daily cap must be positive".into(),
                ));
            }
            other => other,
        },
    })
}
