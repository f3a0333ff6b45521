//! Resolving a job's recipient to a subscribed OA follower's openid:
//! Mini Program openid -> unionid (`mp_users`, from logins) -> OA openid (`oa_followers`, from the
//! follower sync and subscribe events). One query whatever the kind of recipient.

use sqlx::PgPool;

use super::outcome::DeadReason;
use crate::domain::{AppName, OpenId, Recipient};

/// Where a recipient leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Send to this OA openid.
    Follower(OpenId),
    /// Cannot be sent, for this reason.
    Unreachable(DeadReason, String),
}

#[derive(sqlx::FromRow)]
struct Row {
    mp_known: bool,
    unionid: Option<String>,
    subscribed_openid: Option<String>,
    any_follower: bool,
}

/// Resolves `to` within `app`.
#[tracing::instrument(skip_all, fields(app = %app, kind = to.kind()), err)]
pub async fn resolve(
    pool: &PgPool,
    app: &AppName,
    to: &Recipient,
) -> Result<Resolved, sqlx::Error> {
    let row: Row = sqlx::query_as(
        "WITH u AS (
             SELECT CASE $2
                        WHEN 'mp_openid' THEN (SELECT unionid FROM mp_users WHERE app = $1 AND mp_openid = $3)
                        WHEN 'unionid' THEN $3
                    END AS unionid,
                    ($2 <> 'mp_openid' OR EXISTS (SELECT 1 FROM mp_users WHERE app = $1 AND mp_openid = $3)) AS mp_known
         )
         SELECT u.mp_known, u.unionid,
                (SELECT f.oa_openid FROM oa_followers f
                  WHERE f.app = $1 AND f.subscribed
                    AND CASE WHEN $2 = 'oa_openid' THEN f.oa_openid = $3 ELSE f.unionid = u.unionid END
                  ORDER BY f.updated_at DESC LIMIT 1) AS subscribed_openid,
                EXISTS (SELECT 1 FROM oa_followers f
                  WHERE f.app = $1
                    AND CASE WHEN $2 = 'oa_openid' THEN f.oa_openid = $3 ELSE f.unionid = u.unionid END) AS any_follower
         FROM u",
    )
    .bind(app.as_str())
    .bind(to.kind())
    .bind(to.value())
    .fetch_one(pool)
    .await?;
    Ok(decide(to, row))
}

fn decide(to: &Recipient, row: Row) -> Resolved {
    use Resolved::*;
    if let Some(openid) = row.subscribed_openid.and_then(|o| OpenId::parse(o).ok()) {
        return Follower(openid);
    }
    match to {
        Recipient::OaOpenid(openid) if !row.any_follower => {
            // An OA openid wxnotify has not seen: send as asked; WeChat will say if it is wrong.
            Follower(openid.clone())
        }
        Recipient::OaOpenid(openid) => Unreachable(
            DeadReason::NotFollowing,
            format!("OA openid {openid} has unfollowed the Official Account"),
        ),
        Recipient::MpOpenid(openid) if !row.mp_known => Unreachable(
            DeadReason::UnknownMpUser,
            format!(
                "no Mini Program login is known for openid {openid}; the user must log in first"
            ),
        ),
        Recipient::MpOpenid(openid) if row.unionid.is_none() => Unreachable(
            DeadReason::NoUnionid,
            format!(
                "Mini Program user {openid} has no unionid: bind the Mini Program to the WeChat Open Platform account of the OA"
            ),
        ),
        _ if row.any_follower => Unreachable(
            DeadReason::NotFollowing,
            format!(
                "unionid {} belongs to an OA follower who has unfollowed",
                row.unionid.unwrap_or_default()
            ),
        ),
        _ => Unreachable(
            DeadReason::NotFollowing,
            format!(
                "no OA follower has unionid {}: the person does not follow the Official Account (or the follower sync has not run)",
                row.unionid.unwrap_or_default()
            ),
        ),
    }
}
