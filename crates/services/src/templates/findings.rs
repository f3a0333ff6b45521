//! What a template check finds: the problems that refuse a message ([`Refusal`]), the
//! warnings that do not, and the values shortened on request ([`Checked`]).

use chrono::{DateTime, Utc};
use serde::Serialize;

use wxnotify_core::domain::TemplateData;

use super::check::FOLDED_AFTER;

/// A reason to refuse a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// WeChat listed the template before and a later listing lacks it: deleted on WeChat's
    /// side (a template the catalog never saw is not refused: see [`Warning::NotInCatalog`]).
    DeletedTemplate {
        /// When a sync first found it missing.
        removed_at: DateTime<Utc>,
    },
    /// Placeholders of the template that the data does not fill.
    MissingKeys {
        /// The keys.
        keys: Vec<String>,
    },
    /// Keys of the data that the template does not have.
    UnknownKeys {
        /// The keys.
        keys: Vec<String>,
    },
    /// A value holds a line break.
    LineBreak {
        /// The key.
        key: String,
    },
    /// A value breaks a confirmed rule of its key's type (WeChat would answer 47003): a length
    /// limit of WeChat's value table, Chinese in a `character_string`, anything but Chinese in
    /// a `phrase`.
    TypeRule {
        /// The key.
        key: String,
        /// The rule and how the value breaks it.
        rule: String,
        /// Whether `"truncate": true` would fix it.
        truncatable: bool,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::DeletedTemplate { removed_at } => write!(
                f,
                "the template was deleted on WeChat's side: WeChat listed it before and its list lacks it since {} (`wxnotify templates sync` refreshes the list)",
                removed_at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            Problem::MissingKeys { keys } => write!(f, "missing data keys: {}", keys.join(", ")),
            Problem::UnknownKeys { keys } => write!(
                f,
                "unknown data keys (not placeholders of the template): {}",
                keys.join(", ")
            ),
            Problem::LineBreak { key } => write!(f, "data.{key}.value contains a line break"),
            Problem::TypeRule {
                key,
                rule,
                truncatable,
            } => {
                write!(f, "data.{key}.value: {rule}")?;
                if *truncatable {
                    f.write_str(" (set \"truncate\": true to shorten it)")?;
                }
                Ok(())
            }
        }
    }
}

/// A message refused before sending, with every reason. Its `Display` is one line naming the
/// template, the app and each problem: the text of a 4xx body or a `payload_rejected` dead
/// letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct Refusal {
    /// The app.
    pub app: String,
    /// The template.
    pub template_id: String,
    /// Why, in check order.
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "template {} of app {}: ", self.template_id, self.app)?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl Refusal {
    /// Whether the refusal is that the template was deleted on WeChat's side (a catalog
    /// refresh that lists it again changes that).
    pub fn names_deleted_template(&self) -> bool {
        matches!(self.problems[..], [Problem::DeletedTemplate { .. }])
    }
}

/// Something worth saying that does not stop the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "warning", rename_all = "snake_case")]
pub enum Warning {
    /// The app's catalog was never synced: the template and its keys were not checked.
    CatalogNotSynced,
    /// The synced catalog does not hold the template (WeChat's API does not list category
    /// templates): its keys were not checked; WeChat decides.
    NotInCatalog,
    /// A retired key (`first`, `remark`) WeChat will drop.
    Ignored {
        /// The key.
        key: String,
    },
    /// A value breaks a format rule of WeChat's value table (time and date forms, what a type
    /// may contain). WeChat's checks of formats are known to differ from the table, so these
    /// warn instead of refusing (docs/wechat.md §8.5). The name is kept for the JSON tag.
    Unconfirmed {
        /// The key.
        key: String,
        /// The rule.
        rule: String,
    },
    /// A historical-template value over 20 characters, which WeChat folds.
    Folded {
        /// The key.
        key: String,
        /// Its length in characters.
        chars: usize,
    },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::CatalogNotSynced => f.write_str(
                "the app's template catalog was never synced, so the template and its keys were not checked (run `wxnotify templates sync`)",
            ),
            Warning::NotInCatalog => f.write_str(
                "the template is not in the synced catalog (WeChat's API does not list category templates), so its keys were not checked; WeChat will decide (`wxnotify templates add` registers it so they are)",
            ),
            Warning::Ignored { key } => write!(
                f,
                "data.{key} is ignored: WeChat dropped `first` and `remark` on 2023-05-04"
            ),
            Warning::Unconfirmed { key, rule } => {
                write!(
                    f,
                    "data.{key}.value: {rule} (a format rule of WeChat's table that WeChat may not enforce; sent anyway)"
                )
            }
            Warning::Folded { key, chars } => write!(
                f,
                "data.{key}.value has {chars} characters; WeChat folds values over {FOLDED_AFTER}"
            ),
        }
    }
}

/// One value shortened because the job asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Truncation {
    /// The key.
    pub key: String,
    /// Characters before.
    pub from: usize,
    /// Characters after.
    pub to: usize,
}

/// A message that may be sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checked {
    /// What is worth telling the producer.
    pub warnings: Vec<Warning>,
    /// The values shortened (only with `truncate`).
    pub truncations: Vec<Truncation>,
    /// The data to send when values were shortened; `None` = send the data as given.
    pub data: Option<TemplateData>,
}

impl Checked {
    /// The truncations as stored in `deliveries.truncated`: `{"thing1": {"from": 23, "to": 20}}`.
    pub fn truncations_json(&self) -> Option<serde_json::Value> {
        if self.truncations.is_empty() {
            return None;
        }
        let map: serde_json::Map<String, serde_json::Value> = self
            .truncations
            .iter()
            .map(|t| {
                (
                    t.key.clone(),
                    serde_json::json!({"from": t.from, "to": t.to}),
                )
            })
            .collect();
        Some(map.into())
    }
}
