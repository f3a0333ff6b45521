//! WeChat's content review of held messages (docs/wechat.md, "Held for review").
//!
//! WeChat may answer a template send with 40252 instead of a msgid: the message went into the
//! platform's content review. If it passes, WeChat delivers it itself (within about half an
//! hour); if not, it is intercepted, and `wxa/sec/queryblocktmplmsg` lists it. That API lists
//! only the held messages the review blocked, never messages accepted with errcode 0. So the
//! ledger keeps a held job in state `held` (never sent again) and this reconciliation ends it:
//!
//! - a held job that `queryblocktmplmsg` lists becomes dead `content_blocked` (a dead letter
//!   with its job, source `review`), as soon as the record appears;
//! - a held job older than the review window ([`ReviewOptions::hold`],
//!   `WXNOTIFY_REVIEW_HOLD_SECS`, 30 minutes by default) that is not listed, once every record of
//!   its template has been read, becomes `sent`, delivered after review (no msgid);
//! - a verdict that comes after the window still turns such a job dead (for two days).
//!
//! WeChat's record has no msgid: a record matches the held job of the same app, template and OA
//! openid held nearest to the record's `send_timestamp`, within [`MATCH_WINDOW_S`] seconds. The
//! records of each template are paged from where the last pass stopped
//! (`block_reconcile_cursors`). When the list cannot be read to its end, nothing is released:
//! a job stays held rather than be called sent on a guess.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::error::UpkeepError;
use crate::ledger::reviews::{self, BlockedRecord};
use wxnotify_core::domain::AppName;
use wxnotify_core::wechat::client::rules::BLOCKED_PAGE_MAX;
use wxnotify_core::wechat::{TokenStore, WechatClient};

/// How far apart WeChat's `send_timestamp` and the ledger's `held_at` may be for a match.
pub const MATCH_WINDOW_S: i64 = 600;

/// The most pages read per template and pass (bounds one pass's work; the next pass goes on).
const MAX_PAGES: usize = 100;

/// How the review of held messages is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReviewOptions {
    /// How long after WeChat held a message its verdict is awaited; a held job older than this
    /// that the review did not block is recorded sent.
    pub hold: Duration,
}

impl Default for ReviewOptions {
    fn default() -> Self {
        ReviewOptions {
            hold: Duration::from_secs(1800),
        }
    }
}

/// What one reconciliation pass did for one app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReviewReport {
    /// Templates asked about.
    pub templates: usize,
    /// Blocked records read.
    pub records: usize,
    /// Held jobs the review blocked (now dead `content_blocked`).
    pub blocked: usize,
    /// Held jobs delivered after review (now sent).
    pub delivered: u64,
    /// Records with no held job (a message sent by something other than wxnotify, or one
    /// decided before).
    pub unmatched: usize,
}

/// One pass over `app`: every template with held jobs (or jobs released in the last two days).
#[tracing::instrument(skip_all, fields(app = %app), err)]
pub async fn reconcile_app(
    pool: &PgPool,
    tokens: &TokenStore,
    client: &WechatClient,
    app: &AppName,
    options: ReviewOptions,
) -> Result<ReviewReport, UpkeepError> {
    let templates = reviews::held_templates(pool, app.as_str()).await?;
    let mut report = ReviewReport {
        templates: templates.len(),
        ..ReviewReport::default()
    };
    let held_before =
        Utc::now() - chrono::Duration::from_std(options.hold).unwrap_or(chrono::Duration::MAX);
    for template in &templates {
        let complete = read_blocks(pool, tokens, client, app, template, &mut report).await?;
        if complete {
            report.delivered +=
                reviews::release_held(pool, app.as_str(), template, held_before).await?;
        }
    }
    reviews::forget_decided(pool).await?;
    let label = app.to_string();
    if report.blocked > 0 {
        metrics::counter!("wxnotify_review_total", "app" => label.clone(), "verdict" => "blocked")
            .increment(report.blocked as u64);
        tracing::warn!(
            blocked = report.blocked,
            "held messages blocked by WeChat's content review: dead content_blocked"
        );
    }
    if report.delivered > 0 {
        metrics::counter!("wxnotify_review_total", "app" => label, "verdict" => "delivered")
            .increment(report.delivered);
        tracing::info!(
            delivered = report.delivered,
            "held messages delivered after WeChat's content review: recorded sent"
        );
    }
    Ok(report)
}

/// Reads the blocked records of `template` from the stored cursor and applies them. `true`
/// when the list was read to its end.
async fn read_blocks(
    pool: &PgPool,
    tokens: &TokenStore,
    client: &WechatClient,
    app: &AppName,
    template: &str,
    report: &mut ReviewReport,
) -> Result<bool, UpkeepError> {
    let mut cursor: i64 = sqlx::query_scalar(
        "SELECT largest_id FROM block_reconcile_cursors WHERE app = $1 AND template_id = $2",
    )
    .bind(app.as_str())
    .bind(template)
    .fetch_optional(pool)
    .await?
    .unwrap_or(0);
    let mut complete = false;
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
            let at =
                DateTime::<Utc>::from_timestamp(record.send_timestamp, 0).unwrap_or_else(Utc::now);
            let blocked = BlockedRecord {
                app: app.as_str(),
                template_id: template,
                openid: &record.openid,
                at,
                record_id: record.id,
                title: &record.title,
            };
            match reviews::block_held(pool, &blocked, MATCH_WINDOW_S as f64).await? {
                Some(job_id) => {
                    tracing::info!(
                        job_id,
                        record_id = record.id,
                        "held message blocked by review"
                    );
                    report.blocked += 1;
                }
                None => report.unmatched += 1,
            }
        }
        let last = page.iter().map(|r| r.id).max().unwrap_or(cursor);
        let moved_on = last > cursor;
        cursor = cursor.max(last);
        if page.len() < BLOCKED_PAGE_MAX as usize {
            complete = true;
            break;
        }
        if !moved_on {
            // A full page that does not move past the cursor: stop rather than loop, and
            // release nothing on a list not read to its end.
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
    Ok(complete)
}
