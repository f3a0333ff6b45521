//! The optional TOML file (`WXNOTIFY_CONFIG`) that configures several apps: its `[[app]]`
//! tables, with each secret read from the environment variable or file the table names.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{
    AppConfig, ConfigError, DEFAULT_RATE_PER_SECOND, TokenSource, check_callback_token,
    check_encoding_aes_key, encoding_aes_keys, parse_app_id,
};
use crate::domain::AppName;

/// One `[[app]]` of the TOML file. Secrets are not written in the file: each is read from an
/// environment variable (`*_env`) or a file (`*_file`, e.g. a mounted secret).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileApp {
    name: String,
    oa_appid: String,
    oa_secret_env: Option<String>,
    oa_secret_file: Option<PathBuf>,
    mp_appid: Option<String>,
    mp_secret_env: Option<String>,
    mp_secret_file: Option<PathBuf>,
    callback_token_env: Option<String>,
    encoding_aes_key_env: Option<String>,
    encoding_aes_key_previous_env: Option<String>,
    mp_callback_token_env: Option<String>,
    mp_encoding_aes_key_env: Option<String>,
    rate_per_second: Option<u32>,
    token_source: Option<TokenSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    app: Vec<FileApp>,
}

/// The apps of the TOML file at `path`, secrets read through `var` or from files.
pub(super) fn apps_from_file(
    path: &Path,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<AppConfig>, ConfigError> {
    let file_err = |reason: String| ConfigError::File {
        path: path.into(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let parsed: FileConfig = toml::from_str(&text).map_err(|e| file_err(e.to_string()))?;
    parsed
        .app
        .into_iter()
        .map(|a| {
            let key = |field: &str| format!("[[app]] {} {field}", a.name);
            let secret = |field: &str, env: &Option<String>, file: &Option<PathBuf>| {
                read_secret(&key(field), env, file, var)
            };
            let oa_secret = secret("oa_secret", &a.oa_secret_env, &a.oa_secret_file)?.ok_or(
                ConfigError::Missing {
                    name: key("oa_secret_env"),
                    hint: "Name the variable (oa_secret_env) or file (oa_secret_file) that holds the OA AppSecret.",
                },
            )?;
            let rate = a.rate_per_second.unwrap_or(DEFAULT_RATE_PER_SECOND);
            if rate == 0 {
                return Err(ConfigError::Invalid {
                    name: key("rate_per_second"),
                    reason: "0".into(),
                    hint: "Give template sends per second, e.g. 500.",
                });
            }
            let (encoding_aes_key, encoding_aes_key_previous) = encoding_aes_keys(
                (
                    &key("encoding_aes_key"),
                    secret("encoding_aes_key", &a.encoding_aes_key_env, &None)?,
                ),
                (
                    &key("encoding_aes_key_previous"),
                    secret(
                        "encoding_aes_key_previous",
                        &a.encoding_aes_key_previous_env,
                        &None,
                    )?,
                ),
            )?;
            Ok(AppConfig {
                name: AppName::parse(a.name.clone()).map_err(|e| ConfigError::Invalid {
                    name: "[[app]] name".into(),
                    reason: e.to_string(),
                    hint: "Use a short name of letters, digits, '-', '_' or '.'.",
                })?,
                oa_appid: parse_app_id(&key("oa_appid"), a.oa_appid.clone())?,
                oa_secret,
                mp_appid: a
                    .mp_appid
                    .clone()
                    .map(|v| parse_app_id(&key("mp_appid"), v))
                    .transpose()?,
                mp_secret: secret("mp_secret", &a.mp_secret_env, &a.mp_secret_file)?,
                callback_token: secret("callback_token", &a.callback_token_env, &None)?
                    .map(|t| {
                        check_callback_token(&key("callback_token"), t.expose_secret().to_owned())
                    })
                    .transpose()?,
                encoding_aes_key,
                encoding_aes_key_previous,
                mp_callback_token: secret("mp_callback_token", &a.mp_callback_token_env, &None)?
                    .map(|t| {
                        check_callback_token(
                            &key("mp_callback_token"),
                            t.expose_secret().to_owned(),
                        )
                    })
                    .transpose()?,
                mp_encoding_aes_key: secret(
                    "mp_encoding_aes_key",
                    &a.mp_encoding_aes_key_env,
                    &None,
                )?
                .map(|k| check_encoding_aes_key(&key("mp_encoding_aes_key"), k))
                .transpose()?,
                rate_per_second: rate,
                token_source: a.token_source.unwrap_or_default(),
            })
        })
        .collect()
}

/// A secret named by an `*_env` variable or an `*_file` path; `None` when neither is given.
fn read_secret(
    name: &str,
    env: &Option<String>,
    file: &Option<PathBuf>,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Option<SecretString>, ConfigError> {
    if let Some(env) = env {
        return var(env)
            .map(|v| Some(v.into()))
            .ok_or(ConfigError::Missing {
                name: format!("{env} (named by {name}_env)"),
                hint: "Export that variable, or point the config at another one.",
            });
    }
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError::File {
            path: file.clone(),
            reason: format!("{e} (named by {name}_file)"),
        })?;
        return Ok(Some(text.trim().to_owned().into()));
    }
    Ok(None)
}
