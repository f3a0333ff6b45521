//! The apps' daily quota settings: WeChat's daily limit of template sends as operators plan
//! against it, and the share of it kept for transactional sends (campaigns stop short of it).

use std::collections::HashMap;

use super::ConfigError;
use crate::domain::AppName;

/// The daily quota settings of the apps: WeChat's daily limit of template sends and the share
/// of it kept for transactional sends. From `WXNOTIFY_DAILY_QUOTA` (none: no quota check) and
/// `WXNOTIFY_TRANSACTIONAL_RESERVE` (percent, default 20); per app `WXNOTIFY_DAILY_QUOTA_<APP>`
/// and `WXNOTIFY_TRANSACTIONAL_RESERVE_<APP>` (app name upper-cased, `-` and `.` as `_`).
#[derive(Debug, Clone, Default)]
pub struct QuotaSettings {
    default_quota: Option<u64>,
    default_reserve_percent: u8,
    per_app: HashMap<String, (Option<u64>, Option<u8>)>,
}

/// The default transactional reserve, percent of the daily quota.
pub const DEFAULT_RESERVE_PERCENT: u8 = 20;

impl QuotaSettings {
    /// Reads the settings for `apps` through `get`: a value that is not a whole number (or a
    /// reserve above 100 %) is an error naming the variable, never a quota check turned off.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        apps: &[AppName],
    ) -> Result<Self, ConfigError> {
        let num = |k: &str| -> Result<Option<u64>, ConfigError> {
            let Some(v) = get(k).filter(|v| !v.trim().is_empty()) else {
                return Ok(None);
            };
            v.trim().parse::<u64>().map(Some).map_err(|_| ConfigError::Invalid {
                name: k.to_owned(),
                reason: format!("{v:?} is not a whole number of template sends"),
                hint: "Give the OA's daily limit of template sends (e.g. 100000), or unset it to plan against the quota WeChat reports.",
            })
        };
        let pct = |k: &str| -> Result<Option<u8>, ConfigError> {
            match num(k) {
                Ok(Some(v)) if v <= 100 => Ok(Some(v as u8)),
                Ok(Some(v)) => Err(ConfigError::Invalid {
                    name: k.to_owned(),
                    reason: format!("{v} is above 100 percent"),
                    hint: "Give the percent of the daily quota kept for transactional sends, 0 to 100 (default 20).",
                }),
                Ok(None) => Ok(None),
                Err(ConfigError::Invalid { name, reason, .. }) => Err(ConfigError::Invalid {
                    name,
                    reason,
                    hint: "Give the percent of the daily quota kept for transactional sends, 0 to 100 (default 20).",
                }),
                Err(e) => Err(e),
            }
        };
        let per_app = apps
            .iter()
            .map(|a| {
                let suffix: String = a
                    .as_str()
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_uppercase()
                        } else {
                            '_'
                        }
                    })
                    .collect();
                Ok((
                    a.as_str().to_owned(),
                    (
                        num(&format!("WXNOTIFY_DAILY_QUOTA_{suffix}"))?,
                        pct(&format!("WXNOTIFY_TRANSACTIONAL_RESERVE_{suffix}"))?,
                    ),
                ))
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(QuotaSettings {
            default_quota: num("WXNOTIFY_DAILY_QUOTA")?,
            default_reserve_percent: pct("WXNOTIFY_TRANSACTIONAL_RESERVE")?
                .unwrap_or(DEFAULT_RESERVE_PERCENT),
            per_app,
        })
    }

    /// Settings with one quota and reserve for every app (tests, benchmarks).
    pub fn uniform(daily_quota: Option<u64>, reserve_percent: u8) -> Self {
        QuotaSettings {
            default_quota: daily_quota,
            default_reserve_percent: reserve_percent.min(100),
            per_app: HashMap::new(),
        }
    }

    /// The app's configured daily quota.
    pub fn daily_quota(&self, app: &str) -> Option<u64> {
        self.per_app
            .get(app)
            .and_then(|(q, _)| *q)
            .or(self.default_quota)
    }

    /// Sends of the daily quota kept for transactional jobs.
    pub fn reserve(&self, app: &str, quota: u64) -> u64 {
        let pct = self
            .per_app
            .get(app)
            .and_then(|(_, r)| *r)
            .unwrap_or(self.default_reserve_percent);
        quota * u64::from(pct) / 100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<QuotaSettings, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        QuotaSettings::from_lookup(|k| vars.get(k).cloned(), &[AppName::default_app()])
    }

    #[test]
    fn a_bad_value_is_an_error_naming_it_not_a_quota_check_turned_off() {
        for (name, value) in [
            ("WXNOTIFY_DAILY_QUOTA", "100k"),
            ("WXNOTIFY_DAILY_QUOTA_DEFAULT", "-5"),
            ("WXNOTIFY_TRANSACTIONAL_RESERVE", "120"),
            ("WXNOTIFY_TRANSACTIONAL_RESERVE", "twenty"),
        ] {
            let err = read(&[(name, value)]).expect_err(value).to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn per_app_values_win_over_the_defaults() {
        let q = read(&[
            ("WXNOTIFY_DAILY_QUOTA", "1000"),
            ("WXNOTIFY_DAILY_QUOTA_DEFAULT", "500"),
            ("WXNOTIFY_TRANSACTIONAL_RESERVE", "10"),
        ])
        .unwrap();
        assert_eq!(q.daily_quota("default"), Some(500));
        assert_eq!(q.daily_quota("other"), Some(1000));
        assert_eq!(q.reserve("default", 500), 50);
        assert_eq!(read(&[]).unwrap().daily_quota("default"), None);
        assert_eq!(read(&[]).unwrap().reserve("x", 1000), 200);
    }
}
