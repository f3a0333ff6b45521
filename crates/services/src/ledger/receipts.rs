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

/// A `subscribe_msg_sent_event` result: the final word on one subscribe message.
#[derive(Debug, Clone, Copy)]
pub struct SubscribeReceipt<'a> {
    /// The recipient's Mini Program openid (`FromUserName`).
    pub mp_openid: &'a str,
    /// The subscribe template.
    pub template_id: &'a str,
    /// The msgid, when WeChat gave one (with the send's answer and here).
    pub msg_id: Option<i64>,
    /// The push's `CreateTime` (with the person and template, the key of WeChat's retries).
    pub create_time: i64,
    /// `ErrorCode`: 0 = delivered.
    pub error_code: i64,
    /// `ErrorStatus`, stored raw as the receipt's status (`success`, `fail:…`).
    pub status: &'a str,
    /// When WeChat reported it.
    pub at: DateTime<Utc>,
}

/// What became of a subscribe receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeReceiptOutcome {
    /// Stored on the delivery it belongs to.
    Matched,
    /// No delivery matches yet: kept in `delivery_receipts` by msgid for the ledger to match
    /// when it records the send (a receipt without a msgid that matches nothing is only logged).
    Pending,
    /// A retry of a push already recorded.
    Retry,
}

/// Stores a `subscribe_msg_sent_event` result on the subscribe delivery it reports: by msgid
/// when WeChat gave one (as TEMPLATESENDJOBFINISH, through `delivery_receipts`), else by person,
/// template and time: the oldest subscribe delivery to that Mini Program openid with that
/// template, sent no later than a minute after the receipt's time, that has no receipt yet.
/// Call inside the transaction of the push.
pub async fn record_subscribe_receipt(
    conn: &mut PgConnection,
    app: &AppName,
    receipt: &SubscribeReceipt<'_>,
) -> Result<SubscribeReceiptOutcome, sqlx::Error> {
    let key = format!(
        "subscribe_msg_sent_event:{}:{}",
        receipt.template_id,
        receipt.msg_id.map(|id| id.to_string()).unwrap_or_default()
    );
    let claimed = sqlx::query(
        "INSERT INTO callback_events (app, from_user, create_time, event_key)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(app.as_str())
    .bind(receipt.mp_openid)
    .bind(receipt.create_time)
    .bind(key)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(SubscribeReceiptOutcome::Retry);
    }
    if let Some(msg_id) = receipt.msg_id {
        let matched = sqlx::query(
            "UPDATE deliveries SET receipt_status = $3, receipt_at = $4, updated_at = now()
             WHERE app = $1 AND msgid = $2 AND channel = 'mp_subscribe'",
        )
        .bind(app.as_str())
        .bind(msg_id)
        .bind(receipt.status)
        .bind(receipt.at)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if matched > 0 {
            return Ok(SubscribeReceiptOutcome::Matched);
        }
        record_receipt(conn, app, msg_id, receipt.status, receipt.at).await?;
        return Ok(SubscribeReceiptOutcome::Pending);
    }
    let matched = sqlx::query(
        "UPDATE deliveries SET receipt_status = $4, receipt_at = $5, updated_at = now()
         WHERE (app, job_id) = (
             SELECT app, job_id FROM deliveries
             WHERE app = $1 AND channel = 'mp_subscribe' AND mp_openid = $2
               AND mp_template_id = $3 AND receipt_status IS NULL
               AND sent_at IS NOT NULL AND sent_at <= $5 + interval '1 minute'
             ORDER BY sent_at LIMIT 1)",
    )
    .bind(app.as_str())
    .bind(receipt.mp_openid)
    .bind(receipt.template_id)
    .bind(receipt.status)
    .bind(receipt.at)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(if matched > 0 {
        SubscribeReceiptOutcome::Matched
    } else {
        SubscribeReceiptOutcome::Pending
    })
}
