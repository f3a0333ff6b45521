//! Each recipient's data checked against the template, at create (a row that breaks it is a bad
//! line, skipped and reported with its line number) and at preview (the rows of the snapshot
//! against the catalog as it is now): a 48-character `thing1` is refused there, not after the
//! start as `payload_rejected`.
//!
//! A row's data is the campaign's shared data with the row's own fields over it: exactly the
//! data its job will carry. The shared values are checked once, with the campaign; each row's
//! own values are checked here by the template check's own rules (`check_value`, and the keys
//! with `check_keys`, once per set of own keys: a placeholder neither they nor the shared data
//! fill is a missing key). Cheap enough for a million rows. A row without fields of its own carries the shared data alone, which the
//! campaign's own template check covers (it lists the keys the shared data lacks). With the campaign's `truncate`, a value too long for its key type
//! is shortened as a job's would be, and is no problem.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

use super::audience::{BadLine, BadLines, Item};
use crate::templates::{Catalog, Problem, Refusal, ValueCheck, check_keys, check_value};
use wxnotify_core::domain::{AppName, FieldKey, TemplateData, TemplateId};

/// The check of one campaign's rows.
pub struct RowCheck {
    catalog: Catalog,
    app: AppName,
    template_id: TemplateId,
    /// The keys the shared data fills (its values were checked with the campaign).
    shared_keys: Vec<String>,
    truncate: bool,
    /// The key check of each set of own keys seen (rows of one file share a few).
    key_sets: HashMap<Vec<String>, Result<(), String>>,
    /// The last row's set of own keys and its check.
    last_key_set: Option<(Vec<String>, Result<(), String>)>,
}

impl RowCheck {
    /// The check of rows of `template_id` of `app` with the shared data `shared`, against the
    /// app's catalog in Postgres now.
    pub async fn load(
        pool: &PgPool,
        app: &AppName,
        template_id: &TemplateId,
        shared: &Value,
        truncate: bool,
    ) -> Result<Self, sqlx::Error> {
        let catalog = Catalog::load_app(pool, app).await?;
        let shared_keys = match shared {
            Value::Object(m) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        Ok(RowCheck {
            catalog,
            app: app.clone(),
            template_id: template_id.clone(),
            shared_keys,
            truncate,
            key_sets: HashMap::new(),
            last_key_set: None,
        })
    }

    /// Why the row whose own fields are `own` would be refused, or `Ok` (also for a row
    /// without fields of its own: see the module doc).
    pub fn check(&mut self, own: Option<&Map<String, Value>>) -> Result<(), String> {
        let Some(own) = own.filter(|o| !o.is_empty()) else {
            return Ok(());
        };
        let mut fields = BTreeMap::new();
        for (key, value) in own {
            let key = FieldKey::parse(key.as_str())
                .map_err(|e| format!("the row's template data is not valid: {e}"))?;
            let text = match value {
                Value::String(t) => t,
                Value::Object(o) => match o.get("value") {
                    Some(Value::String(t)) if o.len() == 1 => t,
                    _ => return Err(format!("data.{key}: give a string or {{\"value\": \"…\"}}")),
                },
                _ => return Err(format!("data.{key}: give a string or {{\"value\": \"…\"}}")),
            };
            fields.insert(key, text.clone());
        }
        // The domain's own rules of values (not empty, not too long, no control character).
        let data = TemplateData::new(fields)
            .map_err(|e| format!("the row's template data is not valid: {e}"))?;
        self.keys(&data)?;
        let problems: Vec<Problem> = data
            .iter()
            .filter_map(|(k, v)| match check_value(k.as_str(), v, self.truncate) {
                ValueCheck::Refuse(p) => Some(p),
                _ => None,
            })
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        Err(self.refusal(problems))
    }

    /// The key check of the row's own keys with the shared ones, once per set of own keys.
    fn keys(&mut self, data: &TemplateData) -> Result<(), String> {
        // Most rows have the keys of the row before: no allocation for them.
        if let Some((keys, known)) = &self.last_key_set
            && data
                .keys()
                .map(FieldKey::as_str)
                .eq(keys.iter().map(String::as_str))
        {
            return known.clone();
        }
        let own: Vec<String> = data.keys().map(|k| k.as_str().to_owned()).collect();
        if let Some(known) = self.key_sets.get(&own).cloned() {
            self.last_key_set = Some((own, known.clone()));
            return known;
        }
        let mut all: Vec<&str> = own.iter().map(String::as_str).collect();
        all.extend(
            self.shared_keys
                .iter()
                .map(String::as_str)
                .filter(|k| !own.iter().any(|o| o == k)),
        );
        let answer = match check_keys(&self.catalog, &self.app, &self.template_id, &all) {
            Ok(()) => Ok(()),
            // The template itself: the campaign's own check says so, once.
            Err(problems) if matches!(problems[..], [Problem::DeletedTemplate { .. }]) => Ok(()),
            Err(problems) => Err(self.refusal(problems)),
        };
        self.key_sets.insert(own.clone(), answer.clone());
        self.last_key_set = Some((own, answer.clone()));
        answer
    }

    /// The refusal's text, with the way out when truncation would fix it.
    fn refusal(&self, problems: Vec<Problem>) -> String {
        let truncatable = problems.iter().any(|p| {
            matches!(
                p,
                Problem::TypeRule {
                    truncatable: true,
                    ..
                }
            )
        });
        let mut s = Refusal {
            app: self.app.to_string(),
            template_id: self.template_id.to_string(),
            problems,
        }
        .to_string();
        if truncatable {
            s.push_str(
                " (a campaign created with --truncate, or \"truncate\": true in the API, shortens such values)",
            );
        }
        s
    }

    /// `items` with every entry whose data breaks the template turned into a bad line.
    pub fn items(
        mut self,
        items: impl Iterator<Item = Item> + Send + 'static,
    ) -> impl Iterator<Item = Item> + Send + 'static {
        items.map(move |item| {
            let entry = item?;
            match self.check(entry.data.as_ref()) {
                Ok(()) => Ok(entry),
                Err(error) => Err(BadLine {
                    line: entry.line,
                    error,
                }),
            }
        })
    }
}

/// The rows of campaign `id`'s snapshot (reachable ones with fields of their own: they become
/// jobs) that break the template as `check` sees it, by their line in the recipients file or
/// list.
pub async fn bad_rows(
    pool: &PgPool,
    id: Uuid,
    check: &mut RowCheck,
) -> Result<BadLines, sqlx::Error> {
    use futures::TryStreamExt;
    let mut bad = BadLines::default();
    let mut rows = sqlx::query_as::<_, (i64, Option<Value>)>(
        "SELECT line, data FROM campaign_recipients
         WHERE campaign_id = $1 AND unreachable IS NULL AND data IS NOT NULL
         ORDER BY send_seq",
    )
    .bind(id)
    .fetch(pool);
    while let Some((line, data)) = rows.try_next().await? {
        let own = match &data {
            Some(Value::Object(m)) => Some(m),
            _ => None,
        };
        if let Err(error) = check.check(own) {
            bad.push(BadLine {
                line: line.max(0) as u64,
                error,
            });
        }
    }
    Ok(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(truncate: bool) -> RowCheck {
        RowCheck {
            catalog: Catalog::default(),
            app: AppName::default_app(),
            template_id: TemplateId::parse("TPL").unwrap(),
            shared_keys: vec!["thing1".into(), "time2".into()],
            truncate,
            key_sets: HashMap::new(),
            last_key_set: None,
        }
    }

    fn own(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_rows_own_values_are_checked_by_the_template_rules() {
        let mut c = check(false);
        assert_eq!(c.check(None), Ok(()));
        assert_eq!(c.check(Some(&own(r#"{"thing1": "Order 1"}"#))), Ok(()));
        let long = own(r#"{"thing1": "Forty-eight characters of a thing1 value; too lo"}"#);
        let e = c.check(Some(&long)).unwrap_err();
        assert!(e.contains("thing1") && e.contains("--truncate"), "{e}");
        assert_eq!(check(true).check(Some(&long)), Ok(()));
        let e = c.check(Some(&own(r#"{"thing1": ""}"#))).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = c.check(Some(&own(r#"{"thing1": 5}"#))).unwrap_err();
        assert!(e.contains("string"), "{e}");
    }

    #[test]
    fn a_hundred_thousand_rows_take_little_time() {
        let mut c = check(false);
        let row = own(r#"{"thing1": "yyyyyyyyyyyyyyyyyyyy"}"#);
        let t = std::time::Instant::now();
        for _ in 0..100_000 {
            c.check(Some(&row)).unwrap();
        }
        // About 0.1 s in a debug build on an idle machine; the bound leaves room for a busy one.
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t.elapsed()
        );
    }
}
