//! A campaign's state changes: an operator's action checked against the state it applies to,
//! each change written with its history row (who and when).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::campaigns::CampaignError;
use crate::campaigns::model::{Action, CampaignState};

/// Applies an operator's action: the state changes only from the states the action applies
/// to, and the change is recorded with `actor` and the time. Returns the new state.
pub async fn apply(
    pool: &PgPool,
    id: Uuid,
    action: Action,
    actor: &str,
) -> Result<CampaignState, CampaignError> {
    let mut tx = pool.begin().await?;
    let row: Option<(String, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT state, start_at FROM campaigns WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let (state, start_at) = row.ok_or(CampaignError::NotFound(id))?;
    let from = CampaignState::parse(&state).unwrap_or(CampaignState::Draft);
    if !action.from_states().contains(&from) {
        return Err(CampaignError::Transition {
            id,
            state: from,
            action: action.as_str(),
        });
    }
    let to = action.to_state(start_at.is_some_and(|s| s > Utc::now()));
    change_state(&mut tx, id, from, to, actor).await?;
    tx.commit().await?;
    Ok(to)
}

/// Writes a state change and its history row.
pub(in crate::campaigns) async fn change_state(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    from: CampaignState,
    to: CampaignState,
    actor: &str,
) -> Result<bool, sqlx::Error> {
    let changed = sqlx::query(
        "UPDATE campaigns SET state = $3, updated_at = now() WHERE id = $1 AND state = $2",
    )
    .bind(id)
    .bind(from.as_str())
    .bind(to.as_str())
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if changed {
        sqlx::query(
            "INSERT INTO campaign_state_changes (campaign_id, from_state, to_state, actor) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(actor)
        .execute(&mut *conn)
        .await?;
    }
    Ok(changed)
}

/// One state change of a campaign's history.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StateChange {
    /// From (none at creation).
    pub from_state: Option<String>,
    /// To.
    pub to_state: String,
    /// Who.
    pub actor: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A campaign's state changes, oldest first.
pub async fn history(pool: &PgPool, id: Uuid) -> Result<Vec<StateChange>, CampaignError> {
    Ok(sqlx::query_as(
        "SELECT from_state, to_state, actor, at FROM campaign_state_changes WHERE campaign_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?)
}
