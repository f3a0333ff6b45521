//! Recording a person's subscribe choices, each acceptance once.
//!
//! # The rule
//!
//! An acceptance (one tap on "allow" for one template) may be reported by WeChat's popup event,
//! by the Mini Program's report, or by both, in any order; WeChat may push its event several
//! times. Every choice of one app, person and template is recorded under a lock on their
//! `mp_grants` row, so choices of the same person and template are taken one at a time:
//!
//! 1. A WeChat push is first claimed by its key in `callback_events` (app, openid, CreateTime,
//!    event and template): a retry of a push already recorded changes nothing.
//! 2. An acceptance reported by the event looks for an acceptance only the Mini Program reported
//!    (`event_at IS NULL`) that arrived within [`PAIRING_WINDOW`] of the event's CreateTime; an
//!    acceptance reported by the Mini Program looks for one only WeChat reported
//!    (`reported_at IS NULL`) whose CreateTime is within the window of now. The oldest such
//!    acceptance is the same tap seen from the other side: its missing column is filled and
//!    nothing is counted.
//! 3. Otherwise it is a new acceptance: a row in `mp_acceptances`, `granted + 1`, the state back
//!    to `accept`, and `long_term` set when the catalog says the template is long-term (type 3).
//!
//! Nothing is counted twice: a tap has at most one event (retries are dropped in step 1) and one
//! report, and the second of them always finds the first (it is unpaired, inside the window, and
//! locked against a concurrent look). Nothing is lost when both sources report every tap (each
//! pair meets), or when only one source reports (nothing to pair with: each counts). The one
//! ambiguity is two taps in one window where one reaches wxnotify only through the event and the
//! other only through the report: they pair as one and the count is one low. Counting low is the
//! safe side: a grant wxnotify does not know of is never spent, whereas a grant it counted and
//! WeChat did not hold would answer 43101 (which then zeroes the count).
//!
//! A `reject` (in the popup or later in the settings) sets the state to `reject`, `ban` to
//! `ban`: the worker sends only in state `accept`; a later accept sets it back and counts.
//! A pairing half never changes the state (the choice it reports was applied when counted).

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use wxnotify_core::domain::AppName;

/// How far apart the two reports of one tap may be (WeChat's CreateTime against the arrival of
/// the Mini Program's report): generous for clocks and slow networks, short next to how often a
/// person taps the same button.
pub const PAIRING_WINDOW: Duration = Duration::minutes(5);

/// Who reported a choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// WeChat's push, with its `CreateTime` (unix seconds) and event name (the retry key).
    Event {
        /// `CreateTime`.
        create_time: i64,
        /// `subscribe_msg_popup_event` or `subscribe_msg_change_event`.
        event: &'static str,
    },
    /// The Mini Program's report, now.
    Report,
}

/// A person's choice for one template: the values `wx.requestSubscribeMessage` resolves with
/// and WeChat's events carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// `accept` or `acceptWithAudio`: one more grant (or a long-term one).
    Accept,
    /// `reject`: no more sends on this template until the next accept.
    Reject,
    /// `ban`: WeChat banned the template.
    Ban,
    /// `filter`: filtered for a same-title template; nothing changes.
    Filter,
}

impl Choice {
    /// Reads WeChat's word; `None` for anything else.
    pub fn parse(s: &str) -> Option<Choice> {
        Some(match s {
            "accept" | "acceptWithAudio" => Choice::Accept,
            "reject" => Choice::Reject,
            "ban" => Choice::Ban,
            "filter" => Choice::Filter,
            _ => return None,
        })
    }
}

/// What recording a choice did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recorded {
    /// A new acceptance: `granted` rose by one (or the long-term grant is in force).
    Counted,
    /// The other source's report of an acceptance already counted: nothing rose.
    Paired,
    /// A retry of a WeChat push already recorded: nothing changed.
    Retry,
    /// The state became `reject` or `ban`.
    Refused,
    /// `filter`: nothing to record.
    Ignored,
}

/// Records `choice` of `mp_openid` for `template_id`, reported by `source`, inside the caller's
/// transaction (see the module doc for the rule).
pub async fn record_choice(
    conn: &mut PgConnection,
    app: &AppName,
    mp_openid: &str,
    template_id: &str,
    choice: Choice,
    source: Source,
) -> Result<Recorded, sqlx::Error> {
    if let Source::Event { create_time, event } = source
        && !claim_push(conn, app, mp_openid, create_time, event, template_id).await?
    {
        return Ok(Recorded::Retry);
    }
    if choice == Choice::Filter {
        return Ok(Recorded::Ignored);
    }
    lock_row(conn, app, mp_openid, template_id).await?;
    match choice {
        Choice::Reject | Choice::Ban => {
            let state = if choice == Choice::Reject {
                "reject"
            } else {
                "ban"
            };
            sqlx::query(
                "UPDATE mp_grants SET state = $4, updated_at = now()
                 WHERE app = $1 AND mp_openid = $2 AND template_id = $3",
            )
            .bind(app.as_str())
            .bind(mp_openid)
            .bind(template_id)
            .bind(state)
            .execute(&mut *conn)
            .await?;
            Ok(Recorded::Refused)
        }
        Choice::Accept | Choice::Filter => accept(conn, app, mp_openid, template_id, source).await,
    }
}

/// Claims a WeChat push's key for one template; `false` = a retry, already recorded.
async fn claim_push(
    conn: &mut PgConnection,
    app: &AppName,
    mp_openid: &str,
    create_time: i64,
    event: &str,
    template_id: &str,
) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query(
        "INSERT INTO callback_events (app, from_user, create_time, event_key)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(app.as_str())
    .bind(mp_openid)
    .bind(create_time)
    .bind(format!("{event}:{template_id}"))
    .execute(conn)
    .await?
    .rows_affected();
    Ok(claimed == 1)
}

/// Creates the person's row for the template if needed and locks it for this transaction.
async fn lock_row(
    conn: &mut PgConnection,
    app: &AppName,
    mp_openid: &str,
    template_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO mp_grants (app, mp_openid, template_id) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(app.as_str())
    .bind(mp_openid)
    .bind(template_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "SELECT 1 FROM mp_grants WHERE app = $1 AND mp_openid = $2 AND template_id = $3
         FOR UPDATE",
    )
    .bind(app.as_str())
    .bind(mp_openid)
    .bind(template_id)
    .execute(conn)
    .await?;
    Ok(())
}

async fn accept(
    conn: &mut PgConnection,
    app: &AppName,
    mp_openid: &str,
    template_id: &str,
    source: Source,
) -> Result<Recorded, sqlx::Error> {
    let window = PAIRING_WINDOW.num_seconds() as f64;
    // The other source's unpaired report of the same tap, if any: fill in this side.
    let paired: Option<i64> = match source {
        Source::Event { create_time, .. } => {
            let at = DateTime::from_timestamp(create_time, 0).unwrap_or_else(Utc::now);
            sqlx::query_scalar(
                "UPDATE mp_acceptances SET event_at = $4
                 WHERE id = (SELECT id FROM mp_acceptances
                             WHERE app = $1 AND mp_openid = $2 AND template_id = $3
                               AND event_at IS NULL
                               AND reported_at BETWEEN $4 - make_interval(secs => $5)
                                                   AND $4 + make_interval(secs => $5)
                             ORDER BY reported_at LIMIT 1)
                 RETURNING id",
            )
            .bind(app.as_str())
            .bind(mp_openid)
            .bind(template_id)
            .bind(at)
            .bind(window)
            .fetch_optional(&mut *conn)
            .await?
        }
        Source::Report => {
            sqlx::query_scalar(
                "UPDATE mp_acceptances SET reported_at = now()
                 WHERE id = (SELECT id FROM mp_acceptances
                             WHERE app = $1 AND mp_openid = $2 AND template_id = $3
                               AND reported_at IS NULL
                               AND event_at BETWEEN now() - make_interval(secs => $4)
                                                AND now() + make_interval(secs => $4)
                             ORDER BY event_at LIMIT 1)
                 RETURNING id",
            )
            .bind(app.as_str())
            .bind(mp_openid)
            .bind(template_id)
            .bind(window)
            .fetch_optional(&mut *conn)
            .await?
        }
    };
    if paired.is_some() {
        return Ok(Recorded::Paired);
    }
    let event_at = match source {
        Source::Event { create_time, .. } => {
            Some(DateTime::from_timestamp(create_time, 0).unwrap_or_else(Utc::now))
        }
        Source::Report => None,
    };
    sqlx::query(
        "INSERT INTO mp_acceptances (app, mp_openid, template_id, event_at, reported_at)
         VALUES ($1, $2, $3, $4, CASE WHEN $4 IS NULL THEN now() END)",
    )
    .bind(app.as_str())
    .bind(mp_openid)
    .bind(template_id)
    .bind(event_at)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE mp_grants g
         SET granted = g.granted + 1, state = 'accept', updated_at = now(),
             long_term = g.long_term OR COALESCE(
                 (SELECT t.long_term FROM templates t
                  WHERE t.app = g.app AND t.template_id = g.template_id
                    AND t.channel = 'mp_subscribe'), false)
         WHERE g.app = $1 AND g.mp_openid = $2 AND g.template_id = $3",
    )
    .bind(app.as_str())
    .bind(mp_openid)
    .bind(template_id)
    .execute(conn)
    .await?;
    Ok(Recorded::Counted)
}

/// One template's grants of a person, as `GET /admin/api/subscriptions` answers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct GrantView {
    /// The subscribe template.
    pub template_id: String,
    /// Acceptances counted.
    pub granted: i64,
    /// Grants spent by sends.
    pub used: i64,
    /// Grants written off because WeChat proved them gone (43101).
    pub voided: i64,
    /// One-time grants left (`granted - used - voided`, never below 0).
    pub remaining: i64,
    /// Whether a long-term grant is in force (sends need no one-time grant while `accept`).
    pub long_term: bool,
    /// `accept`, `reject` or `ban`.
    pub state: String,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
}

/// SQL condition on an `mp_grants` row aliased `g`: a send may spend it now (the person's choice
/// is `accept`, and a one-time grant is left or the grant is long-term). The worker's claim
/// reserves by the same rule; a campaign's audience counts grant holders by it.
pub const SENDABLE_SQL: &str =
    "(g.state = 'accept' AND (g.long_term OR g.granted - g.used - g.voided > 0))";

/// Every template's grants of `mp_openid` in `app`, by template id.
pub async fn grants_of(
    pool: &PgPool,
    app: &AppName,
    mp_openid: &str,
) -> Result<Vec<GrantView>, sqlx::Error> {
    sqlx::query_as(
        "SELECT template_id, granted, used, voided,
                greatest(granted - used - voided, 0) AS remaining, long_term, state, updated_at
         FROM mp_grants WHERE app = $1 AND mp_openid = $2 ORDER BY template_id",
    )
    .bind(app.as_str())
    .bind(mp_openid)
    .fetch_all(pool)
    .await
}

/// Deletes acceptances counted more than a day ago (pairing needs minutes); returns how many.
pub async fn prune_acceptances(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM mp_acceptances WHERE counted_at < now() - interval '1 day'")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wechat_words_are_read_and_unknown_ones_refused() {
        assert_eq!(Choice::parse("accept"), Some(Choice::Accept));
        assert_eq!(Choice::parse("acceptWithAudio"), Some(Choice::Accept));
        assert_eq!(Choice::parse("reject"), Some(Choice::Reject));
        assert_eq!(Choice::parse("ban"), Some(Choice::Ban));
        assert_eq!(Choice::parse("filter"), Some(Choice::Filter));
        assert_eq!(Choice::parse("Accept"), None);
        assert_eq!(Choice::parse(""), None);
    }
}
