//! The template catalog: each app's private templates as `get_all_private_template` listed them,
//! plus the ones operators registered by hand, kept in Postgres (`templates`, `template_syncs`)
//! and loaded into a [`Catalog`] that the checks read without touching the database.
//!
//! WeChat's list is incomplete by nature: it holds an OA's historical templates (`keyword1` …)
//! and never its category templates (`thing1`, `time2` …; "目前暂不支持通过API获取类目模板列表",
//! WeChat's developer community). So the catalog tells three cases apart:
//!
//! - a template it holds ([`TemplateSource::Api`] or [`TemplateSource::Manual`]): checked;
//! - a template WeChat listed once and a later listing lacked (`removed_at` set, a tombstone):
//!   deleted on WeChat's side, refused;
//! - a template it never saw: not checked, sent; WeChat's answer (40037 or not) decides.
//!
//! A sync ([`store`]) upserts what WeChat lists (as `api`, clearing a tombstone: WeChat's ids are
//! never reused, so a listing that holds an id again means it was never really gone), marks the
//! `api` templates it lacks as removed, and never touches manual ones. The Mini Program's
//! subscribe templates share the table (`channel = 'mp_subscribe'`, see [`super::subscribe`]):
//! this catalog neither loads nor tombstones them, and their sync never touches OA rows. A listing that holds a
//! manual template's id turns it into `api`: WeChat's own content wins over a hand-typed copy.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use wxnotify_core::domain::AppName;
use wxnotify_core::wechat::client::PrivateTemplate;

/// Where a template of the catalog comes from (`templates.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TemplateSource {
    /// Listed by `get_all_private_template`.
    Api,
    /// Registered by an operator (`wxnotify templates add`, the admin API or the console).
    Manual,
}

impl TemplateSource {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateSource::Api => "api",
            TemplateSource::Manual => "manual",
        }
    }

    fn parse(s: &str) -> Option<TemplateSource> {
        match s {
            "api" => Some(TemplateSource::Api),
            "manual" => Some(TemplateSource::Manual),
            _ => None,
        }
    }
}

impl std::fmt::Display for TemplateSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One template of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CatalogTemplate {
    /// The template id.
    pub template_id: String,
    /// Its title.
    pub title: String,
    /// Its content, with `{{key.DATA}}` placeholders.
    pub content: String,
    /// The placeholder names, in order: exactly the keys a message's `data` must have.
    pub placeholders: Vec<String>,
    /// `api` (listed by WeChat) or `manual` (registered by hand).
    pub source: TemplateSource,
    /// When a sync first found it missing from WeChat's list (a deleted template; `null` while
    /// it is listed, and always for manual templates).
    pub removed_at: Option<DateTime<Utc>>,
}

impl CatalogTemplate {
    /// Whether jobs may name it: listed, or registered by hand.
    pub fn is_live(&self) -> bool {
        self.removed_at.is_none()
    }
}

/// One app's templates and when they were listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppCatalog {
    /// When the list was last fetched from WeChat (`None`: never; the app may still have
    /// manual templates).
    pub synced_at: Option<DateTime<Utc>>,
    /// Template id → template, removed ones included (see [`CatalogTemplate::removed_at`]).
    pub templates: HashMap<String, CatalogTemplate>,
}

impl AppCatalog {
    /// The templates jobs may name (listed or manual).
    pub fn live(&self) -> impl Iterator<Item = &CatalogTemplate> {
        self.templates.values().filter(|t| t.is_live())
    }

    /// The catalog as operators see it: usable templates and removed ones, each sorted by id.
    pub fn listing(&self, app: &AppName) -> AppListing {
        let mut templates: Vec<CatalogTemplate> = self.live().cloned().collect();
        let mut removed: Vec<CatalogTemplate> = self
            .templates
            .values()
            .filter(|t| !t.is_live())
            .cloned()
            .collect();
        templates.sort_by(|a, b| a.template_id.cmp(&b.template_id));
        removed.sort_by(|a, b| a.template_id.cmp(&b.template_id));
        AppListing {
            app: app.to_string(),
            synced_at: self.synced_at,
            templates,
            removed,
        }
    }
}

/// One app's catalog as `wxnotify templates list --json`, `GET /admin/api/templates` and the
/// console show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AppListing {
    /// The app.
    pub app: String,
    /// When WeChat's list was last fetched (`null`: never).
    pub synced_at: Option<DateTime<Utc>>,
    /// The templates jobs may name, by id: listed by WeChat (`api`) or registered by hand
    /// (`manual`).
    pub templates: Vec<CatalogTemplate>,
    /// Templates WeChat listed before and no longer does: jobs naming them are refused as
    /// deleted.
    pub removed: Vec<CatalogTemplate>,
}

/// Every app's templates. An app absent from it was never synced and has no manual template
/// (its jobs are checked for everything but the template, with a warning saying so).
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
    /// A send answered 40037, or a job named a template the catalog holds as removed.
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

impl Catalog {
    /// The catalog of `app`, if it was ever synced or has manual templates.
    pub fn app(&self, app: &AppName) -> Option<&AppCatalog> {
        self.apps.get(app)
    }

    /// Puts (or replaces) one app's catalog.
    pub fn insert(&mut self, app: AppName, catalog: AppCatalog) {
        self.apps.insert(app, catalog);
    }

    /// Forgets one app's catalog.
    pub fn remove(&mut self, app: &AppName) {
        self.apps.remove(app);
    }

    /// Every app it knows, by name.
    pub fn apps(&self) -> impl Iterator<Item = (&AppName, &AppCatalog)> {
        self.apps.iter()
    }

    /// The listing of `app` (empty, never synced, when the catalog does not know it).
    pub fn listing(&self, app: &AppName) -> AppListing {
        self.app(app)
            .map(|c| c.listing(app))
            .unwrap_or_else(|| AppCatalog::default().listing(app))
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
        type Row = (
            String,
            String,
            String,
            String,
            Vec<String>,
            String,
            Option<DateTime<Utc>>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT app, template_id, title, content, placeholders, source, removed_at
             FROM templates
             WHERE ($1::text IS NULL OR app = $1) AND channel = 'oa_template'",
        )
        .bind(app)
        .fetch_all(pool)
        .await?;
        let mut catalog = Catalog::default();
        for (name, synced_at) in syncs {
            let Ok(name) = AppName::parse(name) else {
                continue;
            };
            catalog.apps.entry(name).or_default().synced_at = Some(synced_at);
        }
        for (name, template_id, title, content, placeholders, source, removed_at) in rows {
            let (Ok(name), Some(source)) = (AppName::parse(name), TemplateSource::parse(&source))
            else {
                continue;
            };
            // Rows of an app never synced: only manual ones count (an `api` row cannot exist
            // without a sync; if one did, WeChat's list that had it is unknown).
            let app = catalog.apps.entry(name).or_default();
            if app.synced_at.is_none() && source == TemplateSource::Api {
                continue;
            }
            app.templates.insert(
                template_id.clone(),
                CatalogTemplate {
                    template_id,
                    title,
                    content,
                    placeholders,
                    source,
                    removed_at,
                },
            );
        }
        catalog
            .apps
            .retain(|_, c| c.synced_at.is_some() || !c.templates.is_empty());
        Ok(catalog)
    }
}

/// What a sync changed besides the listed templates themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// Listed templates no longer in the list: now removed (tombstones).
    pub removed: Vec<String>,
    /// Removed templates listed again: usable again.
    pub restored: Vec<String>,
    /// Manual templates WeChat now lists: now `api`.
    pub adopted: Vec<String>,
}

/// Merges WeChat's list `list` into `app`'s catalog in one transaction and records the sync:
/// listed templates are upserted as `api` (a removed one is restored, a manual one adopted),
/// `api` templates absent from the list are marked removed, manual ones are left alone.
pub async fn store(
    pool: &PgPool,
    app: &AppName,
    list: &[PrivateTemplate],
    trigger: SyncTrigger,
) -> Result<Stored, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut stored = Stored::default();
    for t in list {
        // The row as it was, to say what changed (`None`: new).
        let before: Option<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT source, removed_at FROM templates WHERE app = $1 AND template_id = $2 FOR UPDATE",
        )
        .bind(app.as_str())
        .bind(&t.template_id)
        .fetch_optional(&mut *tx)
        .await?;
        match &before {
            Some((source, _)) if source == "manual" => stored.adopted.push(t.template_id.clone()),
            Some((_, Some(_))) => stored.restored.push(t.template_id.clone()),
            _ => {}
        }
        sqlx::query(
            "INSERT INTO templates (app, template_id, title, content, placeholders, source, removed_at)
             VALUES ($1, $2, $3, $4, $5, 'api', NULL)
             ON CONFLICT (app, template_id) DO UPDATE
             SET title = EXCLUDED.title, content = EXCLUDED.content,
                 placeholders = EXCLUDED.placeholders, source = 'api', removed_at = NULL,
                 synced_at = now()
             WHERE templates.channel = 'oa_template'",
        )
        .bind(app.as_str())
        .bind(&t.template_id)
        .bind(&t.title)
        .bind(&t.content)
        .bind(&t.keys)
        .execute(&mut *tx)
        .await?;
    }
    let listed: Vec<&str> = list.iter().map(|t| t.template_id.as_str()).collect();
    stored.removed = sqlx::query_scalar(
        "UPDATE templates SET removed_at = now()
         WHERE app = $1 AND source = 'api' AND removed_at IS NULL AND channel = 'oa_template'
           AND NOT (template_id = ANY($2))
         RETURNING template_id",
    )
    .bind(app.as_str())
    .bind(&listed)
    .fetch_all(&mut *tx)
    .await?;
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
    tx.commit().await?;
    Ok(stored)
}
