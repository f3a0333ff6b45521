//! A campaign's figures before it starts, and pacing from its textual parts: shared by the
//! `campaign` command and the HTTP campaign API.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::CampaignError;
use super::model::{Pacing, SendWindow};
use super::rows::{RowCheck, bad_rows};
use super::store;

/// `campaign preview --json`: the snapshot's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// The campaign.
    pub id: Uuid,
    /// Its name.
    pub name: Option<String>,
    /// Its state.
    pub state: super::CampaignState,
    /// Distinct recipients.
    pub audience: u64,
    /// Reachable.
    pub reachable: u64,
    /// Unreachable by reason.
    pub unreachable: std::collections::BTreeMap<String, u64>,
    /// The audience by the channel that reaches it.
    pub by_channel: super::Channels,
    /// The template check, run again against the app's catalog as it is now.
    pub template: TemplateFindings,
    /// The subscribe message's check against the Mini Program's synced subscribe templates as
    /// they are now (none when the campaign has no `mp_subscribe`).
    pub mp_subscribe_template: Option<TemplateFindings>,
    /// Recipients whose own data breaks the template (their jobs would be refused), by their
    /// line in the recipients file or list, reported as bad lines are at create.
    pub bad_rows: super::audience::BadLines,
}

/// What the template check finds in a campaign's template and shared data today (the catalog
/// may have changed since the campaign was created).
#[derive(Debug, Clone, Serialize)]
pub struct TemplateFindings {
    /// No problem that would refuse the campaign's jobs (missing keys aside: per-recipient data
    /// may fill them; the worker checks every job again before its send).
    pub ok: bool,
    /// Problems that refuse the jobs.
    pub problems: Vec<String>,
    /// Data keys the shared data lacks (per-recipient data must fill them).
    pub missing_keys: Vec<String>,
    /// Warnings (catalog never synced, retired keys, format rules, folded values).
    pub warnings: Vec<String>,
}

impl TemplateFindings {
    /// Runs the template check of `c` against its app's catalog in Postgres.
    pub async fn of(pool: &PgPool, c: &store::Campaign) -> Result<Self, CampaignError> {
        use crate::templates::{Catalog, Problem, check_message};
        let invalid = |e: String| CampaignError::Invalid(format!("campaign {}: {e}", c.id));
        let app = wxnotify_core::domain::AppName::parse(c.app.clone())
            .map_err(|e| invalid(e.to_string()))?;
        let template_id = wxnotify_core::domain::TemplateId::parse(c.template_id.clone())
            .map_err(|e| invalid(e.to_string()))?;
        let data: wxnotify_core::domain::TemplateData =
            serde_json::from_value(c.data.clone()).map_err(|e| invalid(e.to_string()))?;
        let catalog = Catalog::load_app(pool, &app).await?;
        let mut findings = TemplateFindings {
            ok: true,
            problems: Vec::new(),
            missing_keys: Vec::new(),
            warnings: Vec::new(),
        };
        match check_message(&catalog, &app, &template_id, &data, c.truncate) {
            Ok(checked) => {
                findings.warnings = checked.warnings.iter().map(|w| w.to_string()).collect();
            }
            Err(refusal) => {
                for p in refusal.problems {
                    match p {
                        Problem::MissingKeys { keys } => findings.missing_keys = keys,
                        other => findings.problems.push(other.to_string()),
                    }
                }
                findings.ok = findings.problems.is_empty();
            }
        }
        Ok(findings)
    }

    /// Runs the subscribe template check of `c`'s `mp_subscribe` against its app's synced
    /// subscribe templates; none when it has none. Its data is shared by every job, so missing
    /// keys are problems here.
    pub async fn of_subscribe(
        pool: &PgPool,
        c: &store::Campaign,
    ) -> Result<Option<Self>, CampaignError> {
        use crate::templates::{SubscribeCatalog, check_subscribe};
        let Some(form) = c.mp_subscribe() else {
            return Ok(None);
        };
        let app = wxnotify_core::domain::AppName::parse(c.app.clone())
            .map_err(|e| CampaignError::Invalid(format!("campaign {}: {e}", c.id)))?;
        let catalog = SubscribeCatalog::load(pool, &app).await?;
        let mut findings = TemplateFindings {
            ok: true,
            problems: Vec::new(),
            missing_keys: Vec::new(),
            warnings: Vec::new(),
        };
        match check_subscribe(&catalog, &app, &form.template_id, &form.data, c.truncate) {
            Ok(checked) => {
                findings.warnings = checked.warnings.iter().map(|w| w.to_string()).collect();
            }
            Err(refusal) => {
                findings.problems = refusal.problems.iter().map(|p| p.to_string()).collect();
                findings.ok = findings.problems.is_empty();
            }
        }
        Ok(Some(findings))
    }

    /// The findings and the rows that break the template, as lines for a terminal.
    pub fn text_with_rows(&self, rows: &super::audience::BadLines) -> String {
        let mut s = self.text();
        if rows.count > 0 && self.ok {
            s = s.replacen(
                "template check: ok",
                "template check: the shared data is ok; some recipients' own data is not",
                1,
            );
        }
        if rows.count > 0 {
            s.push_str(&format!(
                "\n  {} recipient(s) with data that breaks the template (their jobs would be refused):",
                rows.count
            ));
            for b in &rows.first {
                s.push_str(&format!("\n    line {}: {}", b.line, b.error));
            }
        }
        s
    }

    /// The findings as lines for a terminal.
    pub fn text(&self) -> String {
        let mut s = if self.ok {
            String::from("  template check: ok")
        } else {
            format!(
                "  template check: {} problem(s) would refuse every job",
                self.problems.len()
            )
        };
        for p in &self.problems {
            s.push_str(&format!("\n    problem: {p}"));
        }
        if !self.missing_keys.is_empty() {
            s.push_str(&format!(
                "\n    missing from the shared data (per-recipient data must fill them): {}",
                self.missing_keys.join(", ")
            ));
        }
        for w in &self.warnings {
            s.push_str(&format!("\n    warning: {w}"));
        }
        s
    }
}

/// The snapshot's figures of campaign `id` and the template check against today's catalog.
pub async fn preview(pool: &PgPool, id: Uuid) -> Result<Preview, CampaignError> {
    let c = store::get(pool, id).await?;
    let template = TemplateFindings::of(pool, &c).await?;
    let mp_subscribe_template = TemplateFindings::of_subscribe(pool, &c).await?;
    let bad_rows = match (
        wxnotify_core::domain::AppName::parse(c.app.clone()),
        wxnotify_core::domain::TemplateId::parse(c.template_id.clone()),
    ) {
        (Ok(app), Ok(template_id)) => {
            let mut check = RowCheck::load(pool, &app, &template_id, &c.data, c.truncate).await?;
            bad_rows(pool, id, &mut check).await?
        }
        _ => Default::default(),
    };
    Ok(Preview {
        id,
        name: c.name.clone(),
        bad_rows,
        state: c.state,
        audience: c.audience as u64,
        reachable: c.reachable as u64,
        by_channel: c.by_channel(),
        unreachable: serde_json::from_value(c.unreachable).unwrap_or_default(),
        template,
        mp_subscribe_template,
    })
}

/// The largest daily cap of a campaign (a hundred million sends a day: far above any account's
/// quota, far below what the database column holds).
pub const MAX_DAILY_CAP: u64 = 100_000_000;

/// Pacing from its textual parts (CLI flags and HTTP fields); a daily cap outside 1 to
/// [`MAX_DAILY_CAP`] is refused naming `daily_cap`.
pub fn pacing_from(
    rate: u32,
    window: Option<&str>,
    time_zone: &str,
    start_at: Option<DateTime<Utc>>,
    daily_cap: Option<u64>,
) -> Result<Pacing, CampaignError> {
    Ok(Pacing {
        rate_per_second: rate,
        window: window
            .map(SendWindow::parse)
            .transpose()
            .map_err(CampaignError::Invalid)?,
        time_zone: time_zone.parse().map_err(|_| {
            CampaignError::Invalid(format!(
                "unknown time zone {time_zone:?} (use an IANA name such as Asia/Shanghai)"
            ))
        })?,
        start_at,
        daily_cap: daily_cap
            .map(|c| wxnotify_core::bounds::in_range("daily_cap", c, 1..=MAX_DAILY_CAP))
            .transpose()
            .map_err(|e| CampaignError::Invalid(e.to_string()))?,
    })
}
