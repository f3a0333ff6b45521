//! Messages WeChat accepted and later intercepted (`docs/wechat.md` §10: pure marketing is
//! intercepted after the send answered `ok`). The reconciliation pages through
//! `wxa/sec/queryblocktmplmsg` for each template of an app, from where it stopped last time
//! (`block_reconcile_cursors`), and marks the matching sent delivery blocked
//! (`deliveries.blocked_at`).
//!
//! WeChat's record has no msgid: a record matches the sent, not yet blocked delivery of the
//! same app, template and OA openid whose `sent_at` is nearest to the record's
//! `send_timestamp`, within [`MATCH_WINDOW_S`] seconds. A record without a match is counted as
//! unmatched (a message sent by something other than wxnotify, or an old one).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::domain::AppName;
use crate::upkeep::UpkeepError;
use crate::wechat::client::rules::BLOCKED_PAGE_MAX;
use crate::wechat::{TokenStore, WechatClient};

/// How far apart WeChat's `send_timestamp` and the ledger's `sent_at` may be for a match.
pub const MATCH_WINDOW_S: i64 = 600;

/// The most pages read per template and pass (bounds one pass's work).
const MAX_PAGES: usize = 100;

/// What one reconciliation pass found for one app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlockReport {
    /// Templates asked about.
    pub templates: usize,
    /// Intercepted records read.
    pub records: usize,
    /// Deliveries newly marked blocked.
    pub marked: usize,
    /// Records with no matching delivery.
    pub unmatched: usize,
}

/// One reconciliation pass over `app`: every template of its catalog and every template it sent
/// in the last two days.
#[tracing::instrument(skip_all, fields(app = %app), err)]
pub async fn reconcile_app(
    pool: &PgPool,
    tokens: &TokenStore,
    client: &WechatClient,
    app: &AppName,
) -> Result<BlockReport, UpkeepError> {
    let templates: Vec<String> = sqlx::query_scalar(
        "SELECT template_id FROM templates WHERE app = $1
         UNION
         SELECT DISTINCT template_id FROM deliveries
         WHERE app = $1 AND sent_at IS NOT NULL AND sent_at > now() - interval '2 days'",
    )
    .bind(app.as_str())
    .fetch_all(pool)
    .await?;
    let mut report = BlockReport {
        templates: templates.len(),
        ..BlockReport::default()
    };
    for template in &templates {
        reconcile_template(pool, tokens, client, app, template, &mut report).await?;
    }
    if report.marked > 0 {
        metrics::counter!("wxnotify_blocked_total", "app" => app.to_string())
            .increment(report.marked as u64);
        tracing::warn!(
            marked = report.marked,
            "messages intercepted by WeChat after acceptance"
        );
    }
    Ok(report)
}

async fn reconcile_template(
    pool: &PgPool,
    tokens: &TokenStore,
    client: &WechatClient,
    app: &AppName,
    template: &str,
    report: &mut BlockReport,
) -> Result<(), UpkeepError> {
    let mut cursor: i64 = sqlx::query_scalar(
        "SELECT largest_id FROM block_reconcile_cursors WHERE app = $1 AND template_id = $2",
    )
    .bind(app.as_str())
    .bind(template)
    .fetch_optional(pool)
    .await?
    .unwrap_or(0);
    for _ in 0..MAX_PAGES {
        let page = tokens
            .with_token(app, |token| async move {
                client
                    .query_blocked(&token, template, cursor, BLOCKED_PAGE_MAX)
                    .await
            })
            .await?;
        for record in &page {
            report.records += 1;
            let sent_at =
                DateTime::<Utc>::from_timestamp(record.send_timestamp, 0).unwrap_or_else(Utc::now);
            if mark(pool, app, template, &record.openid, sent_at, record.id).await? {
                report.marked += 1;
            } else {
                report.unmatched += 1;
            }
        }
        let last = page.iter().map(|r| r.id).max().unwrap_or(cursor);
        let full = page.len() >= BLOCKED_PAGE_MAX as usize;
        if last <= cursor {
            break;
        }
        cursor = last;
        if !full {
            break;
        }
    }
    sqlx::query(
        "INSERT INTO block_reconcile_cursors (app, template_id, largest_id, checked_at)
         VALUES ($1, $2, $3, now())
         ON CONFLICT (app, template_id) DO UPDATE
         SET largest_id = GREATEST(block_reconcile_cursors.largest_id, EXCLUDED.largest_id),
             checked_at = now()",
    )
    .bind(app.as_str())
    .bind(template)
    .bind(cursor)
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks the delivery an intercepted record is about; false when none matches (or the record
/// was already applied).
async fn mark(
    pool: &PgPool,
    app: &AppName,
    template: &str,
    openid: &str,
    sent_at: DateTime<Utc>,
    record_id: i64,
) -> Result<bool, sqlx::Error> {
    let marked: Option<String> = sqlx::query_scalar(
        "UPDATE deliveries SET blocked_at = now(), block_record_id = $5, updated_at = now()
         WHERE job_id = (
             SELECT job_id FROM deliveries
             WHERE app = $1 AND template_id = $2 AND oa_openid = $3 AND state = 'sent'
               AND blocked_at IS NULL AND sent_at IS NOT NULL
               AND sent_at BETWEEN $4 - make_interval(secs => $6) AND $4 + make_interval(secs => $6)
               AND NOT EXISTS (SELECT 1 FROM deliveries b WHERE b.app = $1 AND b.block_record_id = $5)
             ORDER BY abs(extract(epoch FROM sent_at - $4))
             LIMIT 1)
         RETURNING job_id",
    )
    .bind(app.as_str())
    .bind(template)
    .bind(openid)
    .bind(sent_at)
    .bind(record_id)
    .bind(MATCH_WINDOW_S as f64)
    .fetch_optional(pool)
    .await?;
    if let Some(job_id) = &marked {
        tracing::info!(job_id, record_id, "delivery marked blocked by WeChat");
    }
    Ok(marked.is_some())
}
