//! The access-token store shared by every wxnotify process.
//!
//! Each process keeps the current token of each app in memory; Postgres (`access_tokens`) holds
//! the one token all processes share. A token is refreshed *ahead* of its expiry (when less than a
//! quarter of its life, at most 4 minutes, is left), by one process at a time: the refresher takes
//! a lease on the app's row with a conditional update, calls WeChat without holding any lock or
//! connection, stores the new token and drops the lease; the others wait for the new token.
//!
//! When WeChat answers 40001/40014/42001 for token T, [`TokenStore::invalidate`] expires T only
//! if T is still the stored token (compare and swap), so a thousand callers that all saw T cause
//! one refresh. `cgi-bin/stable_token` is the default source (several holders never invalidate
//! each other); `force_refresh` is never used.
//!
//! Every instant in `access_tokens` is written and judged by Postgres's clock (`now()`), so hosts
//! whose clocks disagree with each other or with the database still agree on which token is
//! fresh; a process's own clock only times the in-memory copy.
//!
//! When a refresh fails (WeChat down, quota, even a bad secret) while the stored token has not
//! expired yet, the store keeps using that token and tries again [`RETRY_FAILED_REFRESH`] later.
//! Callers that were waiting for a refresh that failed share its error instead of each asking
//! WeChat again at once.
//!
//! The token column is written and read through the process's [`SecretCodec`]: encrypted when
//! `WXNOTIFY_SECRET_KEY` is set. [`check_stored_key`] tells at start whether the key opens the
//! stored tokens.
//!
//! This file holds the store and its in-memory side; [`shared`] the row in Postgres every
//! process shares (read, lease, refresh through WeChat, release).

mod shared;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::PgPool;
use uuid::Uuid;

use super::client::{AccessToken, WechatClient, WechatError};
use super::errcode::ErrClass;
use crate::at_rest::{OpenError, Place, SecretCodec};
use crate::domain::{AppId, AppName};

/// Where access tokens come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// `POST cgi-bin/stable_token` (default): several holders never invalidate each other.
    #[default]
    Stable,
    /// `GET cgi-bin/token`: every call mints a new token; the old one dies 5 minutes later.
    Classic,
}

/// What the token store needs of one app: the OA's credentials and where its tokens come from.
#[derive(Clone)]
pub struct OaCredentials {
    /// wxnotify's name for the app.
    pub app: AppName,
    /// The Official Account's appid.
    pub appid: AppId,
    /// The Official Account's AppSecret.
    pub secret: SecretString,
    /// Where its access tokens come from.
    pub source: TokenSource,
    /// The Mini Program's appid and AppSecret, when configured: its own access token sends
    /// subscribe messages.
    pub mini_program: Option<(AppId, SecretString)>,
}

/// Whose access tokens a store keeps: the Official Accounts' or the Mini Programs'. Each app has
/// one row of each kind in `access_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    Oa,
    Mp,
}

impl TokenKind {
    /// The `access_tokens.kind` value.
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Oa => "oa",
            TokenKind::Mp => "mp",
        }
    }
}

/// How long a refresher may hold the lease before others may take over.
const LEASE: Duration = Duration::from_secs(30);
/// How often a waiting process looks for the token another one is fetching.
const WAIT_POLL: Duration = Duration::from_millis(25);
/// The most lead time before expiry at which a token is refreshed.
const MAX_MARGIN: Duration = Duration::from_secs(240);
/// After a failed refresh, how long a still-valid token is used before the next attempt.
pub const RETRY_FAILED_REFRESH: Duration = Duration::from_secs(10);

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No such app is configured.
    #[error("app {0} is not configured")]
    UnknownApp(AppName),
    /// WeChat refused or could not be reached.
    #[error("fetching the access token failed: {0}")]
    Wechat(#[from] WechatError),
    /// Postgres failed.
    #[error("the token table could not be used: {0}")]
    Db(#[from] sqlx::Error),
    /// Another process held the refresh lease and no token appeared in time.
    #[error("timed out waiting for another process to refresh the access token of {0}")]
    WaitTimeout(AppName),
    /// The stored token could not be decrypted (`WXNOTIFY_SECRET_KEY` unset or another key).
    #[error(transparent)]
    Sealed(#[from] OpenError),
}

impl TokenError {
    /// The WeChat endpoint that failed, for WeChat's errors.
    pub fn endpoint(&self) -> Option<&'static str> {
        match self {
            TokenError::Wechat(e) => Some(e.endpoint()),
            _ => None,
        }
    }

    /// What the caller should do: WeChat's class, or transient for database trouble.
    pub fn class(&self) -> ErrClass {
        match self {
            TokenError::Wechat(e) => e.class(),
            TokenError::UnknownApp(_) => ErrClass::Permanent(super::PermanentKind::Config),
            // A key to fix: the job waits for it rather than die.
            TokenError::Db(_) | TokenError::WaitTimeout(_) | TokenError::Sealed(_) => {
                ErrClass::Transient
            }
        }
    }
}

#[derive(Clone)]
struct Creds {
    appid: AppId,
    secret: SecretString,
    source: TokenSource,
}

#[derive(Clone)]
struct Cached {
    token: AccessToken,
    /// By this process's clock.
    refresh_at: DateTime<Utc>,
}
/// The last refresh of an app in this process that failed.
struct Failure {
    at: Instant,
    error: WechatError,
}

struct Inner {
    pool: PgPool,
    client: WechatClient,
    creds: HashMap<AppName, Creds>,
    /// The token each app uses now, read on every send (hence a std lock held for a copy only).
    cache: RwLock<HashMap<AppName, Cached>>,
    /// Single flight inside the process: one task per app goes to Postgres/WeChat, the others
    /// wait on this lock and then find the token in `cache`, or the error of the refresh they
    /// waited for in the lock's value.
    fetching: HashMap<AppName, tokio::sync::Mutex<Option<Failure>>>,
    /// This process's identity as a lease holder.
    me: Uuid,
    /// How the token column is stored.
    secrets: SecretCodec,
    /// Whose tokens these are.
    kind: TokenKind,
}

/// The column of the stored tokens, for the [`SecretCodec`].
const TOKEN_COLUMN: &str = "access_tokens.token";
/// The same column for the Mini Programs' tokens (sealed apart from the OA's).
const MP_TOKEN_COLUMN: &str = "access_tokens.token.mp";

/// Where the token of `app` of `kind` is stored.
fn token_place<'a>(kind: &str, app: &'a str) -> Place<'a> {
    Place {
        column: if kind == TokenKind::Mp.as_str() {
            MP_TOKEN_COLUMN
        } else {
            TOKEN_COLUMN
        },
        app,
    }
}

/// Fails when a stored token does not open with `secrets` (another key, or none while tokens are
/// encrypted): checked at start, so a wrong `WXNOTIFY_SECRET_KEY` stops the process at once.
pub async fn check_stored_key(pool: &PgPool, secrets: &SecretCodec) -> Result<(), TokenError> {
    let row: Option<(String, String, String)> = sqlx::query_as(
        "SELECT app, kind, token FROM access_tokens WHERE token LIKE $1 ORDER BY fetched_at DESC LIMIT 1",
    )
    .bind(SecretCodec::sealed_like())
    .fetch_optional(pool)
    .await?;
    if let Some((app, kind, token)) = row {
        secrets.open(token_place(&kind, &app), &token)?;
    }
    Ok(())
}

/// The shared token store; cheap to clone. It keeps the OA's token of each app and, beside it,
/// the Mini Program's ([`TokenStore::mini_programs`]).
#[derive(Clone)]
pub struct TokenStore {
    inner: Arc<Inner>,
    /// The Mini Programs' tokens (same rules, rows of kind `mp`).
    mini_programs: Option<Arc<Inner>>,
}

impl TokenStore {
    /// A store for `apps`, backed by `pool`, fetching through `client`, keeping tokens as they
    /// are (no `WXNOTIFY_SECRET_KEY`).
    pub fn new<A: Into<OaCredentials>>(
        pool: PgPool,
        client: WechatClient,
        apps: impl IntoIterator<Item = A>,
    ) -> Self {
        Self::with_secrets(pool, client, apps, SecretCodec::plain())
    }

    /// [`TokenStore::new`], storing tokens through `secrets` (the settings' codec).
    pub fn with_secrets<A: Into<OaCredentials>>(
        pool: PgPool,
        client: WechatClient,
        apps: impl IntoIterator<Item = A>,
        secrets: SecretCodec,
    ) -> Self {
        let mut creds = HashMap::new();
        let mut mp_creds = HashMap::new();
        for a in apps {
            let a: OaCredentials = a.into();
            if let Some((appid, secret)) = a.mini_program {
                let mp = Creds {
                    appid,
                    secret,
                    source: a.source,
                };
                mp_creds.insert(a.app.clone(), mp);
            }
            let oa = Creds {
                appid: a.appid,
                secret: a.secret,
                source: a.source,
            };
            creds.insert(a.app, oa);
        }
        let inner = |creds: HashMap<AppName, Creds>, kind| {
            let fetching = creds
                .keys()
                .map(|k| (k.clone(), Default::default()))
                .collect();
            Arc::new(Inner {
                pool: pool.clone(),
                client: client.clone(),
                creds,
                cache: RwLock::default(),
                fetching,
                me: Uuid::new_v4(),
                secrets: secrets.clone(),
                kind,
            })
        };
        TokenStore {
            inner: inner(creds, TokenKind::Oa),
            mini_programs: Some(inner(mp_creds, TokenKind::Mp)),
        }
    }

    /// The store of the Mini Programs' access tokens (for subscribe messages): the same
    /// sharing, refresh and invalidation rules, for the apps whose Mini Program credentials are
    /// configured (any other app is [`TokenError::UnknownApp`]).
    pub fn mini_programs(&self) -> TokenStore {
        TokenStore {
            inner: self
                .mini_programs
                .clone()
                .unwrap_or_else(|| self.inner.clone()),
            mini_programs: None,
        }
    }

    /// The app's current token, refreshed first if it is close to expiry.
    pub async fn get(&self, app: &AppName) -> Result<AccessToken, TokenError> {
        if let Some(token) = self.cached(app) {
            return Ok(token);
        }
        let lock = self
            .inner
            .fetching
            .get(app)
            .ok_or_else(|| TokenError::UnknownApp(app.clone()))?;
        let arrived = Instant::now();
        let mut last_failure = lock.lock().await;
        if let Some(token) = self.cached(app) {
            return Ok(token);
        }
        // The refresh we waited for failed: its answer is ours too. Asking WeChat again, once per
        // waiting caller, would only hammer an endpoint that is failing.
        if let Some(failure) = last_failure.as_ref().filter(|f| f.at >= arrived) {
            return Err(TokenError::Wechat(failure.error.clone()));
        }
        match self.load_or_refresh(app).await {
            Ok(cached) => {
                *last_failure = None;
                let token = cached.token.clone();
                self.inner
                    .cache
                    .write()
                    .expect("token cache")
                    .insert(app.clone(), cached);
                Ok(token)
            }
            Err(TokenError::Wechat(error)) => {
                *last_failure = Some(Failure {
                    at: Instant::now(),
                    error: error.clone(),
                });
                Err(TokenError::Wechat(error))
            }
            Err(other) => Err(other),
        }
    }

    /// WeChat said `bad` is invalid or expired: forget it (here, and in Postgres if it is still
    /// the stored token) and return a fresh token, refreshed once whoever else saw `bad` too.
    pub async fn invalidate(
        &self,
        app: &AppName,
        bad: &AccessToken,
    ) -> Result<AccessToken, TokenError> {
        {
            let mut cache = self.inner.cache.write().expect("token cache");
            if cache.get(app).is_some_and(|c| &c.token == bad) {
                cache.remove(app);
            }
        }
        // Compare and swap on the stored form: an encrypted token differs from its plain text,
        // and each encryption of one token differs (a nonce per value).
        let stored: Option<String> = sqlx::query_scalar(
            "SELECT token FROM access_tokens WHERE app = $1 AND kind = $2 AND expires_at > now()",
        )
        .bind(app.as_str())
        .bind(self.inner.kind.as_str())
        .fetch_optional(&self.inner.pool)
        .await?
        .flatten();
        let mut expired = 0;
        if let Some(stored) = stored
            && self
                .inner
                .secrets
                .open(token_place(self.inner.kind.as_str(), app.as_str()), &stored)?
                == bad.expose()
        {
            expired = sqlx::query(
                "UPDATE access_tokens SET expires_at = now(), fetched_at = now() - interval '1 second'
                 WHERE app = $1 AND kind = $3 AND token = $2 AND expires_at > now()",
            )
            .bind(app.as_str())
            .bind(&stored)
            .bind(self.inner.kind.as_str())
            .execute(&self.inner.pool)
            .await?
            .rows_affected();
        }
        if expired > 0 {
            tracing::info!(app = %app, "access token rejected by WeChat; marked expired");
        }
        self.get(app).await
    }

    /// Runs `call` with the app's token; if WeChat rejects the token, invalidates it (compare and
    /// swap) and runs `call` once more with the new one.
    pub async fn with_token<T, F, Fut>(&self, app: &AppName, call: F) -> Result<T, TokenError>
    where
        F: Fn(AccessToken) -> Fut,
        Fut: Future<Output = Result<T, WechatError>>,
    {
        let token = self.get(app).await?;
        match call(token.clone()).await {
            Err(e) if e.class() == ErrClass::TokenInvalid => {
                let fresh = self.invalidate(app, &token).await?;
                Ok(call(fresh).await?)
            }
            other => Ok(other?),
        }
    }

    fn cached(&self, app: &AppName) -> Option<AccessToken> {
        let cache = self.inner.cache.read().expect("token cache");
        cache
            .get(app)
            .filter(|c| Utc::now() < c.refresh_at)
            .map(|c| c.token.clone())
    }
}
