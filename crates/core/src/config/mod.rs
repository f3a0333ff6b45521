//! Settings: environment variables first (12-factor), plus an optional TOML file
//! (`WXNOTIFY_CONFIG`) for several apps. Checked once at start; every error names the setting
//! and says how to fix it. Secrets are [`SecretString`]s: a `Debug` of the settings never shows
//! one. Every variable is read here, except the log settings (`WXNOTIFY_LOG_FORMAT`,
//! `RUST_LOG`), which `telemetry` reads first so that a settings error is logged as asked, and
//! the flags' own variables, which clap reads with each command's flags.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::at_rest::{SECRET_KEY_VAR, SecretCodec};
use crate::domain::{AppId, AppName};
use crate::wechat::crypto::AesKey;

mod file;
mod quota;

use self::file::apps_from_file;
pub use self::quota::{DEFAULT_RESERVE_PERCENT, QuotaSettings};

/// Default of `DATABASE_URL`: a Postgres on this machine, without TLS (on loopback it protects
/// nothing, and it cost the worker's Postgres a third of its CPU). A Postgres elsewhere wants
/// `sslmode=verify-full` in its URL.
pub const DEFAULT_DATABASE_URL: &str =
    "postgres://postgres@127.0.0.1:5432/wxnotify?sslmode=disable";
/// Default of `AMQP_URL`.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Default of `WECHAT_API_BASE`.
pub const DEFAULT_WECHAT_API_BASE: &str = "https://api.weixin.qq.com";
/// Default of `WXNOTIFY_QUEUE_PREFIX`.
pub const DEFAULT_QUEUE_PREFIX: &str = "wxnotify";
/// The fewest characters a break-glass admin or viewer token may have (`serve` refuses shorter
/// ones).
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;
/// Default per-app send rate (messages per second) when none is configured.
pub const DEFAULT_RATE_PER_SECOND: u32 = 500;

/// A setting that could not be used. The message names it and says what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    /// A value did not parse.
    #[error("{name} is invalid: {reason}. {hint}")]
    Invalid {
        /// Variable or TOML key.
        name: String,
        /// What is wrong.
        reason: String,
        /// How to fix it.
        hint: &'static str,
    },
    /// A required value is missing.
    #[error("{name} is not set. {hint}")]
    Missing {
        /// Variable or TOML key.
        name: String,
        /// How to fix it.
        hint: &'static str,
    },
    /// The TOML file could not be read or parsed.
    #[error("cannot use the config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Where access tokens come from (the WeChat side owns the idea; settings choose it).
pub use crate::wechat::TokenSource;

/// One OA / Mini Program pair.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// wxnotify's name for the pair; jobs name it in `app`.
    pub name: AppName,
    /// The Official Account's appid.
    pub oa_appid: AppId,
    /// The Official Account's AppSecret.
    pub oa_secret: SecretString,
    /// The Mini Program's appid, needed for logins.
    pub mp_appid: Option<AppId>,
    /// The Mini Program's AppSecret, needed for logins.
    pub mp_secret: Option<SecretString>,
    /// The Token configured on the OA's server URL page (callback signatures).
    pub callback_token: Option<SecretString>,
    /// The EncodingAESKey (43 characters) for safe-mode callbacks.
    pub encoding_aes_key: Option<SecretString>,
    /// The EncodingAESKey before the last change in the OA console, kept while WeChat may still
    /// push with it: a push the current key cannot open is tried with this one. Requires
    /// `encoding_aes_key`.
    pub encoding_aes_key_previous: Option<SecretString>,
    /// The Token of the Mini Program's message push URL (`/wechat/mp-callback` signatures).
    pub mp_callback_token: Option<SecretString>,
    /// The Mini Program's EncodingAESKey (43 characters) for its safe-mode pushes.
    pub mp_encoding_aes_key: Option<SecretString>,
    /// Template sends per second for this app, across all worker processes.
    pub rate_per_second: u32,
    /// Where access tokens come from.
    pub token_source: TokenSource,
}

impl From<&AppConfig> for crate::wechat::OaCredentials {
    fn from(a: &AppConfig) -> Self {
        crate::wechat::OaCredentials {
            app: a.name.clone(),
            appid: a.oa_appid.clone(),
            secret: a.oa_secret.clone(),
            source: a.token_source,
            mini_program: a.mp_appid.clone().zip(a.mp_secret.clone()),
        }
    }
}

/// Everything a wxnotify process needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Postgres (may hold a password).
    pub database_url: SecretString,
    /// RabbitMQ (may hold a password).
    pub amqp_url: SecretString,
    /// Where WeChat's API lives; the fake WeChat's address in tests and the demo.
    pub wechat_api_base: Url,
    /// The first part of every exchange and queue name.
    pub queue_prefix: String,
    /// The break-glass token of the admin API and console, role admin
    /// (`WXNOTIFY_ADMIN_TOKEN`, at least [`MIN_ADMIN_TOKEN_CHARS`] characters for `serve`).
    pub admin_token: Option<SecretString>,
    /// The read-only break-glass token of the admin API and console (`WXNOTIFY_VIEWER_TOKEN`,
    /// at least [`MIN_ADMIN_TOKEN_CHARS`] characters for `serve`).
    pub viewer_token: Option<SecretString>,
    /// Purge dead letters older than this many days (`WXNOTIFY_DLQ_RETENTION_DAYS`); `None`
    /// keeps them.
    pub dlq_retention_days: Option<u32>,
    /// The configured apps, at least one.
    pub apps: Vec<AppConfig>,
    /// The apps' daily quota and transactional reserve (`WXNOTIFY_DAILY_QUOTA` …).
    pub quota: QuotaSettings,
    /// How access tokens and webhook secrets are stored (`WXNOTIFY_SECRET_KEY`): encrypted
    /// with the key, as they are without one.
    pub secrets: SecretCodec,
}

impl Settings {
    /// Reads the process environment (and the TOML file it names).
    pub fn from_env() -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::from_lookup(|k| env.get(k).cloned())
    }

    /// Reads settings through `get` (the environment in production, a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let wechat_api_base =
            var("WECHAT_API_BASE").unwrap_or_else(|| DEFAULT_WECHAT_API_BASE.to_owned());
        let wechat_api_base = Url::parse(&wechat_api_base).map_err(|e| ConfigError::Invalid {
            name: "WECHAT_API_BASE".into(),
            reason: e.to_string(),
            hint: "Use an absolute URL such as https://api.weixin.qq.com or the address printed by `wxnotify-sandbox mock-wechat`.",
        })?;
        let queue_prefix =
            var("WXNOTIFY_QUEUE_PREFIX").unwrap_or_else(|| DEFAULT_QUEUE_PREFIX.into());
        if !queue_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            || queue_prefix.len() > 100
        {
            return Err(ConfigError::Invalid {
                name: "WXNOTIFY_QUEUE_PREFIX".into(),
                reason: format!("{queue_prefix:?} is not a plain name"),
                hint: "Use ASCII letters, digits, '-', '_' or '.', at most 100 characters.",
            });
        }
        let mut apps = Vec::new();
        if let Some(app) = default_app(&var)? {
            apps.push(app);
        }
        if let Some(path) = var("WXNOTIFY_CONFIG") {
            apps.extend(apps_from_file(Path::new(&path), &var)?);
        }
        let mut seen = std::collections::HashSet::new();
        for app in &apps {
            if !seen.insert(app.name.clone()) {
                return Err(ConfigError::Invalid {
                    name: format!("app {}", app.name),
                    reason: "the name is configured twice".into(),
                    hint: "Give every [[app]] a distinct name; `default` is the app of the WXNOTIFY_OA_* variables.",
                });
            }
        }
        let dlq_retention_days = var("WXNOTIFY_DLQ_RETENTION_DAYS")
            .map(|v| {
                v.trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|d| *d > 0)
                    .ok_or_else(|| ConfigError::Invalid {
                        name: "WXNOTIFY_DLQ_RETENTION_DAYS".into(),
                        reason: format!("{v:?} is not a whole number of days above 0"),
                        hint: "Set e.g. 30 to purge dead letters older than 30 days, or unset it to keep them.",
                    })
            })
            .transpose()?;
        let names: Vec<AppName> = apps.iter().map(|a| a.name.clone()).collect();
        let quota = QuotaSettings::from_lookup(var, &names)?;
        let secrets = match var(SECRET_KEY_VAR) {
            Some(v) => {
                SecretCodec::from_base64_key(&v).map_err(|e| ConfigError::Invalid {
                    name: SECRET_KEY_VAR.into(),
                    reason: e.to_string(),
                    hint: "Use 32 random bytes in base64, as `openssl rand -base64 32` prints them; keep the same key for every process and run.",
                })?
            }
            None => SecretCodec::plain(),
        };
        Ok(Settings {
            database_url: var("DATABASE_URL")
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.into())
                .into(),
            amqp_url: var("AMQP_URL")
                .unwrap_or_else(|| DEFAULT_AMQP_URL.into())
                .into(),
            wechat_api_base,
            queue_prefix,
            admin_token: var("WXNOTIFY_ADMIN_TOKEN").map(Into::into),
            viewer_token: var("WXNOTIFY_VIEWER_TOKEN").map(Into::into),
            dlq_retention_days,
            apps,
            quota,
            secrets,
        })
    }

    /// The app called `name`, or an error that lists the configured ones.
    pub fn app(&self, name: &AppName) -> Result<&AppConfig, ConfigError> {
        self.apps.iter().find(|a| &a.name == name).ok_or_else(|| {
            let known: Vec<_> = self.apps.iter().map(|a| a.name.to_string()).collect();
            ConfigError::Missing {
                name: format!("app {name} (configured: {})", known.join(", ")),
                hint: "Set WXNOTIFY_OA_APPID and WXNOTIFY_OA_SECRET for the default app, or add an [[app]] to the WXNOTIFY_CONFIG file.",
            }
        })
    }

    /// The configured app a command's `--app NAME` flag names: a name that does not parse or
    /// an app that is not configured is a [`ConfigError`] (exit code 2).
    pub fn app_flag(&self, name: &str) -> Result<AppName, ConfigError> {
        let app = AppName::parse(name).map_err(|e| ConfigError::Invalid {
            name: "--app".into(),
            reason: e.to_string(),
            hint: "Name a configured app (`default` for the WXNOTIFY_OA_* variables).",
        })?;
        self.app(&app)?;
        Ok(app)
    }

    /// Fails unless each break-glass admin token that is set (`WXNOTIFY_ADMIN_TOKEN`,
    /// `WXNOTIFY_VIEWER_TOKEN`) has at least [`MIN_ADMIN_TOKEN_CHARS`] characters: `serve`
    /// checks it before it listens. The error names the setting, never the value.
    pub fn require_strong_admin_tokens(&self) -> Result<(), ConfigError> {
        for (name, token) in [
            ("WXNOTIFY_ADMIN_TOKEN", &self.admin_token),
            ("WXNOTIFY_VIEWER_TOKEN", &self.viewer_token),
        ] {
            let Some(token) = token else { continue };
            let chars = token.expose_secret().trim().chars().count();
            if chars < MIN_ADMIN_TOKEN_CHARS {
                return Err(ConfigError::Invalid {
                    name: name.into(),
                    reason: format!(
                        "a {chars}-character token, shorter than {MIN_ADMIN_TOKEN_CHARS} characters"
                    ),
                    hint: "Generate a long random one (e.g. `openssl rand -hex 32`), or unset it and give each person a token of their own with `wxnotify admin-user add NAME --role admin`.",
                });
            }
        }
        Ok(())
    }

    /// Fails unless at least one app is configured (commands that talk to WeChat need one).
    pub fn require_apps(&self) -> Result<(), ConfigError> {
        if self.apps.is_empty() {
            return Err(ConfigError::Missing {
                name: "WXNOTIFY_OA_APPID".into(),
                hint: "Set WXNOTIFY_OA_APPID and WXNOTIFY_OA_SECRET (and WXNOTIFY_MP_APPID / WXNOTIFY_MP_SECRET for logins), or WXNOTIFY_CONFIG for several apps.",
            });
        }
        Ok(())
    }
}

fn parse_app_id(name: &str, v: String) -> Result<AppId, ConfigError> {
    AppId::parse(v).map_err(|e| ConfigError::Invalid {
        name: name.into(),
        reason: e.to_string(),
        hint: "Copy the appid (wx…) from the WeChat console's basic configuration page.",
    })
}

fn parse_rate(name: &str, v: &str) -> Result<u32, ConfigError> {
    v.parse::<u32>()
        .ok()
        .filter(|r| *r > 0)
        .ok_or_else(|| ConfigError::Invalid {
            name: name.into(),
            reason: format!("{v:?} is not a positive whole number"),
            hint: "Give template sends per second, e.g. 500.",
        })
}

fn parse_token_source(name: &str, v: &str) -> Result<TokenSource, ConfigError> {
    match v {
        "stable" => Ok(TokenSource::Stable),
        "classic" => Ok(TokenSource::Classic),
        other => Err(ConfigError::Invalid {
            name: name.into(),
            reason: format!("{other:?} is not a token source"),
            hint: "Use `stable` (cgi-bin/stable_token, recommended) or `classic` (cgi-bin/token).",
        }),
    }
}

/// WeChat's rule for the callback Token: 3 to 32 characters (its console takes letters and
/// digits; any printable ASCII is accepted here).
fn check_callback_token(name: &str, token: String) -> Result<SecretString, ConfigError> {
    if (3..=32).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic()) {
        return Ok(token.into());
    }
    // The value is a secret: only its length is said.
    Err(ConfigError::Invalid {
        name: name.into(),
        reason: format!(
            "a {}-character token, not 3 to 32 printable ASCII characters",
            token.chars().count()
        ),
        hint: "Use the Token of the OA console's server configuration (WeChat requires 3-32 letters or digits).",
    })
}

/// An EncodingAESKey as the OA console shows it: 43 base64 characters that decode to a 32-byte
/// AES key (the same check the callback makes when it decodes the key).
fn check_encoding_aes_key(name: &str, key: SecretString) -> Result<SecretString, ConfigError> {
    match AesKey::from_encoding_aes_key(key.expose_secret()) {
        Ok(_) => Ok(key),
        // The value is a secret: only its length is said.
        Err(_) => Err(ConfigError::Invalid {
            name: name.into(),
            reason: format!(
                "a {}-character value, not 43 base64 characters",
                key.expose_secret().trim().chars().count()
            ),
            hint: "Copy the 43-character EncodingAESKey from the OA console's server configuration.",
        }),
    }
}

/// An app's current and previous EncodingAESKey, each checked; a previous key without a current
/// one is refused (it only serves next to the current key while the key is being changed).
/// Each pair is `(setting name, value)`.
fn encoding_aes_keys(
    (current_name, current): (&str, Option<SecretString>),
    (previous_name, previous): (&str, Option<SecretString>),
) -> Result<(Option<SecretString>, Option<SecretString>), ConfigError> {
    let current = current
        .map(|k| check_encoding_aes_key(current_name, k))
        .transpose()?;
    let previous = previous
        .map(|k| check_encoding_aes_key(previous_name, k))
        .transpose()?;
    if previous.is_some() && current.is_none() {
        return Err(ConfigError::Invalid {
            name: previous_name.into(),
            reason: format!("it is set but {current_name} is not"),
            hint: "The previous EncodingAESKey only serves next to the current one while the key is being changed: set the current key too, or remove the previous one.",
        });
    }
    Ok((current, previous))
}

/// The app of the `WXNOTIFY_OA_*` / `WXNOTIFY_MP_*` variables, if they are set.
fn default_app(var: &impl Fn(&str) -> Option<String>) -> Result<Option<AppConfig>, ConfigError> {
    let Some(oa_appid) = var("WXNOTIFY_OA_APPID") else {
        return Ok(None);
    };
    let oa_secret = var("WXNOTIFY_OA_SECRET").ok_or(ConfigError::Missing {
        name: "WXNOTIFY_OA_SECRET".into(),
        hint: "WXNOTIFY_OA_APPID is set, so its AppSecret is needed too (WeChat console, basic configuration).",
    })?;
    let mp_appid = var("WXNOTIFY_MP_APPID")
        .map(|v| parse_app_id("WXNOTIFY_MP_APPID", v))
        .transpose()?;
    let mp_secret = var("WXNOTIFY_MP_SECRET").map(SecretString::from);
    if mp_appid.is_some() != mp_secret.is_some() {
        return Err(ConfigError::Missing {
            name: "WXNOTIFY_MP_APPID / WXNOTIFY_MP_SECRET".into(),
            hint: "Set both or neither: Mini Program logins need the appid and its AppSecret.",
        });
    }
    let (encoding_aes_key, encoding_aes_key_previous) = encoding_aes_keys(
        (
            "WXNOTIFY_ENCODING_AES_KEY",
            var("WXNOTIFY_ENCODING_AES_KEY").map(Into::into),
        ),
        (
            "WXNOTIFY_ENCODING_AES_KEY_PREVIOUS",
            var("WXNOTIFY_ENCODING_AES_KEY_PREVIOUS").map(Into::into),
        ),
    )?;
    Ok(Some(AppConfig {
        name: AppName::default_app(),
        oa_appid: parse_app_id("WXNOTIFY_OA_APPID", oa_appid)?,
        oa_secret: oa_secret.into(),
        mp_appid,
        mp_secret,
        callback_token: var("WXNOTIFY_CALLBACK_TOKEN")
            .map(|t| check_callback_token("WXNOTIFY_CALLBACK_TOKEN", t))
            .transpose()?,
        encoding_aes_key,
        encoding_aes_key_previous,
        mp_callback_token: var("WXNOTIFY_MP_CALLBACK_TOKEN")
            .map(|t| check_callback_token("WXNOTIFY_MP_CALLBACK_TOKEN", t))
            .transpose()?,
        mp_encoding_aes_key: var("WXNOTIFY_MP_ENCODING_AES_KEY")
            .map(|k| check_encoding_aes_key("WXNOTIFY_MP_ENCODING_AES_KEY", k.into()))
            .transpose()?,
        rate_per_second: var("WXNOTIFY_RATE_PER_SECOND")
            .map(|v| parse_rate("WXNOTIFY_RATE_PER_SECOND", &v))
            .transpose()?
            .unwrap_or(DEFAULT_RATE_PER_SECOND),
        token_source: var("WXNOTIFY_TOKEN_SOURCE")
            .map(|v| parse_token_source("WXNOTIFY_TOKEN_SOURCE", &v))
            .transpose()?
            .unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn break_glass_tokens_shorter_than_32_characters_are_refused_by_name() {
        let long = "x".repeat(MIN_ADMIN_TOKEN_CHARS);
        let short = "y".repeat(MIN_ADMIN_TOKEN_CHARS - 1);
        assert!(settings(&[]).unwrap().require_strong_admin_tokens().is_ok());
        let ok = settings(&[
            ("WXNOTIFY_ADMIN_TOKEN", long.as_str()),
            ("WXNOTIFY_VIEWER_TOKEN", long.as_str()),
        ]);
        assert!(ok.unwrap().require_strong_admin_tokens().is_ok());
        for name in ["WXNOTIFY_ADMIN_TOKEN", "WXNOTIFY_VIEWER_TOKEN"] {
            let e = settings(&[(name, short.as_str())])
                .unwrap()
                .require_strong_admin_tokens()
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(name) && e.contains("32"), "{e}");
            assert!(!e.contains(&short), "the value is never shown: {e}");
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.database_url.expose_secret(), DEFAULT_DATABASE_URL);
        assert_eq!(s.queue_prefix, "wxnotify");
        assert!(s.apps.is_empty());
        assert!(
            s.require_apps()
                .unwrap_err()
                .to_string()
                .contains("WXNOTIFY_OA_APPID")
        );
    }

    #[test]
    fn the_default_app_comes_from_the_environment_and_debug_hides_secrets() {
        let s = settings(&[
            ("WXNOTIFY_OA_APPID", "wxoa0000000000001"),
            ("WXNOTIFY_OA_SECRET", "s3cr3t-oa"),
            ("WXNOTIFY_MP_APPID", "wxmp0000000000001"),
            ("WXNOTIFY_MP_SECRET", "s3cr3t-mp"),
            ("AMQP_URL", "amqp://u:hunter2@h/%2f"),
        ])
        .unwrap();
        let app = s.app(&AppName::default_app()).unwrap();
        assert_eq!(app.oa_appid.as_str(), "wxoa0000000000001");
        let debug = format!("{s:?}");
        for secret in ["s3cr3t-oa", "s3cr3t-mp", "hunter2"] {
            assert!(!debug.contains(secret), "{secret} leaked in {debug}");
        }
    }

    #[test]
    fn bad_settings_are_named_with_a_fix() {
        let err = settings(&[("WXNOTIFY_OA_APPID", "wx1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("WXNOTIFY_OA_SECRET is not set"), "{err}");
        let err = settings(&[
            ("WXNOTIFY_OA_APPID", "wx1"),
            ("WXNOTIFY_OA_SECRET", "s"),
            ("WXNOTIFY_RATE_PER_SECOND", "fast"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("WXNOTIFY_RATE_PER_SECOND is invalid"), "{err}");
        let err = settings(&[("WECHAT_API_BASE", "not a url")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("WECHAT_API_BASE"), "{err}");
    }

    #[test]
    fn the_secret_key_is_32_bytes_of_base64_and_a_bad_one_is_named_without_its_value() {
        assert!(!settings(&[]).unwrap().secrets.encrypts());
        let key = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
        let s = settings(&[("WXNOTIFY_SECRET_KEY", key)]).unwrap();
        assert!(s.secrets.encrypts());
        assert!(!format!("{s:?}").contains(key));
        let short = "c2hvcnQta2V5";
        let err = settings(&[("WXNOTIFY_SECRET_KEY", short)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("WXNOTIFY_SECRET_KEY is invalid"), "{err}");
        assert!(err.contains("openssl rand -base64 32"), "{err}");
        assert!(!err.contains(short), "{err}");
    }

    #[test]
    fn a_callback_token_outside_wechats_3_to_32_characters_is_refused_without_showing_it() {
        let base = [("WXNOTIFY_OA_APPID", "wx1"), ("WXNOTIFY_OA_SECRET", "s")];
        let long = "x".repeat(33);
        for bad in ["zq", long.as_str(), "has space", "tökén"] {
            let mut vars = base.to_vec();
            vars.push(("WXNOTIFY_CALLBACK_TOKEN", bad));
            let err = settings(&vars).unwrap_err().to_string();
            assert!(err.contains("WXNOTIFY_CALLBACK_TOKEN is invalid"), "{err}");
            assert!(!err.contains(bad), "the token leaked: {err}");
        }
        for good in ["abc", "AAAAA", "tok-en", "x".repeat(32).as_str()] {
            let mut vars = base.to_vec();
            vars.push(("WXNOTIFY_CALLBACK_TOKEN", good));
            let s = settings(&vars).unwrap();
            assert_eq!(
                s.apps[0].callback_token.as_ref().unwrap().expose_secret(),
                good
            );
        }
    }

    const KEY_NOW: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const KEY_BEFORE: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";

    #[test]
    fn the_previous_encoding_aes_key_is_read_checked_and_hidden_like_the_current_one() {
        let base = [("WXNOTIFY_OA_APPID", "wx1"), ("WXNOTIFY_OA_SECRET", "s")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut vars = base.to_vec();
            vars.extend_from_slice(extra);
            settings(&vars)
        };
        let s = with(&[
            ("WXNOTIFY_ENCODING_AES_KEY", KEY_NOW),
            ("WXNOTIFY_ENCODING_AES_KEY_PREVIOUS", KEY_BEFORE),
        ])
        .unwrap();
        let app = &s.apps[0];
        assert_eq!(
            app.encoding_aes_key.as_ref().unwrap().expose_secret(),
            KEY_NOW
        );
        assert_eq!(
            app.encoding_aes_key_previous
                .as_ref()
                .unwrap()
                .expose_secret(),
            KEY_BEFORE
        );
        let debug = format!("{s:?}");
        assert!(
            !debug.contains(KEY_NOW) && !debug.contains(KEY_BEFORE),
            "{debug}"
        );

        // A bad value of either is named, without being shown.
        let short = "abcdefghijklmnopqrstuvwxyz0123456789ABCDE";
        for (name, extra) in [
            (
                "WXNOTIFY_ENCODING_AES_KEY is invalid",
                [
                    ("WXNOTIFY_ENCODING_AES_KEY", short),
                    ("WXNOTIFY_ENCODING_AES_KEY_PREVIOUS", KEY_BEFORE),
                ],
            ),
            (
                "WXNOTIFY_ENCODING_AES_KEY_PREVIOUS is invalid",
                [
                    ("WXNOTIFY_ENCODING_AES_KEY", KEY_NOW),
                    ("WXNOTIFY_ENCODING_AES_KEY_PREVIOUS", short),
                ],
            ),
            (
                "WXNOTIFY_ENCODING_AES_KEY_PREVIOUS is invalid",
                [
                    ("WXNOTIFY_ENCODING_AES_KEY", KEY_NOW),
                    (
                        "WXNOTIFY_ENCODING_AES_KEY_PREVIOUS",
                        "not*base64*at*all*but*43*characters*long**",
                    ),
                ],
            ),
        ] {
            let err = with(&extra).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
            assert!(
                !err.contains(short) && !err.contains("not*base64"),
                "the key leaked: {err}"
            );
        }
        // A previous key alone serves nothing: refused, naming both settings.
        let err = with(&[("WXNOTIFY_ENCODING_AES_KEY_PREVIOUS", KEY_BEFORE)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("WXNOTIFY_ENCODING_AES_KEY_PREVIOUS is invalid")
                && err.contains("WXNOTIFY_ENCODING_AES_KEY is not"),
            "{err}"
        );
    }

    #[test]
    fn a_toml_app_names_its_previous_encoding_aes_key_variable() {
        let dir = std::env::temp_dir().join(format!("wxnotify-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("apps.toml");
        std::fs::write(
            &path,
            r#"
[[app]]
name = "shop"
oa_appid = "wxshop00000000001"
oa_secret_env = "SHOP_OA_SECRET"
encoding_aes_key_env = "SHOP_AES_KEY"
encoding_aes_key_previous_env = "SHOP_AES_KEY_PREVIOUS"
"#,
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let s = settings(&[
            ("WXNOTIFY_CONFIG", file),
            ("SHOP_OA_SECRET", "x"),
            ("SHOP_AES_KEY", KEY_NOW),
            ("SHOP_AES_KEY_PREVIOUS", KEY_BEFORE),
        ])
        .unwrap();
        let shop = s.app(&AppName::parse("shop").unwrap()).unwrap();
        assert_eq!(
            shop.encoding_aes_key_previous
                .as_ref()
                .unwrap()
                .expose_secret(),
            KEY_BEFORE
        );
        let err = settings(&[
            ("WXNOTIFY_CONFIG", file),
            ("SHOP_OA_SECRET", "x"),
            ("SHOP_AES_KEY", KEY_NOW),
            ("SHOP_AES_KEY_PREVIOUS", "short"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("[[app]] shop encoding_aes_key_previous is invalid"),
            "{err}"
        );
        let err = settings(&[
            ("WXNOTIFY_CONFIG", file),
            ("SHOP_OA_SECRET", "x"),
            ("SHOP_AES_KEY", KEY_NOW),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("SHOP_AES_KEY_PREVIOUS"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn several_apps_come_from_the_toml_file_with_secrets_from_env() {
        let dir = std::env::temp_dir().join(format!("wxnotify-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("apps.toml");
        std::fs::write(
            &path,
            r#"
[[app]]
name = "shop"
oa_appid = "wxshop00000000001"
oa_secret_env = "SHOP_OA_SECRET"
rate_per_second = 100
token_source = "classic"
"#,
        )
        .unwrap();
        let s = settings(&[
            ("WXNOTIFY_CONFIG", path.to_str().unwrap()),
            ("SHOP_OA_SECRET", "x"),
        ])
        .unwrap();
        let shop = s.app(&AppName::parse("shop").unwrap()).unwrap();
        assert_eq!(shop.rate_per_second, 100);
        assert_eq!(shop.token_source, TokenSource::Classic);
        let err = settings(&[("WXNOTIFY_CONFIG", path.to_str().unwrap())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("SHOP_OA_SECRET"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
