//! Checks a template message before it is sent: the one module every entry point calls
//! (`wxnotify enqueue`, the worker just before the send, and — one line each — the HTTP producer
//! API and campaign creation and preview).
//!
//! ```ignore
//! // With a loaded catalog (the worker keeps one in memory):
//! let checked = templates::check_job(&catalog, &job)?;           // Err(Refusal) names the keys
//! // From a request handler, loading the app's catalog from Postgres:
//! let checked = templates::check_job_in(&pool, &job).await??;
//! // A campaign's template and data, before any job exists:
//! let checked = templates::check_message(&catalog, &app, &template_id, &data, truncate)?;
//! ```
//!
//! What is checked, in order (docs/wechat.md §8):
//!
//! 1. the template is not one WeChat listed and then stopped listing
//!    ([`Problem::DeletedTemplate`]). A template the catalog never saw is not refused: WeChat's
//!    list lacks category templates, so WeChat's answer decides ([`Warning::NotInCatalog`];
//!    [`Warning::CatalogNotSynced`] when the app was never synced);
//! 2. for a template the catalog holds (listed by WeChat, or registered by hand with
//!    `wxnotify templates add`), the data's keys are exactly its placeholders: missing and
//!    unknown keys are named; `first` and `remark`, which WeChat drops since 2023-05-04, are
//!    not refused but reported as [`Warning::Ignored`];
//! 3. no line breaks in values (WeChat shows none);
//! 4. each category key's type rules, as WeChat's value table states them
//!    ([`super::types`]): a confirmed rule (the length limits, no Chinese in
//!    `character_string`, only Chinese in `phrase`) refuses, a format rule warns. With
//!    `truncate`, an over-long `thing`, `character_string` or `phrase` is shortened instead
//!    ([`Checked::truncations`] say what was cut, [`Checked::data`] is the data to send); other
//!    values are never cut, since a cut number, amount or name would say something else.

use sqlx::PgPool;

use super::catalog::Catalog;
pub use super::findings::{Checked, Problem, Refusal, Truncation, Warning};
use super::types::{self, FieldType};
use wxnotify_core::domain::template::FieldKey;
use wxnotify_core::domain::{AppName, Job, TemplateData, TemplateId};

/// The keys WeChat dropped from template messages on 2023-05-04: accepted and ignored.
pub const RETIRED_KEYS: [&str; 2] = ["first", "remark"];

/// Values of historical (non-category) templates longer than this are folded by WeChat.
pub const FOLDED_AFTER: usize = 20;

/// Checks `job`'s OA template message against `catalog`: see the module doc. `job.truncate`
/// allows shortening. A job with only a subscribe message has nothing to check here.
pub fn check_job(catalog: &Catalog, job: &Job) -> Result<Checked, Refusal> {
    match job.oa_message() {
        Some((template_id, data)) => {
            check_message(catalog, &job.app, template_id, data, job.truncate)
        }
        None => Ok(Checked::default()),
    }
}

/// Checks `job` against its app's catalog as stored in Postgres (for request handlers that keep
/// no catalog in memory). The outer error is Postgres'.
pub async fn check_job_in(
    pool: &PgPool,
    job: &Job,
) -> Result<Result<Checked, Refusal>, sqlx::Error> {
    let catalog = Catalog::load_app(pool, &job.app).await?;
    Ok(check_job(&catalog, job))
}

/// Checks a template message of `app` (a job, or a campaign's template and data before any job
/// exists): see the module doc.
pub fn check_message(
    catalog: &Catalog,
    app: &AppName,
    template_id: &TemplateId,
    data: &TemplateData,
    truncate: bool,
) -> Result<Checked, Refusal> {
    let mut problems = Vec::new();
    let mut checked = Checked::default();
    let refuse = |problems| Refusal {
        app: app.to_string(),
        template_id: template_id.to_string(),
        problems,
    };
    let app_catalog = catalog.app(app);
    let placeholders: Option<&[String]> =
        match app_catalog.and_then(|c| c.templates.get(template_id.as_str())) {
            Some(t) => match t.removed_at {
                Some(removed_at) => {
                    return Err(refuse(vec![Problem::DeletedTemplate { removed_at }]));
                }
                None => Some(&t.placeholders),
            },
            // Never listed: WeChat's list lacks category templates, so WeChat decides.
            None if app_catalog.is_some_and(|c| c.synced_at.is_some()) => {
                checked.warnings.push(Warning::NotInCatalog);
                None
            }
            None => {
                checked.warnings.push(Warning::CatalogNotSynced);
                None
            }
        };
    if let Some(placeholders) = placeholders {
        let keys: Vec<&str> = data.keys().map(FieldKey::as_str).collect();
        keys_match(placeholders, &keys, &mut problems, &mut checked.warnings);
    }
    let mut shortened: Vec<(FieldKey, String)> = Vec::new();
    for (key, value) in data.iter() {
        match check_value(key.as_str(), value, truncate) {
            ValueCheck::Fine => {}
            ValueCheck::Warn(w) => checked.warnings.push(w),
            ValueCheck::Shorten(t, short) => {
                checked.truncations.push(t);
                shortened.push((key.clone(), short));
            }
            ValueCheck::Refuse(p) => problems.push(p),
        }
    }
    if !problems.is_empty() {
        return Err(refuse(problems));
    }
    if !shortened.is_empty() {
        let mut fields: std::collections::BTreeMap<FieldKey, String> = data
            .iter()
            .map(|(k, v)| (k.clone(), v.to_owned()))
            .collect();
        fields.extend(shortened);
        checked.data = Some(TemplateData::new(fields).expect("shortened values stay valid"));
    }
    Ok(checked)
}

/// What the check of one value found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueCheck {
    /// Nothing to say.
    Fine,
    /// Sendable, with a warning.
    Warn(Warning),
    /// Too long, shortened (with `truncate`) to the value given.
    Shorten(Truncation, String),
    /// Refused.
    Refuse(Problem),
}

/// Checks the value of one key (steps 3 and 4 of the module doc): the decision
/// [`check_message`] makes for each value, also used alone for a campaign's rows.
pub fn check_value(key: &str, value: &str, truncate: bool) -> ValueCheck {
    if value.contains(['\n', '\r', '\u{2028}', '\u{2029}']) {
        return ValueCheck::Refuse(Problem::LineBreak { key: key.into() });
    }
    let Some(kind) = FieldType::of_key(key) else {
        let chars = value.chars().count();
        if chars > FOLDED_AFTER && !RETIRED_KEYS.contains(&key) {
            return ValueCheck::Warn(Warning::Folded {
                key: key.into(),
                chars,
            });
        }
        return ValueCheck::Fine;
    };
    let Some(broken) = types::check(kind, value) else {
        return ValueCheck::Fine;
    };
    match (broken.confirmed, broken.shortened) {
        (false, _) => ValueCheck::Warn(Warning::Unconfirmed {
            key: key.into(),
            rule: broken.rule,
        }),
        (true, Some(short)) if truncate => ValueCheck::Shorten(
            Truncation {
                key: key.into(),
                from: value.chars().count(),
                to: short.chars().count(),
            },
            short,
        ),
        (true, short) => ValueCheck::Refuse(Problem::TypeRule {
            key: key.into(),
            rule: broken.rule,
            truncatable: short.is_some(),
        }),
    }
}

/// The keys of `template_id` of `app` against `keys` (step 2 of the module doc): missing and
/// unknown keys as problems. `Ok` also when the catalog does not hold the template (WeChat
/// decides); a deleted template is [`Problem::DeletedTemplate`].
pub fn check_keys(
    catalog: &Catalog,
    app: &AppName,
    template_id: &TemplateId,
    keys: &[&str],
) -> Result<(), Vec<Problem>> {
    let Some(t) = catalog
        .app(app)
        .and_then(|c| c.templates.get(template_id.as_str()))
    else {
        return Ok(());
    };
    if let Some(removed_at) = t.removed_at {
        return Err(vec![Problem::DeletedTemplate { removed_at }]);
    }
    let mut problems = Vec::new();
    keys_match(&t.placeholders, keys, &mut problems, &mut Vec::new());
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Missing and unknown keys; retired keys the template does not use become warnings.
fn keys_match(
    placeholders: &[String],
    keys: &[&str],
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Warning>,
) {
    let missing: Vec<String> = placeholders
        .iter()
        .filter(|p| !keys.contains(&p.as_str()))
        .cloned()
        .collect();
    let mut unknown = Vec::new();
    for &key in keys {
        if placeholders.iter().any(|p| p == key) {
            continue;
        }
        if RETIRED_KEYS.contains(&key) {
            warnings.push(Warning::Ignored { key: key.into() });
        } else {
            unknown.push(key.to_owned());
        }
    }
    if !missing.is_empty() {
        problems.push(Problem::MissingKeys { keys: missing });
    }
    if !unknown.is_empty() {
        problems.push(Problem::UnknownKeys { keys: unknown });
    }
}

#[cfg(test)]
mod tests;
