//! Templates registered by hand: the category templates WeChat's API does not list, typed in by
//! an operator (`wxnotify templates add`, `POST /admin/api/templates`, the console) so that the
//! checks before sending apply to them (keys exactly the placeholders, value rules).
//!
//! One function each for adding and removing, shared by the command, the admin API and the
//! console. A manual template never overrides what WeChat lists: adding an id WeChat lists is
//! refused ([`ManualError::Listed`]), and a later listing of a manual template's id turns it
//! into `api` (see `catalog::store`).

use sqlx::PgPool;

use super::catalog::CatalogTemplate;
use super::catalog::TemplateSource;
use wxnotify_core::domain::template::MAX_FIELDS;
use wxnotify_core::domain::{AppName, FieldKey, TemplateId};
use wxnotify_core::wechat::client::template_keys;

/// The longest content accepted, in characters (WeChat's contents are a few lines).
pub const MAX_CONTENT_CHARS: usize = 2000;
/// The longest title accepted, in characters.
pub const MAX_TITLE_CHARS: usize = 100;

/// A template to register, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualTemplate {
    /// The template id.
    pub template_id: TemplateId,
    /// Its title (may be empty).
    pub title: String,
    /// Its content, as the OA's admin page shows it.
    pub content: String,
    /// The `{{key.DATA}}` names of the content, in order.
    pub placeholders: Vec<String>,
}

/// Why a manual template was not added or removed.
#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    /// The id, title or content is not acceptable; the message says how.
    #[error("{0}")]
    Invalid(String),
    /// No such app is registered.
    #[error("no app {0:?} is configured")]
    UnknownApp(String),
    /// WeChat lists this template: its listing is authoritative and cannot be replaced or
    /// removed by hand.
    #[error(
        "template {template_id} of app {app} is listed by WeChat (source api): its listing is authoritative; delete it on WeChat's side and run `wxnotify templates sync` instead"
    )]
    Listed {
        /// The app.
        app: String,
        /// The template.
        template_id: String,
    },
    /// No manual template with this id.
    #[error("app {app} has no manual template {template_id}")]
    NotFound {
        /// The app.
        app: String,
        /// The template.
        template_id: String,
    },
    /// Postgres failed.
    #[error("Postgres: {0}")]
    Db(#[from] sqlx::Error),
}

impl ManualTemplate {
    /// Checks an operator's input: a valid template id; a content of at most
    /// [`MAX_CONTENT_CHARS`] characters with at least one `{{key.DATA}}` placeholder, each key a
    /// valid data key, at most [`MAX_FIELDS`] of them; a one-line title of at most
    /// [`MAX_TITLE_CHARS`] characters.
    pub fn parse(template_id: &str, title: &str, content: &str) -> Result<Self, ManualError> {
        let invalid = |m: String| Err(ManualError::Invalid(m));
        let template_id = match TemplateId::parse(template_id.trim()) {
            Ok(id) => id,
            Err(e) => return invalid(format!("--id: {e}")),
        };
        let title = title.trim();
        if title.chars().count() > MAX_TITLE_CHARS || title.chars().any(char::is_control) {
            return invalid(format!(
                "--title: one line of at most {MAX_TITLE_CHARS} characters"
            ));
        }
        let content = content.trim();
        let chars = content.chars().count();
        if chars > MAX_CONTENT_CHARS {
            return invalid(format!(
                "--content has {chars} characters; at most {MAX_CONTENT_CHARS} are allowed"
            ));
        }
        let placeholders = template_keys(content);
        if placeholders.is_empty() {
            return invalid(
                "--content has no {{key.DATA}} placeholder: copy the template's content from the OA admin page, e.g. '订单：{{thing1.DATA}} 时间：{{time2.DATA}}'".into(),
            );
        }
        if placeholders.len() > MAX_FIELDS {
            return invalid(format!(
                "--content has {} placeholders; a message has at most {MAX_FIELDS} fields",
                placeholders.len()
            ));
        }
        if let Some(bad) = placeholders
            .iter()
            .find(|k| FieldKey::parse(k.as_str()).is_err())
        {
            return invalid(format!(
                "--content: {{{{{bad}.DATA}}}} is not a valid data key (letters, digits and _, e.g. thing1)"
            ));
        }
        Ok(ManualTemplate {
            template_id,
            title: title.to_owned(),
            content: content.to_owned(),
            placeholders,
        })
    }
}

/// What [`add`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The template as stored.
    pub template: CatalogTemplate,
    /// What it replaced: `None` (new), `Some(Manual)` (an earlier registration) or
    /// `Some(Api)` (a template WeChat listed before and no longer lists).
    pub replaced: Option<TemplateSource>,
}

/// Registers `t` as a manual template of `app` (or updates an earlier registration, or
/// replaces a removed listing). Refused when WeChat lists the id.
pub async fn add(pool: &PgPool, app: &AppName, t: &ManualTemplate) -> Result<Added, ManualError> {
    let mut tx = pool.begin().await?;
    let before: Option<(String, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
        "SELECT source, removed_at FROM templates WHERE app = $1 AND template_id = $2 FOR UPDATE",
    )
    .bind(app.as_str())
    .bind(t.template_id.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let replaced = match before {
        None => None,
        Some((source, _)) if source == "manual" => Some(TemplateSource::Manual),
        Some((_, Some(_))) => Some(TemplateSource::Api),
        Some((_, None)) => {
            return Err(ManualError::Listed {
                app: app.to_string(),
                template_id: t.template_id.to_string(),
            });
        }
    };
    let written = sqlx::query(
        "INSERT INTO templates (app, template_id, title, content, placeholders, source, removed_at)
         VALUES ($1, $2, $3, $4, $5, 'manual', NULL)
         ON CONFLICT (app, template_id) DO UPDATE
         SET title = EXCLUDED.title, content = EXCLUDED.content,
             placeholders = EXCLUDED.placeholders, source = 'manual', removed_at = NULL,
             synced_at = now()",
    )
    .bind(app.as_str())
    .bind(t.template_id.as_str())
    .bind(&t.title)
    .bind(&t.content)
    .bind(&t.placeholders)
    .execute(&mut *tx)
    .await;
    match written {
        Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
            return Err(ManualError::UnknownApp(app.to_string()));
        }
        other => other?,
    };
    tx.commit().await?;
    Ok(Added {
        template: CatalogTemplate {
            template_id: t.template_id.to_string(),
            title: t.title.clone(),
            content: t.content.clone(),
            placeholders: t.placeholders.clone(),
            source: TemplateSource::Manual,
            removed_at: None,
        },
        replaced,
    })
}

/// Removes the manual template `template_id` of `app`: jobs naming it are then sent unchecked
/// (WeChat decides). A template WeChat lists cannot be removed by hand.
pub async fn remove(
    pool: &PgPool,
    app: &AppName,
    template_id: &str,
) -> Result<CatalogTemplate, ManualError> {
    let deleted: Option<(String, String, Vec<String>)> = sqlx::query_as(
        "DELETE FROM templates WHERE app = $1 AND template_id = $2 AND source = 'manual'
         RETURNING title, content, placeholders",
    )
    .bind(app.as_str())
    .bind(template_id)
    .fetch_optional(pool)
    .await?;
    if let Some((title, content, placeholders)) = deleted {
        return Ok(CatalogTemplate {
            template_id: template_id.to_owned(),
            title,
            content,
            placeholders,
            source: TemplateSource::Manual,
            removed_at: None,
        });
    }
    let listed: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM templates WHERE app = $1 AND template_id = $2)",
    )
    .bind(app.as_str())
    .bind(template_id)
    .fetch_one(pool)
    .await?;
    let (app, template_id) = (app.to_string(), template_id.to_owned());
    Err(if listed {
        ManualError::Listed { app, template_id }
    } else {
        ManualError::NotFound { app, template_id }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_gives_the_placeholders_in_order() {
        let t = ManualTemplate::parse(
            " TPL_1 ",
            "发货提醒",
            "商品：{{thing1.DATA}}\n时间：{{time2.DATA}}",
        )
        .unwrap();
        assert_eq!(t.template_id.as_str(), "TPL_1");
        assert_eq!(t.placeholders, ["thing1", "time2"]);
    }

    #[test]
    fn a_content_without_placeholders_or_too_long_or_with_bad_keys_is_refused() {
        let refused = |content: &str| {
            matches!(
                ManualTemplate::parse("T", "", content),
                Err(ManualError::Invalid(_))
            )
        };
        assert!(refused("no placeholder here"));
        assert!(refused("{{thing1}} lacks .DATA"));
        assert!(refused(&format!(
            "{{{{thing1.DATA}}}}{}",
            "x".repeat(MAX_CONTENT_CHARS)
        )));
        assert!(refused("{{thing-1.DATA}}"));
        assert!(!refused("{{thing1.DATA}}"));
    }

    #[test]
    fn a_bad_id_or_title_is_refused() {
        assert!(ManualTemplate::parse("a b", "", "{{thing1.DATA}}").is_err());
        assert!(ManualTemplate::parse("T", "two\nlines", "{{thing1.DATA}}").is_err());
        assert!(
            ManualTemplate::parse("T", &"t".repeat(MAX_TITLE_CHARS + 1), "{{thing1.DATA}}")
                .is_err()
        );
    }
}
