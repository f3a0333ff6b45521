//! The audience snapshot, taken once when a campaign is created: the recipients are copied into
//! a temporary table with `COPY` and resolved in one set-based statement (Mini Program openid →
//! unionid → subscribed follower), so a million recipients take seconds. Each distinct person is
//! kept once; each recipient that cannot be sent to keeps its reason.
//!
//! With a subscribe template (the campaign's `mp_subscribe`), a Mini Program user whom the OA
//! cannot reach but who holds a grant for it ([`SENDABLE_SQL`]) is kept as reachable by that
//! channel, addressed by the Mini Program openid (`mp_openid`).

use serde_json::Value;
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use super::audience::{BadLines, Item};
use crate::subscriptions::grants::SENDABLE_SQL;
use wxnotify_core::domain::AppName;

/// Bytes of COPY data buffered before they are sent.
const COPY_CHUNK: usize = 1 << 20;

/// Items read (and checked) between two yields to the other tasks of the runtime.
const YIELD_EVERY: usize = 2_048;

/// What a snapshot found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Lines read as recipients (before removing repeats).
    pub lines: u64,
    /// Recipients repeated (the same address, or two addresses of one follower): kept once.
    pub repeats: u64,
    /// Lines skipped as bad.
    pub bad_lines: BadLines,
    /// Recipients kept, by unreachable reason (`None`: reachable) and whether they are reached by
    /// a grant (the subscribe message), counted from the rows the insert returned rather than by
    /// reading the million rows back.
    pub kept: Vec<Kept>,
}

/// Recipients kept with one unreachable reason (`None`: reachable) and channel.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Kept {
    /// Why they cannot be sent to (`None`: they can).
    pub unreachable: Option<String>,
    /// Reached by the subscribe message (a grant holder), not by the OA.
    pub by_grant: bool,
    /// How many.
    pub count: i64,
}

/// Wraps the statement `insert` (an `INSERT` without `RETURNING`) so that it answers how many
/// rows it wrote, by unreachable reason and channel.
fn counted(insert: &str) -> String {
    format!(
        "WITH ins AS ({insert} RETURNING unreachable, mp_openid IS NOT NULL AS by_grant)
         SELECT unreachable, by_grant, count(*) AS count FROM ins GROUP BY 1, 2"
    )
}

/// Snapshots every subscribed follower of `app`'s OA into campaign `id`, then (with a subscribe
/// template `mp_template`) every Mini Program user who does not follow but holds a grant for it.
pub async fn followers(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    app: &AppName,
    mp_template: Option<&str>,
) -> Result<Snapshot, sqlx::Error> {
    let kept: Vec<Kept> = sqlx::query_as(sqlx::AssertSqlSafe(counted(&format!(
        "INSERT INTO campaign_recipients
             (campaign_id, line, recipient_kind, recipient, oa_openid, mp_openid, send_seq)
         SELECT $1, n, kind, recipient, oa_openid, mp_openid, n
         FROM (SELECT kind, recipient, oa_openid, mp_openid,
                      row_number() OVER (ORDER BY channel, recipient) AS n
               FROM (SELECT 0 AS channel, 'oa_openid' AS kind, oa_openid AS recipient, oa_openid,
                            NULL::text AS mp_openid
                     FROM oa_followers WHERE app = $2 AND subscribed
                     UNION ALL
                     SELECT 1, 'mp_openid', g.mp_openid, NULL, g.mp_openid
                     FROM mp_grants g
                     WHERE g.app = $2 AND g.template_id = $3 AND {SENDABLE_SQL}
                       AND NOT EXISTS (
                           SELECT 1 FROM mp_users m
                           JOIN oa_followers f
                             ON f.app = m.app AND f.unionid = m.unionid AND f.subscribed
                           WHERE m.app = $2 AND m.mp_openid = g.mp_openid)) a) f"
    ))))
    .bind(id)
    .bind(app.as_str())
    .bind(mp_template)
    .fetch_all(&mut **tx)
    .await?;
    Ok(Snapshot {
        lines: kept.iter().map(|k| k.count as u64).sum(),
        kept,
        ..Snapshot::default()
    })
}

/// Snapshots the recipients of `items` (a file or a list) into campaign `id`; with a subscribe
/// template `mp_template`, a Mini Program openid the OA cannot reach but that holds a grant for
/// it is reachable by the subscribe message.
pub async fn recipients(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    app: &AppName,
    mp_template: Option<&str>,
    items: impl Iterator<Item = Item>,
) -> Result<Snapshot, sqlx::Error> {
    sqlx::query(
        "CREATE TEMPORARY TABLE campaign_staging (
             line bigint NOT NULL, kind text NOT NULL, recipient text NOT NULL, data jsonb
         ) ON COMMIT DROP",
    )
    .execute(&mut **tx)
    .await?;
    // Sorts and hashes of a million rows stay in memory (this transaction only).
    sqlx::query("SET LOCAL work_mem = '256MB'")
        .execute(&mut **tx)
        .await?;
    let mut snap = copy_items(tx, items).await?;
    sqlx::query("ANALYZE campaign_staging")
        .execute(&mut **tx)
        .await?;
    snap.kept = sqlx::query_as(sqlx::AssertSqlSafe(counted(&resolve_sql())))
        .bind(id)
        .bind(app.as_str())
        .bind(mp_template)
        .fetch_all(&mut **tx)
        .await?;
    let inserted: i64 = snap.kept.iter().map(|k| k.count).sum();
    snap.repeats = snap.lines - inserted as u64;
    Ok(snap)
}

/// Streams the items into `campaign_staging` with COPY (CSV format), noting bad lines.
async fn copy_items(
    conn: &mut PgConnection,
    items: impl Iterator<Item = Item>,
) -> Result<Snapshot, sqlx::Error> {
    let mut snap = Snapshot::default();
    let mut copy = conn
        .copy_in_raw("COPY campaign_staging (line, kind, recipient, data) FROM STDIN (FORMAT csv)")
        .await?;
    let mut buf: Vec<u8> = Vec::with_capacity(COPY_CHUNK + 4096);
    for (n, item) in items.enumerate() {
        // Reading and checking items is work on this thread: let other requests run between
        // every few thousand of them.
        if n % YIELD_EVERY == YIELD_EVERY - 1 {
            tokio::task::yield_now().await;
        }
        let entry = match item {
            Ok(e) => e,
            Err(bad) => {
                snap.bad_lines.push(bad);
                continue;
            }
        };
        snap.lines += 1;
        use std::io::Write;
        let _ = write!(buf, "{},{},", entry.line, entry.to.kind());
        csv_quote(&mut buf, entry.to.value());
        buf.push(b',');
        if let Some(data) = entry.data {
            csv_quote(&mut buf, &Value::Object(data).to_string());
        }
        buf.push(b'\n');
        if buf.len() >= COPY_CHUNK {
            copy.send(std::mem::take(&mut buf)).await?;
            buf.reserve(COPY_CHUNK + 4096);
        }
    }
    if !buf.is_empty() {
        copy.send(buf).await?;
    }
    copy.finish().await?;
    Ok(snap)
}

/// Appends `s` as a quoted CSV field.
fn csv_quote(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    for b in s.bytes() {
        if b == b'"' {
            buf.push(b'"');
        }
        buf.push(b);
    }
    buf.push(b'"');
}

/// Resolves the staged recipients in one statement. Hash joins against `mp_users` and the
/// subscribed followers by unionid (the newest follower row of a unionid wins); repeats of an
/// address, and addresses that lead to one follower, are kept once (the first line): one
/// window over the follower reached (or the address, for the unreachable).
/// An OA openid wxnotify has never seen is kept as reachable (the worker sends it as asked).
/// A Mini Program openid the OA cannot reach that holds a grant for the subscribe template `$3`
/// is reachable by its grant (`mp_openid`).
fn resolve_sql() -> String {
    format!(
        "
WITH subscribed AS (
    SELECT DISTINCT ON (unionid) unionid, oa_openid
    FROM oa_followers WHERE app = $2 AND subscribed AND unionid IS NOT NULL
    ORDER BY unionid, updated_at DESC
),
resolved AS (
    SELECT s.line, s.kind, s.recipient, s.data,
        CASE WHEN s.kind = 'oa_openid'
             THEN CASE WHEN fo.subscribed IS DISTINCT FROM false THEN s.recipient END
             ELSE fs.oa_openid END AS oa_openid,
        CASE
            WHEN s.kind = 'oa_openid' THEN CASE WHEN fo.subscribed = false THEN 'not_following' END
            WHEN s.kind = 'mp_openid' AND m.mp_openid IS NULL THEN 'unknown_mp_user'
            WHEN s.kind = 'mp_openid' AND m.unionid IS NULL THEN 'no_unionid'
            WHEN fs.oa_openid IS NULL THEN 'not_following'
        END AS unreachable,
        g.mp_openid AS grant_mp_openid
    FROM campaign_staging s
    LEFT JOIN mp_users m ON s.kind = 'mp_openid' AND m.app = $2 AND m.mp_openid = s.recipient
    LEFT JOIN oa_followers fo ON s.kind = 'oa_openid' AND fo.app = $2 AND fo.oa_openid = s.recipient
    LEFT JOIN subscribed fs
        ON s.kind <> 'oa_openid'
       AND fs.unionid = CASE s.kind WHEN 'mp_openid' THEN m.unionid ELSE s.recipient END
    LEFT JOIN mp_grants g
        ON s.kind = 'mp_openid' AND g.app = $2 AND g.template_id = $3
       AND g.mp_openid = s.recipient AND {SENDABLE_SQL}
),
channelled AS (
    SELECT line, kind, recipient, data, oa_openid,
           CASE WHEN unreachable IS NOT NULL THEN grant_mp_openid END AS mp_openid,
           CASE WHEN grant_mp_openid IS NULL THEN unreachable END AS unreachable
    FROM resolved
),
kept AS (
    SELECT *, row_number() OVER (
                  PARTITION BY COALESCE(oa_openid, kind || ':' || recipient) ORDER BY line) AS nth
    FROM channelled
)
INSERT INTO campaign_recipients
    (campaign_id, line, recipient_kind, recipient, data, oa_openid, mp_openid, send_seq, unreachable)
SELECT $1, line, kind, recipient, data, oa_openid, mp_openid,
       CASE WHEN unreachable IS NULL
            THEN row_number() OVER (PARTITION BY unreachable IS NULL ORDER BY line) END,
       unreachable
FROM kept WHERE nth = 1"
    )
}
