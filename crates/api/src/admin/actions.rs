//! Replay and purge of dead letters, by ids or by filter, with a dry run: the one place the
//! admin API and the console both call, so both decide alike and both write the audit row.

use crate::admin::AdminState;
use crate::admin::auth::Principal;
use crate::admin::error::AdminError;
use crate::admin::store::{self, AuditEntry};
use crate::admin::strict;
use wxnotify_services::dlq::{self, DeadLetterQuery, query};

/// At most this many ids in one request.
pub const MAX_IDS: usize = 10_000;

/// How many ids a report lists of those it touched (or, in a dry run, would touch).
pub const FIRST_IDS: usize = 20;

/// Which dead letters an action is for: ids, or everything a filter shows. Every key is known
/// (an unknown one, here or in `filter`, is a 400 naming it), and an empty filter acts only
/// with `"all": true` spelled out.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "an action {\"ids\": […]} or {\"filter\": {…}}, with \"dry_run\" and \"all\" as needed"
)]
pub struct ActionRequest {
    /// These dead letters (give `ids` or `filter`, not both).
    #[serde(default)]
    pub ids: Option<Vec<i64>>,
    /// Every dead letter this filter lists. An empty filter (`{}`, or only `include_replayed`
    /// or `max_id`) needs `"all": true`. Put the `max_id` a dry run answered here to act on
    /// exactly the letters it counted.
    #[serde(default, deserialize_with = "strict_filter")]
    pub filter: Option<DeadLetterQuery>,
    /// Act on every open letter (with an empty or no `filter`): the one way to say "all".
    #[serde(default)]
    pub all: bool,
    /// Only count and list the first ids; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Replay `outcome_unknown` letters too. Some of them may have reached the person already
    /// (WeChat may have accepted the send whose answer was lost), and a replay sends those a
    /// second time; without this they are left out and counted in `outcome_unknown_skipped`.
    #[serde(default)]
    pub include_outcome_unknown: bool,
}

/// Deserializes a filter whose keys must all be fields of [`DeadLetterQuery`].
fn strict_filter<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<DeadLetterQuery>, D::Error> {
    use serde::Deserialize;
    use serde::de::Error;
    let Some(map) = Option::<serde_json::Map<String, serde_json::Value>>::deserialize(d)? else {
        return Ok(None);
    };
    strict::check_keys(
        "filter key",
        map.keys().map(String::as_str),
        strict::fields_of::<DeadLetterQuery>(),
    )
    .map_err(D::Error::custom)?;
    serde_json::from_value(serde_json::Value::Object(map))
        .map(Some)
        .map_err(D::Error::custom)
}

/// A resolved target.
#[derive(Debug, Clone)]
pub enum Target {
    /// By ids.
    Ids(Vec<i64>),
    /// By filter.
    Filter(DeadLetterQuery),
}

impl Target {
    /// The target of a filter: 400 when the filter narrows nothing and `all` was not said.
    pub fn filter(q: DeadLetterQuery, all: bool) -> Result<Target, AdminError> {
        if !all && !q.narrows() {
            return Err(AdminError::BadRequest(
                "the filter is empty, so this would act on every open dead letter: add \"all\": true to mean that, or a filter key (app, reason, errcode, template, campaign, since, until, text)".into(),
            ));
        }
        Ok(Target::Filter(q))
    }
}

impl ActionRequest {
    /// The target, or 400 when it is not exactly one of ids and filter (or `all`).
    pub fn target(self) -> Result<(Target, bool), AdminError> {
        match (self.ids, self.filter, self.all) {
            (Some(_), _, true) => Err(AdminError::BadRequest(
                "`all` acts by filter; give it without `ids`".into(),
            )),
            (Some(ids), None, false) if ids.is_empty() => {
                Err(AdminError::BadRequest("`ids` is empty".into()))
            }
            (Some(ids), None, false) if ids.len() > MAX_IDS => Err(AdminError::BadRequest(format!(
                "at most {MAX_IDS} ids at once; act by filter for more"
            ))),
            (Some(ids), None, false) => Ok((Target::Ids(ids), self.dry_run)),
            (None, Some(f), all) => Ok((Target::filter(f, all)?, self.dry_run)),
            (None, None, true) => Ok((
                Target::filter(DeadLetterQuery::default(), true)?,
                self.dry_run,
            )),
            _ => Err(AdminError::BadRequest(
                "give either `ids` (a list of dead-letter ids) or `filter` (an object of filter keys; {} with \"all\": true = every open letter)".into(),
            )),
        }
    }
}

/// One letter that was not acted on, and why.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct NotDone {
    /// The dead letter's id.
    pub id: i64,
    /// Why.
    pub why: String,
}

/// What an action did (or, in a dry run, would do).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ActionReport {
    /// `replay` or `purge`.
    pub action: &'static str,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Letters the ids or the filter matched.
    pub matched: i64,
    /// Letters replayed or purged (in a dry run: that would be).
    pub affected: i64,
    /// The ids of the first (at most 20) of those letters, in the order they are acted on.
    pub first_ids: Vec<i64>,
    /// Letters that cannot be replayed (malformed, already replayed), with why (first 100).
    pub skipped: Vec<NotDone>,
    /// Letters whose publish failed, with the error (first 100).
    pub failed: Vec<NotDone>,
    /// For a filter: the highest id matched. Send it back as `filter.max_id` to act on exactly
    /// these letters.
    pub max_id: Option<i64>,
    /// The letters acted on (in a dry run: that would be), at most 1,000, with job id and
    /// reason (empty for a purge).
    pub letters: Vec<dlq::Touched>,
    /// `outcome_unknown` letters left out of a replay because `include_outcome_unknown` was not
    /// given (they are in `skipped` too).
    pub outcome_unknown_skipped: u64,
    /// `outcome_unknown` letters replayed (or that would be) because it was given.
    pub outcome_unknown_included: u64,
    /// Said whenever `outcome_unknown` letters are involved: some of them may have reached the
    /// person already.
    pub warning: Option<String>,
}

fn not_done(v: Vec<(i64, String)>) -> Vec<NotDone> {
    v.into_iter()
        .take(100)
        .map(|(id, why)| NotDone { id, why })
        .collect()
}

/// Pins a filter to the letters it matches now.
async fn pin(
    state: &AdminState,
    mut f: DeadLetterQuery,
) -> Result<(DeadLetterQuery, i64), AdminError> {
    let (matched, max_id) = query::count(state.pool(), &f).await?;
    if f.max_id.is_none() {
        // Nothing matches: pin below every id, so the action touches nothing.
        f.max_id = Some(max_id.unwrap_or(0));
    }
    Ok((f, matched))
}

/// Replays the target (publishes the jobs again with their ids); audited.
pub async fn replay(
    state: &AdminState,
    who: &Principal,
    target: Target,
    options: dlq::ReplayOptions,
) -> Result<ActionReport, AdminError> {
    let dry_run = options.dry_run;
    if !dry_run {
        who.require_admin()?;
    }
    let settings = state.settings();
    let (report, matched, filter, ids) = match target {
        Target::Ids(ids) => {
            let rows = dlq::by_ids(state.pool(), &ids).await?;
            let matched = rows.len() as i64;
            let report = dlq::replay(settings, state.pool(), rows, options)
                .await
                .map_err(AdminError::Unavailable)?;
            (report, matched, None, Some(ids))
        }
        Target::Filter(f) => {
            let (f, matched) = pin(state, f).await?;
            let report = dlq::replay_query(settings, state.pool(), &f, options)
                .await
                .map_err(AdminError::Unavailable)?;
            (report, matched, Some(f), None)
        }
    };
    let warning = report.outcome_unknown_warning();
    let out = ActionReport {
        action: "replay",
        dry_run,
        matched,
        affected: report.replayed.len() as i64,
        first_ids: report.replayed.iter().take(FIRST_IDS).copied().collect(),
        skipped: not_done(report.skipped),
        failed: not_done(report.failed),
        max_id: filter.as_ref().and_then(|f| f.max_id),
        letters: report.letters,
        outcome_unknown_skipped: report.outcome_unknown_skipped,
        outcome_unknown_included: report.outcome_unknown_included,
        warning,
    };
    store::audit(
        state.pool(),
        who,
        &AuditEntry {
            action: "replay",
            filter: filter.as_ref(),
            ids: ids.as_deref(),
            affected: out.affected,
            dry_run,
            detail: serde_json::json!({
                "matched": out.matched,
                "skipped": out.skipped.len(),
                "failed": out.failed.len(),
                "outcome_unknown_included": out.outcome_unknown_included,
            }),
        },
    )
    .await?;
    Ok(out)
}

/// Deletes the target's dead letters; audited.
pub async fn purge(
    state: &AdminState,
    who: &Principal,
    target: Target,
    dry_run: bool,
) -> Result<ActionReport, AdminError> {
    if !dry_run {
        who.require_admin()?;
    }
    let pool = state.pool();
    let (matched, affected, first_ids, filter, ids) = match target {
        Target::Ids(ids) => {
            let found: Vec<i64> = dlq::by_ids(pool, &ids)
                .await?
                .iter()
                .map(|r| r.id)
                .collect();
            let matched = found.len() as i64;
            let affected = if dry_run {
                matched
            } else {
                query::purge_ids(pool, &ids).await? as i64
            };
            let first = found.into_iter().take(FIRST_IDS).collect();
            (matched, affected, first, None, Some(ids))
        }
        Target::Filter(f) => {
            let (f, matched) = pin(state, f).await?;
            let first = query::first_ids(pool, &f, FIRST_IDS as u32).await?;
            let affected = if dry_run {
                matched
            } else {
                query::purge(pool, &f).await? as i64
            };
            (matched, affected, first, Some(f), None)
        }
    };
    let out = ActionReport {
        action: "purge",
        dry_run,
        matched,
        affected,
        first_ids,
        skipped: Vec::new(),
        failed: Vec::new(),
        max_id: filter.as_ref().and_then(|f| f.max_id),
        letters: Vec::new(),
        outcome_unknown_skipped: 0,
        outcome_unknown_included: 0,
        warning: None,
    };
    store::audit(
        pool,
        who,
        &AuditEntry {
            action: "purge",
            filter: filter.as_ref(),
            ids: ids.as_deref(),
            affected,
            dry_run,
            detail: serde_json::json!({ "matched": matched }),
        },
    )
    .await?;
    Ok(out)
}
