//! Each recipient's data checked against the template, at create (a row that breaks it is a bad
//! line, skipped and reported with its line number) and at preview (the rows of the snapshot
//! against the catalog as it is now): a 48-character `thing1` is refused there, not after the
//! start as `payload_rejected`.
//!
//! A row's data is the campaign's shared data with the row's own fields over it: exactly the
//! data its job will carry, so every problem counts, missing keys too. A row without fields of
//! its own carries the shared data alone, which the campaign's own template check covers (it
//! lists the keys the shared data lacks). With the campaign's `truncate`, a value too long for its key type
//! is shortened as a job's would be, and is no problem.

use serde_json::{Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

use super::audience::{BadLine, BadLines, Item};
use crate::templates::{Catalog, check_message};
use wxnotify_core::domain::{AppName, TemplateData, TemplateId};

/// The check of one campaign's rows.
pub struct RowCheck {
    catalog: Catalog,
    app: AppName,
    template_id: TemplateId,
    shared: Map<String, Value>,
    truncate: bool,
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
        Ok(RowCheck {
            catalog,
            app: app.clone(),
            template_id: template_id.clone(),
            shared: match shared {
                Value::Object(m) => m.clone(),
                _ => Map::new(),
            },
            truncate,
        })
    }

    /// Why the row whose own fields are `own` would be refused, or `Ok` (also for a row
    /// without fields of its own: see the module doc).
    pub fn check(&self, own: Option<&Map<String, Value>>) -> Result<(), String> {
        let Some(own) = own.filter(|o| !o.is_empty()) else {
            return Ok(());
        };
        let mut data = self.shared.clone();
        data.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        let data: TemplateData = serde_json::from_value(Value::Object(data))
            .map_err(|e| format!("the row's template data is not valid: {e}"))?;
        check_message(
            &self.catalog,
            &self.app,
            &self.template_id,
            &data,
            self.truncate,
        )
        .map(|_| ())
        .map_err(|refusal| {
            let mut s = refusal.to_string();
            if refusal.problems.iter().any(|p| {
                matches!(
                    p,
                    crate::templates::Problem::TypeRule {
                        truncatable: true,
                        ..
                    }
                )
            }) {
                s.push_str(
                    " (a campaign created with --truncate, or \"truncate\": true in the API, shortens such values)",
                );
            }
            s
        })
    }

    /// `items` with every entry whose data breaks the template turned into a bad line.
    pub fn items(
        self,
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
pub async fn bad_rows(pool: &PgPool, id: Uuid, check: &RowCheck) -> Result<BadLines, sqlx::Error> {
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
