//! The template catalog: each app's private templates as `get_all_private_template` last listed
//! them, kept in Postgres (`templates`, `template_syncs`) and loaded into a [`Catalog`] that the
//! checks read without touching the database.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::domain::AppName;
use crate::wechat::client::PrivateTemplate;

/// One template of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CatalogTemplate {
    /// The template id.
    pub template_id: String,
    /// Its title.
    pub title: String,
    /// Its content, with `{{key.DATA}}` placeholders.
    pub content: String,
    /// The placeholder names, in order: exactly the keys a message's `data` must have.
    pub placeholders: Vec<String>,
}

/// One app's templates and when they were listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppCatalog {
    /// When the list was fetched from WeChat.
    pub synced_at: Option<DateTime<Utc>>,
    /// Template id → template.
    pub templates: HashMap<String, CatalogTemplate>,
}

/// Every app's templates. An app absent from it was never synced (its jobs are checked for
/// everything but the template, with a warning saying so).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    apps: HashMap<AppName, AppCatalog>,
}

/// What asked for a sync (stored in `template_syncs.trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncTrigger {
    /// The worker's periodic refresh.
    Schedule,
    /// `wxnotify templates sync`.
    Command,
    /// A send answered 40037 or a job named a template the catalog lacks.
    UnknownTemplate,
}

impl SyncTrigger {
    fn as_str(self) -> &'static str {
        match self {
            SyncTrigger::Schedule => "schedule",
            SyncTrigger::Command => "command",
            SyncTrigger::UnknownTemplate => "unknown_template",
        }
    }
}

impl AppCatalog {
    /// The catalog of a list just fetched from WeChat at `synced_at`.
    pub fn from_list(list: &[PrivateTemplate], synced_at: DateTime<Utc>) -> AppCatalog {
        let templates = list
            .iter()
            .map(|t| {
                let template = CatalogTemplate {
                    template_id: t.template_id.clone(),
                    title: t.title.clone(),
                    content: t.content.clone(),
                    placeholders: t.keys.clone(),
                };
                (t.template_id.clone(), template)
            })
            .collect();
        AppCatalog {
            synced_at: Some(synced_at),
            templates,
        }
    }
}

impl Catalog {
    /// The catalog of `app`, if it was ever synced.
    pub fn app(&self, app: &AppName) -> Option<&AppCatalog> {
        self.apps.get(app)
    }

    /// Puts (or replaces) one app's catalog.
    pub fn insert(&mut self, app: AppName, catalog: AppCatalog) {
        self.apps.insert(app, catalog);
    }

    /// Every synced app, by name.
    pub fn apps(&self) -> impl Iterator<Item = (&AppName, &AppCatalog)> {
        self.apps.iter()
    }

    /// Loads every app's catalog.
    pub async fn load(pool: &PgPool) -> Result<Catalog, sqlx::Error> {
        Self::load_where(pool, None).await
    }

    /// Loads the catalog of one app (the others are absent).
    pub async fn load_app(pool: &PgPool, app: &AppName) -> Result<Catalog, sqlx::Error> {
        Self::load_where(pool, Some(app)).await
    }

    async fn load_where(pool: &PgPool, app: Option<&AppName>) -> Result<Catalog, sqlx::Error> {
        let app = app.map(|a| a.as_str());
        let syncs: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT app, synced_at FROM template_syncs WHERE $1::text IS NULL OR app = $1",
        )
        .bind(app)
        .fetch_all(pool)
        .await?;
        let rows: Vec<(String, String, String, String, Vec<String>)> = sqlx::query_as(
            "SELECT app, template_id, title, content, placeholders FROM templates
             WHERE $1::text IS NULL OR app = $1",
        )
        .bind(app)
        .fetch_all(pool)
        .await?;
        let mut catalog = Catalog::default();
        for (name, synced_at) in syncs {
            let Ok(name) = AppName::parse(name) else {
                continue;
            };
            catalog.apps.insert(
                name,
                AppCatalog {
                    synced_at: Some(synced_at),
                    templates: HashMap::new(),
                },
            );
        }
        for (name, template_id, title, content, placeholders) in rows {
            let Some(app) = AppName::parse(name)
                .ok()
                .and_then(|n| catalog.apps.get_mut(&n))
            else {
                continue;
            };
            app.templates.insert(
                template_id.clone(),
                CatalogTemplate {
                    template_id,
                    title,
                    content,
                    placeholders,
                },
            );
        }
        Ok(catalog)
    }
}

/// Replaces `app`'s templates with `list` in one transaction and records the sync.
pub async fn store(
    pool: &PgPool,
    app: &AppName,
    list: &[PrivateTemplate],
    trigger: SyncTrigger,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM templates WHERE app = $1")
        .bind(app.as_str())
        .execute(&mut *tx)
        .await?;
    for t in list {
        sqlx::query(
            "INSERT INTO templates (app, template_id, title, content, placeholders)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (app, template_id) DO NOTHING",
        )
        .bind(app.as_str())
        .bind(&t.template_id)
        .bind(&t.title)
        .bind(&t.content)
        .bind(&t.keys)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO template_syncs (app, synced_at, templates, trigger) VALUES ($1, now(), $2, $3)
         ON CONFLICT (app) DO UPDATE
         SET synced_at = now(), templates = EXCLUDED.templates, trigger = EXCLUDED.trigger",
    )
    .bind(app.as_str())
    .bind(list.len() as i32)
    .bind(trigger.as_str())
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
