//! WeChat's delivery receipts (`TEMPLATESENDJOBFINISH` pushes) on the ledger.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use wxnotify_core::domain::AppName;

/// Stores a TEMPLATESENDJOBFINISH status in `delivery_receipts` and on the delivery with that
/// msgid; returns whether a delivery matched (one that did not yet is matched by the ledger
/// later, from `delivery_receipts`).
pub async fn record_receipt(
    conn: &mut PgConnection,
    app: &AppName,
    msg_id: i64,
    status: &str,
    at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "INSERT INTO delivery_receipts (app, msgid, status, reported_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (app, msgid) DO UPDATE
         SET status = EXCLUDED.status, reported_at = EXCLUDED.reported_at, received_at = now()",
    )
    .bind(app.as_str())
    .bind(msg_id)
    .bind(status)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    let updated = sqlx::query(
        "UPDATE deliveries SET receipt_status = $3, receipt_at = $4, updated_at = now()
         WHERE msgid = $2 AND app = $1",
    )
    .bind(app.as_str())
    .bind(msg_id)
    .bind(status)
    .bind(at)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(updated > 0)
}
