//! The dead-letter filter of the admin API and the console, as one SQL `WHERE` clause.
//!
//! Listing, counting, grouping, replaying and purging all push the same clause
//! ([`DeadLetterQuery::push_where`]), so "replay all" or "purge all" touches exactly the letters
//! the list shows for that filter, and nothing else. `max_id` pins the set a person saw: a dry
//! run answers the highest id it counted, and the real action bound by it cannot reach letters
//! that died after the dry run.
//!
//! Pages are keyset pages, newest first (`id DESC`, `id < after`), on partial indexes of open
//! letters, so a page costs the same at the millionth letter as at the first.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};

use super::store::DeadLetterRow;

/// Which dead letters. Every field narrows; an empty query means every open letter.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
    utoipa::IntoParams,
)]
#[serde(
    default,
    expecting = "a dead-letter filter {\"app\", \"reason\", \"errcode\", …}"
)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Only this app.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Only this reason (`retries_exhausted`, `not_following`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Only this WeChat errcode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i64>,
    /// Only jobs of this template id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Only jobs of this campaign id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// Only letters that died at or after this instant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Only letters that died before this instant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Only letters whose job, raw message or WeChat message contains this text (any case).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Include letters already replayed (the default shows open letters only).
    pub include_replayed: bool,
    /// Only letters with an id up to this one (the snapshot a dry run answered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_id: Option<i64>,
}

impl DeadLetterQuery {
    /// Whether any key narrows the set (`include_replayed` widens it and `max_id` only pins a
    /// snapshot, so neither counts): an action on a query that does not narrow is an action on
    /// every letter, which must be asked for by name.
    pub fn narrows(&self) -> bool {
        self.app.is_some()
            || self.reason.is_some()
            || self.errcode.is_some()
            || self.template.is_some()
            || self.campaign.is_some()
            || self.since.is_some()
            || self.until.is_some()
            || self.text.as_deref().is_some_and(|t| !t.is_empty())
    }

    /// Pushes ` WHERE …` for this query onto `qb` (always a complete clause).
    pub fn push_where(&self, qb: &mut QueryBuilder<Postgres>) {
        self.push_where_leading(qb, None);
    }

    /// The indexed column a page walks, when the query pins one: `(sql, value)` of the first of
    /// errcode, template, campaign, reason, app that is set. Each has a `(column, id DESC)` index
    /// of open letters.
    fn lead(&self) -> Option<(&'static str, Lead)> {
        if let Some(e) = self.errcode {
            return Some(("errcode", Lead::Int(e)));
        }
        let text = [
            ("(job ->> 'template_id')", &self.template),
            ("(job ->> 'campaign_id')", &self.campaign),
            ("reason", &self.reason),
            ("app", &self.app),
        ];
        text.into_iter()
            .find_map(|(sql, v)| v.as_ref().map(|v| (sql, Lead::Text(v.clone()))))
    }

    /// Like [`push_where`](Self::push_where), but the `lead` column's equality is written as the
    /// range `[v, v]` (the same rows): the planner then keeps `lead` in the page's order and
    /// walks that column's index instead of scanning the newest-first index for matches.
    fn push_where_leading(&self, qb: &mut QueryBuilder<Postgres>, lead: Option<&'static str>) {
        let lead_is = |sql: &str| lead == Some(sql);
        qb.push(" WHERE TRUE");
        if let Some((sql, value)) = lead.and_then(|_| self.lead()) {
            for op in [" >= ", " <= "] {
                qb.push(" AND ").push(sql).push(op);
                match &value {
                    Lead::Int(v) => qb.push_bind(*v),
                    Lead::Text(v) => qb.push_bind(v.clone()),
                };
            }
        }
        if !self.include_replayed {
            qb.push(" AND replayed_at IS NULL");
        }
        if let Some(app) = self.app.as_ref().filter(|_| !lead_is("app")) {
            qb.push(" AND app = ").push_bind(app.clone());
        }
        if let Some(reason) = self.reason.as_ref().filter(|_| !lead_is("reason")) {
            qb.push(" AND reason = ").push_bind(reason.clone());
        }
        if let Some(errcode) = self.errcode.filter(|_| !lead_is("errcode")) {
            qb.push(" AND errcode = ").push_bind(errcode);
        }
        if let Some(template) = self
            .template
            .as_ref()
            .filter(|_| !lead_is("(job ->> 'template_id')"))
        {
            qb.push(" AND job ->> 'template_id' = ")
                .push_bind(template.clone());
        }
        if let Some(campaign) = self
            .campaign
            .as_ref()
            .filter(|_| !lead_is("(job ->> 'campaign_id')"))
        {
            qb.push(" AND job ->> 'campaign_id' = ")
                .push_bind(campaign.clone());
        }
        if let Some(since) = self.since {
            qb.push(" AND created_at >= ").push_bind(since);
        }
        if let Some(until) = self.until {
            qb.push(" AND created_at < ").push_bind(until);
        }
        if let Some(text) = self.text.as_deref().filter(|t| !t.is_empty()) {
            let pattern = format!("%{}%", like_escape(text));
            qb.push(" AND (errmsg ILIKE ")
                .push_bind(pattern.clone())
                .push(" OR job::text ILIKE ")
                .push_bind(pattern.clone())
                .push(" OR raw ILIKE ")
                .push_bind(pattern)
                .push(")");
        }
        if let Some(max_id) = self.max_id {
            qb.push(" AND id <= ").push_bind(max_id);
        }
    }
}

/// The value of a page's lead column.
enum Lead {
    Int(i64),
    Text(String),
}

/// Escapes `%`, `_` and `\` for a `LIKE` pattern.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

use super::store::COLUMNS;

/// One page of dead letters, newest first.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Page {
    /// The letters of this page.
    pub letters: Vec<DeadLetterRow>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next_after: Option<i64>,
}

/// The page of letters matching `q` with ids below `after` (all when `None`), newest first.
pub async fn page(
    pool: &PgPool,
    q: &DeadLetterQuery,
    after: Option<i64>,
    limit: u32,
) -> Result<Page, sqlx::Error> {
    let limit = limit.clamp(1, 1000) as i64;
    let mut qb = QueryBuilder::new(format!("SELECT {COLUMNS} FROM dead_letters"));
    let lead = q.lead().map(|(sql, _)| sql);
    q.push_where_leading(&mut qb, lead);
    if let Some(after) = after {
        qb.push(" AND id < ").push_bind(after);
    }
    // With the lead column pinned to one value, ordering by it first changes nothing in the
    // result and everything in the plan.
    match lead {
        Some(sql) => qb.push(format!(" ORDER BY {sql}, id DESC LIMIT ")),
        None => qb.push(" ORDER BY id DESC LIMIT "),
    };
    qb.push_bind(limit + 1);
    let mut letters: Vec<DeadLetterRow> = qb.build_query_as().fetch_all(pool).await?;
    let next_after = if letters.len() as i64 > limit {
        letters.truncate(limit as usize);
        letters.last().map(|l| l.id)
    } else {
        None
    };
    Ok(Page {
        letters,
        next_after,
    })
}

/// The newest `limit` letters matching `q`, a page at a time.
pub async fn newest(
    pool: &PgPool,
    q: &DeadLetterQuery,
    limit: u32,
) -> Result<Vec<DeadLetterRow>, sqlx::Error> {
    let mut out: Vec<DeadLetterRow> = Vec::new();
    let mut after = None;
    while out.len() < limit as usize {
        let want = (limit as usize - out.len()).min(1000) as u32;
        let page = page(pool, q, after, want).await?;
        out.extend(page.letters);
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(out)
}

/// How many letters match `q`, and the highest id among them (the snapshot to act on).
pub async fn count(pool: &PgPool, q: &DeadLetterQuery) -> Result<(i64, Option<i64>), sqlx::Error> {
    let mut qb = QueryBuilder::new("SELECT count(*), max(id) FROM dead_letters");
    q.push_where(&mut qb);
    qb.build_query_as().fetch_one(pool).await
}

/// Counts of the letters matching `q`, grouped three ways.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Groups {
    /// By reason, largest first.
    pub by_reason: Vec<GroupCount>,
    /// By WeChat errcode (`null` = not a WeChat refusal), largest first.
    pub by_errcode: Vec<GroupCount>,
    /// By hour of death (UTC, RFC 3339), oldest first.
    pub by_hour: Vec<GroupCount>,
}

/// One group and its size.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct GroupCount {
    /// The reason, the errcode or the hour.
    pub key: Option<String>,
    /// How many letters.
    pub count: i64,
}

/// Counts of the letters matching `q` by reason, by errcode and by hour.
pub async fn groups(pool: &PgPool, q: &DeadLetterQuery) -> Result<Groups, sqlx::Error> {
    let grouped = |key: &str, order: &str| {
        let mut qb = QueryBuilder::new(format!(
            "SELECT {key} AS key, count(*) AS count FROM dead_letters"
        ));
        q.push_where(&mut qb);
        qb.push(format!(" GROUP BY 1 ORDER BY {order} LIMIT 200"));
        qb
    };
    let by_reason = grouped("reason", "2 DESC, 1");
    let by_errcode = grouped("errcode::text", "2 DESC, 1");
    let by_hour = grouped(
        "to_char(date_trunc('hour', created_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24:00:00\"Z\"')",
        "1 DESC",
    );
    let mut out = Groups::default();
    for (mut qb, into) in [
        (by_reason, &mut out.by_reason),
        (by_errcode, &mut out.by_errcode),
        (by_hour, &mut out.by_hour),
    ] {
        let rows: Vec<(Option<String>, i64)> = qb.build_query_as().fetch_all(pool).await?;
        *into = rows
            .into_iter()
            .map(|(key, count)| GroupCount { key, count })
            .collect();
    }
    out.by_hour.reverse();
    Ok(out)
}

/// Deletes the letters matching `q`; returns how many.
pub async fn purge(pool: &PgPool, q: &DeadLetterQuery) -> Result<u64, sqlx::Error> {
    let mut qb = QueryBuilder::new("DELETE FROM dead_letters");
    q.push_where(&mut qb);
    Ok(qb.build().execute(pool).await?.rows_affected())
}

/// The ids of the first `n` letters matching `q`, newest first (what a dry run shows).
pub async fn first_ids(
    pool: &PgPool,
    q: &DeadLetterQuery,
    n: u32,
) -> Result<Vec<i64>, sqlx::Error> {
    Ok(page(pool, q, None, n)
        .await?
        .letters
        .into_iter()
        .map(|l| l.id)
        .collect())
}

/// Deletes the letters with these ids; returns how many.
pub async fn purge_ids(pool: &PgPool, ids: &[i64]) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM dead_letters WHERE id = ANY($1)")
        .bind(ids)
        .execute(pool)
        .await?
        .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(q: &DeadLetterQuery) -> String {
        let mut qb = QueryBuilder::new("SELECT 1 FROM dead_letters");
        q.push_where(&mut qb);
        qb.into_string()
    }

    #[test]
    fn an_empty_query_means_every_open_letter() {
        assert_eq!(
            sql(&DeadLetterQuery::default()),
            "SELECT 1 FROM dead_letters WHERE TRUE AND replayed_at IS NULL"
        );
    }

    #[test]
    fn every_field_narrows_with_a_bound_value() {
        let q = DeadLetterQuery {
            app: Some("a".into()),
            errcode: Some(43101),
            text: Some("50%_off".into()),
            max_id: Some(9),
            include_replayed: true,
            ..Default::default()
        };
        let s = sql(&q);
        assert!(!s.contains("replayed_at"));
        assert!(s.contains("app = $1") && s.contains("errcode = $2"), "{s}");
        assert!(s.contains("id <= $6"), "{s}");
        assert!(!s.contains("50%"), "values are bound, never spliced: {s}");
        assert_eq!(like_escape("50%_off\\"), "50\\%\\_off\\\\");
    }

    #[test]
    fn only_narrowing_keys_make_a_filter() {
        assert!(!DeadLetterQuery::default().narrows());
        let wide = DeadLetterQuery {
            include_replayed: true,
            max_id: Some(9),
            text: Some(String::new()),
            ..Default::default()
        };
        assert!(!wide.narrows());
        let q = DeadLetterQuery {
            errcode: Some(43101),
            ..Default::default()
        };
        assert!(q.narrows());
    }
}
