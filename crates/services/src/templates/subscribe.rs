//! The Mini Program's subscribe templates (`wxaapi/newtmpl/gettemplate`) beside the OA's
//! catalog, in the same table with `channel = 'mp_subscribe'`, and the checks before a
//! subscribe message is sent.
//!
//! WeChat's list of subscribe templates is complete (unlike the OA's, [`super::catalog`]): a
//! sync ([`store_subscribe`]) upserts what it lists and marks the subscribe templates it lacks
//! as removed; it never touches OA rows, and the OA's sync never touches these.
//!
//! The checks ([`check_subscribe`]) are the OA category templates' ([`super::check`]: keys
//! exactly the placeholders, no line breaks, the value table, truncation on request) plus
//! `enum`: a key that `keywordEnumValueList` lists takes only the values listed there.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::catalog::{AppCatalog, Catalog, CatalogTemplate, Stored, TemplateSource};
use super::check::{Checked, Problem, Refusal, check_message};
use wxnotify_core::domain::{AppName, TemplateData, TemplateId};
use wxnotify_core::wechat::client::SubscribeTemplate;

/// One subscribe template of an app, as last synced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SubscribeCatalogTemplate {
    /// The template id (`priTmplId`).
    pub template_id: String,
    /// Its title.
    pub title: String,
    /// Its content, with `{{key.DATA}}` placeholders.
    pub content: String,
    /// The placeholder names, in order: exactly the keys `data` must have.
    pub placeholders: Vec<String>,
    /// Long-term (type 3) rather than one-time (type 2).
    pub long_term: bool,
    /// Key → the only values it may take (`keywordEnumValueList`).
    pub enum_values: BTreeMap<String, Vec<String>>,
    /// When a sync first found it missing from WeChat's list (deleted on WeChat's side).
    pub removed_at: Option<DateTime<Utc>>,
}

/// One app's subscribe templates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeCatalog {
    /// When the list was last synced (`None`: never, or WeChat listed none).
    pub synced_at: Option<DateTime<Utc>>,
    /// Template id → template, removed ones included.
    pub templates: HashMap<String, SubscribeCatalogTemplate>,
}

impl SubscribeCatalog {
    /// Loads `app`'s subscribe templates.
    pub async fn load(pool: &PgPool, app: &AppName) -> Result<SubscribeCatalog, sqlx::Error> {
        type Row = (
            String,
            String,
            String,
            Vec<String>,
            bool,
            sqlx::types::Json<BTreeMap<String, Vec<String>>>,
            Option<DateTime<Utc>>,
            DateTime<Utc>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT template_id, title, content, placeholders, long_term, enum_values, removed_at,
                    synced_at
             FROM templates WHERE app = $1 AND channel = 'mp_subscribe'",
        )
        .bind(app.as_str())
        .fetch_all(pool)
        .await?;
        let mut catalog = SubscribeCatalog::default();
        for (template_id, title, content, placeholders, long_term, enums, removed_at, synced) in
            rows
        {
            catalog.synced_at = catalog.synced_at.max(Some(synced));
            catalog.templates.insert(
                template_id.clone(),
                SubscribeCatalogTemplate {
                    template_id,
                    title,
                    content,
                    placeholders,
                    long_term,
                    enum_values: enums.0,
                    removed_at,
                },
            );
        }
        Ok(catalog)
    }

    /// The templates sorted by id (listed ones first, then removed ones).
    pub fn sorted(&self) -> Vec<SubscribeCatalogTemplate> {
        let mut list: Vec<SubscribeCatalogTemplate> = self.templates.values().cloned().collect();
        list.sort_by(|a, b| {
            (a.removed_at.is_some(), &a.template_id).cmp(&(b.removed_at.is_some(), &b.template_id))
        });
        list
    }
}

/// Merges WeChat's subscribe template list into `app`'s in one transaction: listed templates are
/// upserted (a removed one restored), subscribe templates absent from the list are marked
/// removed. OA rows are never touched (an id an OA row holds is skipped).
pub async fn store_subscribe(
    pool: &PgPool,
    app: &AppName,
    list: &[SubscribeTemplate],
) -> Result<Stored, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut stored = Stored::default();
    for t in list {
        let restored: Option<bool> = sqlx::query_scalar(
            "INSERT INTO templates (app, template_id, title, content, placeholders, source,
                                    channel, long_term, enum_values)
             VALUES ($1, $2, $3, $4, $5, 'api', 'mp_subscribe', $6, $7)
             ON CONFLICT (app, template_id) DO UPDATE
             SET title = EXCLUDED.title, content = EXCLUDED.content,
                 placeholders = EXCLUDED.placeholders, long_term = EXCLUDED.long_term,
                 enum_values = EXCLUDED.enum_values, removed_at = NULL, synced_at = now()
             WHERE templates.channel = 'mp_subscribe'
             RETURNING (xmax <> 0 AND (SELECT removed_at FROM templates o
                                       WHERE o.app = $1 AND o.template_id = $2) IS NOT NULL)",
        )
        .bind(app.as_str())
        .bind(&t.template_id)
        .bind(&t.title)
        .bind(&t.content)
        .bind(&t.keys)
        .bind(t.long_term)
        .bind(sqlx::types::Json(&t.enum_values))
        .fetch_optional(&mut *tx)
        .await?;
        if restored == Some(true) {
            stored.restored.push(t.template_id.clone());
        }
    }
    let listed: Vec<&str> = list.iter().map(|t| t.template_id.as_str()).collect();
    stored.removed = sqlx::query_scalar(
        "UPDATE templates SET removed_at = now()
         WHERE app = $1 AND channel = 'mp_subscribe' AND removed_at IS NULL
           AND NOT (template_id = ANY($2))
         RETURNING template_id",
    )
    .bind(app.as_str())
    .bind(&listed)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(stored)
}

/// Checks a subscribe message of `app` before it is sent: the OA category templates' checks
/// ([`check_message`]) against the template's placeholders, then its enums. A template the
/// synced list lacks is refused as deleted when it was listed before; one never listed is not
/// checked (a warning says so) and WeChat decides.
pub fn check_subscribe(
    catalog: &SubscribeCatalog,
    app: &AppName,
    template_id: &TemplateId,
    data: &TemplateData,
    truncate: bool,
) -> Result<Checked, Refusal> {
    let template = catalog.templates.get(template_id.as_str());
    let as_catalog = |t: &SubscribeCatalogTemplate| CatalogTemplate {
        template_id: t.template_id.clone(),
        title: t.title.clone(),
        content: t.content.clone(),
        placeholders: t.placeholders.clone(),
        source: TemplateSource::Api,
        removed_at: t.removed_at,
    };
    let mut one = Catalog::default();
    one.insert(
        app.clone(),
        AppCatalog {
            synced_at: catalog.synced_at,
            templates: template
                .map(|t| (t.template_id.clone(), as_catalog(t)))
                .into_iter()
                .collect(),
        },
    );
    let checked = check_message(&one, app, template_id, data, truncate);
    let Some(template) = template else {
        return checked;
    };
    let sent = match &checked {
        Ok(c) => c.data.as_ref().unwrap_or(data),
        Err(_) => data,
    };
    let enum_problems: Vec<Problem> = template
        .enum_values
        .iter()
        .filter(|(_, allowed)| !allowed.is_empty())
        .filter_map(|(key, allowed)| {
            let value = sent.get(key)?;
            (!allowed.iter().any(|a| a == value)).then(|| Problem::TypeRule {
                key: key.clone(),
                rule: format!(
                    "must be one of the template's values: {}",
                    allowed.join(", ")
                ),
                truncatable: false,
            })
        })
        .collect();
    match (checked, enum_problems.is_empty()) {
        (checked, true) => checked,
        (Ok(_), false) => Err(Refusal {
            app: app.to_string(),
            template_id: template_id.to_string(),
            problems: enum_problems,
        }),
        (Err(mut refusal), false) => {
            refusal.problems.extend(enum_problems);
            Err(refusal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> SubscribeCatalog {
        let t = SubscribeCatalogTemplate {
            template_id: "MP_ORDER_SHIPPED".into(),
            title: "订单发货通知".into(),
            content: "内容:{{thing1.DATA}}\n状态:{{phrase3.DATA}}".into(),
            placeholders: vec!["thing1".into(), "phrase3".into()],
            long_term: false,
            enum_values: BTreeMap::from([(
                "phrase3".to_owned(),
                vec!["已发货".to_owned(), "已签收".to_owned()],
            )]),
            removed_at: None,
        };
        SubscribeCatalog {
            synced_at: Some(Utc::now()),
            templates: HashMap::from([(t.template_id.clone(), t)]),
        }
    }

    fn data(thing: &str, phrase: &str) -> TemplateData {
        TemplateData::from_pairs(&[("thing1", thing), ("phrase3", phrase)]).unwrap()
    }

    #[test]
    fn enum_values_and_the_value_table_both_refuse() {
        let (app, id) = (AppName::default_app(), "MP_ORDER_SHIPPED".parse().unwrap());
        assert!(check_subscribe(&catalog(), &app, &id, &data("书", "已发货"), false).is_ok());
        let refused =
            check_subscribe(&catalog(), &app, &id, &data("书", "已取消"), false).unwrap_err();
        assert_eq!(refused.problems.len(), 1);
        assert!(
            refused
                .to_string()
                .contains("data.phrase3.value: must be one of"),
            "{refused}"
        );
        let long = "书".repeat(21);
        let refused =
            check_subscribe(&catalog(), &app, &id, &data(&long, "已取消"), false).unwrap_err();
        assert_eq!(refused.problems.len(), 2, "{refused}");
        let missing = TemplateData::from_pairs(&[("thing1", "书")]).unwrap();
        assert!(check_subscribe(&catalog(), &app, &id, &missing, false).is_err());
    }

    #[test]
    fn a_template_never_listed_is_left_to_wechat() {
        let app = AppName::default_app();
        let other = "MP_OTHER".parse().unwrap();
        let checked =
            check_subscribe(&catalog(), &app, &other, &data("书", "待定"), false).unwrap();
        assert!(!checked.warnings.is_empty());
    }
}
