//! The SQL of followers: sync passes (`follower_sync_passes`), batched upserts into
//! `oa_followers`, and the single-row changes that callback events make.

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};

use wxnotify_core::domain::{AppName, OpenId, UnionId};
use wxnotify_core::wechat::client::UserInfo;

/// A sync pass as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Pass {
    /// Its id.
    pub id: i64,
    /// When it started (the first run); followers not confirmed since are absent from it.
    pub started_at: DateTime<Utc>,
    /// The next_openid after the last page fully stored; `None` = from the start.
    pub cursor: Option<String>,
    /// WeChat's follower count at the latest page.
    pub total: Option<i64>,
    /// Pages stored.
    pub pages: i32,
    /// Followers stored.
    pub seen: i64,
    /// Of which with a unionid.
    pub with_unionid: i64,
    /// Of which without one.
    pub without_unionid: i64,
    /// 1 + resumes.
    pub runs: i32,
}

/// Counts of one stored page.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageCounts {
    /// Followers in the page.
    pub seen: i64,
    /// Of which with a unionid.
    pub with_unionid: i64,
}

/// An advisory lock held on a connection of its own while one process syncs an app (a second
/// `sync-followers` of the same app waits for nothing and fails at once). [`AppLock::release`]
/// frees it at once; dropping the value closes the connection, which frees it too (a moment
/// later, once the server sees the socket close), even if the process dies.
pub struct AppLock {
    conn: PgConnection,
    app: AppName,
}

const APP_LOCK_KEY: &str = "hashtext('wxnotify.sync-followers'), hashtext($1)";

impl AppLock {
    /// Frees the lock before this returns, so a sync started next never finds it taken.
    pub async fn release(mut self) -> Result<(), sqlx::Error> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT pg_advisory_unlock({APP_LOCK_KEY})"
        )))
        .bind(self.app.as_str())
        .execute(&mut self.conn)
        .await?;
        self.conn.close().await
    }
}

/// Takes the app's sync lock, or returns `None` when another process holds it.
pub async fn try_lock_app(pool: &PgPool, app: &AppName) -> Result<Option<AppLock>, sqlx::Error> {
    let mut conn = pool.acquire().await?.detach();
    let got: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT pg_try_advisory_lock({APP_LOCK_KEY})"
    )))
    .bind(app.as_str())
    .fetch_one(&mut conn)
    .await?;
    Ok(got.then(|| AppLock {
        conn,
        app: app.clone(),
    }))
}

const PASS_COLUMNS: &str =
    "id, started_at, cursor, total, pages, seen, with_unionid, without_unionid, runs";

/// The app's running pass, resumed (its `runs` incremented), if there is one.
pub async fn resume_pass(pool: &PgPool, app: &AppName) -> Result<Option<Pass>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE follower_sync_passes SET runs = runs + 1, updated_at = now()
         WHERE app = $1 AND state = 'running' RETURNING {PASS_COLUMNS}"
    )))
    .bind(app.as_str())
    .fetch_optional(pool)
    .await
}

/// Abandons the app's running pass, if any (`--restart`); returns whether there was one.
pub async fn abandon_pass(pool: &PgPool, app: &AppName) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE follower_sync_passes SET state = 'abandoned', updated_at = now()
         WHERE app = $1 AND state = 'running'",
    )
    .bind(app.as_str())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Starts a new pass from the beginning of the list.
pub async fn start_pass(pool: &PgPool, app: &AppName) -> Result<Pass, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO follower_sync_passes (app) VALUES ($1) RETURNING {PASS_COLUMNS}"
    )))
    .bind(app.as_str())
    .fetch_one(pool)
    .await
}

/// Stores one page of followers and moves the pass's cursor past it, in one transaction, so a
/// resumed pass starts exactly at the first page not stored.
pub async fn store_page(
    pool: &PgPool,
    app: &AppName,
    pass_id: i64,
    users: &[UserInfo],
    next_cursor: Option<&OpenId>,
    total: u64,
) -> Result<PageCounts, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let counts = upsert_followers(&mut tx, app, users).await?;
    sqlx::query(
        "UPDATE follower_sync_passes
         SET cursor = COALESCE($2, cursor), total = $3, pages = pages + 1, seen = seen + $4,
             with_unionid = with_unionid + $5, without_unionid = without_unionid + $4 - $5,
             updated_at = now()
         WHERE id = $1",
    )
    .bind(pass_id)
    .bind(next_cursor.map(OpenId::as_str))
    .bind(i64::try_from(total).unwrap_or(i64::MAX))
    .bind(counts.seen)
    .bind(counts.with_unionid)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(counts)
}

/// Upserts followers with one multi-row statement (`UNNEST` of one array per column). A unionid
/// WeChat did not send does not erase one already known.
async fn upsert_followers(
    tx: &mut Transaction<'_, Postgres>,
    app: &AppName,
    users: &[UserInfo],
) -> Result<PageCounts, sqlx::Error> {
    let mut users: Vec<&UserInfo> = users.iter().collect();
    // One statement may not touch a row twice: keep one entry per openid.
    users.sort_unstable_by(|a, b| a.openid.cmp(&b.openid));
    users.dedup_by(|a, b| a.openid == b.openid);
    let openids: Vec<&str> = users.iter().map(|u| u.openid.as_str()).collect();
    let unionids: Vec<Option<&str>> = users
        .iter()
        .map(|u| u.unionid.as_ref().map(UnionId::as_str))
        .collect();
    let subscribed: Vec<bool> = users.iter().map(|u| u.subscribed).collect();
    let times: Vec<Option<i64>> = users.iter().map(|u| u.subscribe_time).collect();
    sqlx::query(
        "INSERT INTO oa_followers (app, oa_openid, unionid, subscribed, subscribe_time, synced_at, updated_at)
         SELECT $1, o, u, s, to_timestamp(t), now(), now()
         FROM UNNEST($2::text[], $3::text[], $4::bool[], $5::bigint[]) AS x(o, u, s, t)
         ON CONFLICT (app, oa_openid) DO UPDATE
         SET unionid = COALESCE(EXCLUDED.unionid, oa_followers.unionid),
             subscribed = EXCLUDED.subscribed,
             subscribe_time = COALESCE(EXCLUDED.subscribe_time, oa_followers.subscribe_time),
             synced_at = EXCLUDED.synced_at,
             updated_at = EXCLUDED.updated_at",
    )
    .bind(app.as_str())
    .bind(&openids)
    .bind(&unionids)
    .bind(&subscribed)
    .bind(&times)
    .execute(&mut **tx)
    .await?;
    Ok(PageCounts {
        seen: users.len() as i64,
        with_unionid: users.iter().filter(|u| u.unionid.is_some()).count() as i64,
    })
}

/// Completes a pass that reached the end of the list: followers not confirmed since the pass
/// started are marked unsubscribed. Returns how many were.
pub async fn complete_pass(pool: &PgPool, app: &AppName, pass: &Pass) -> Result<i64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let gone = sqlx::query(
        "UPDATE oa_followers SET subscribed = false, updated_at = now()
         WHERE app = $1 AND subscribed AND synced_at < $2",
    )
    .bind(app.as_str())
    .bind(pass.started_at)
    .execute(&mut *tx)
    .await?
    .rows_affected() as i64;
    sqlx::query(
        "UPDATE follower_sync_passes
         SET state = 'completed', completed_at = now(), unsubscribed = $2, updated_at = now()
         WHERE id = $1",
    )
    .bind(pass.id)
    .bind(gone)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(gone)
}

/// The pass as stored now.
pub async fn load_pass(pool: &PgPool, id: i64) -> Result<Pass, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {PASS_COLUMNS} FROM follower_sync_passes WHERE id = $1"
    )))
    .bind(id)
    .fetch_one(pool)
    .await
}

/// A `subscribe` event: the person follows now (their unionid, if known, is kept; the caller
/// fetches it with `user/info` afterwards).
pub async fn mark_subscribed(
    conn: &mut PgConnection,
    app: &AppName,
    openid: &OpenId,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO oa_followers (app, oa_openid, subscribed, subscribe_time, synced_at)
         VALUES ($1, $2, true, $3, now())
         ON CONFLICT (app, oa_openid) DO UPDATE
         SET subscribed = true, subscribe_time = EXCLUDED.subscribe_time,
             synced_at = now(), updated_at = now()",
    )
    .bind(app.as_str())
    .bind(openid.as_str())
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// An `unsubscribe` event (or 43004 on a send): the person no longer follows.
pub async fn mark_unsubscribed(
    conn: &mut PgConnection,
    app: &AppName,
    openid: &OpenId,
) -> Result<(), sqlx::Error> {
    mark_unsubscribed_all(conn, &[(app.as_str(), openid.as_str())]).await
}

/// [`mark_unsubscribed`] for several (app, OA openid) pairs in one statement; a pair may repeat.
pub async fn mark_unsubscribed_all(
    conn: &mut PgConnection,
    followers: &[(&str, &str)],
) -> Result<(), sqlx::Error> {
    if followers.is_empty() {
        return Ok(());
    }
    let (apps, openids): (Vec<&str>, Vec<&str>) = followers.iter().copied().unzip();
    sqlx::query(
        "INSERT INTO oa_followers (app, oa_openid, subscribed, synced_at)
         SELECT DISTINCT app, oa_openid, false, now()
         FROM UNNEST($1::text[], $2::text[]) AS t(app, oa_openid)
         ORDER BY app, oa_openid
         ON CONFLICT (app, oa_openid) DO UPDATE
         SET subscribed = false, synced_at = now(), updated_at = now()",
    )
    .bind(apps)
    .bind(openids)
    .execute(conn)
    .await?;
    Ok(())
}

/// Upserts one follower with its own statement and transaction: the seed method, kept only for
/// the benchmark's comparison.
pub async fn upsert_one(pool: &PgPool, app: &AppName, info: &UserInfo) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    upsert_followers(&mut tx, app, std::slice::from_ref(info)).await?;
    tx.commit().await
}

/// Records the unionid `user/info` gave for a follower after a `subscribe` event. Only the
/// unionid (and follow time) is taken: whether the person still follows is the events' business,
/// since an `unsubscribe` may have arrived while `user/info` was in flight.
pub async fn store_unionid(
    pool: &PgPool,
    app: &AppName,
    info: &UserInfo,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE oa_followers
         SET unionid = COALESCE($3, unionid),
             subscribe_time = COALESCE(to_timestamp($4), subscribe_time), updated_at = now()
         WHERE app = $1 AND oa_openid = $2",
    )
    .bind(app.as_str())
    .bind(info.openid.as_str())
    .bind(info.unionid.as_ref().map(UnionId::as_str))
    .bind(info.subscribe_time)
    .execute(pool)
    .await?;
    Ok(())
}

/// Whether a subscribed follower with this unionid is known: a message can reach the person.
pub async fn is_notifiable(
    pool: &PgPool,
    app: &AppName,
    unionid: &UnionId,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM oa_followers WHERE app = $1 AND unionid = $2 AND subscribed)",
    )
    .bind(app.as_str())
    .bind(unionid.as_str())
    .fetch_one(pool)
    .await
}
