//! The SQL of the HTTP API: Mini Program users, claimed callback events, delivery receipts.
//! (Follower rows are changed through [`wxnotify_services::followers::store`].)

use secrecy::ExposeSecret;
use sqlx::{PgConnection, PgPool};

use wxnotify_core::domain::{AppName, UnionId};
use wxnotify_core::wechat::client::MpSession;
use wxnotify_core::wechat::event::Push;

/// Upserts the Mini Program user of a login; the session key replaces the previous one and
/// stays in this table (it is never returned or logged). A unionid WeChat did not send does not
/// erase one already known.
pub async fn upsert_mp_user(
    pool: &PgPool,
    app: &AppName,
    session: &MpSession,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO mp_users (app, mp_openid, unionid, session_key, last_login_at)
         VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (app, mp_openid) DO UPDATE
         SET unionid = COALESCE(EXCLUDED.unionid, mp_users.unionid),
             session_key = EXCLUDED.session_key, last_login_at = now()",
    )
    .bind(app.as_str())
    .bind(session.openid.as_str())
    .bind(session.unionid.as_ref().map(UnionId::as_str))
    .bind(session.session_key.expose_secret())
    .execute(pool)
    .await?;
    Ok(())
}

/// Claims a pushed event's key; `false` means it was claimed before (a WeChat retry) and must
/// not be applied again. Call inside the transaction that applies the event.
pub async fn claim_event(
    conn: &mut PgConnection,
    app: &AppName,
    push: &Push,
) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query(
        "INSERT INTO callback_events (app, from_user, create_time, event_key)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(app.as_str())
    .bind(push.from.as_str())
    .bind(push.create_time)
    .bind(push.dedupe_key())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(claimed == 1)
}

/// Deletes claimed event keys older than a day (WeChat's retries come within a minute).
pub async fn prune_events(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM callback_events WHERE received_at < now() - interval '1 day'")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
