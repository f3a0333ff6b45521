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

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::PgPool;
use uuid::Uuid;

use super::client::{AccessToken, FetchedToken, WechatClient, WechatError};
use super::errcode::ErrClass;
use crate::config::{AppConfig, TokenSource};
use crate::domain::{AppId, AppName};

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
}

impl TokenError {
    /// What the caller should do: WeChat's class, or transient for database trouble.
    pub fn class(&self) -> ErrClass {
        match self {
            TokenError::Wechat(e) => e.class(),
            TokenError::UnknownApp(_) => ErrClass::Permanent(super::PermanentKind::Config),
            TokenError::Db(_) | TokenError::WaitTimeout(_) => ErrClass::Transient,
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

/// The stored token, with its remaining times measured by Postgres's clock.
struct Stored {
    token: AccessToken,
    /// Zero when the token is due for refresh.
    until_refresh: Duration,
    /// Zero when the token has expired (or was invalidated).
    until_expiry: Duration,
}

impl Stored {
    /// The token for the in-memory cache, if it is not due for refresh yet.
    fn fresh(self) -> Option<Cached> {
        (!self.until_refresh.is_zero()).then(|| Cached {
            refresh_at: Utc::now() + self.until_refresh,
            token: self.token,
        })
    }
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
}

/// The shared token store; cheap to clone.
#[derive(Clone)]
pub struct TokenStore {
    inner: Arc<Inner>,
}

impl TokenStore {
    /// A store for `apps`, backed by `pool`, fetching through `client`.
    pub fn new(pool: PgPool, client: WechatClient, apps: &[AppConfig]) -> Self {
        let creds: HashMap<_, _> = apps
            .iter()
            .map(|a| {
                let creds = Creds {
                    appid: a.oa_appid.clone(),
                    secret: a.oa_secret.clone(),
                    source: a.token_source,
                };
                (a.name.clone(), creds)
            })
            .collect();
        let fetching = creds
            .keys()
            .map(|k| (k.clone(), Default::default()))
            .collect();
        TokenStore {
            inner: Arc::new(Inner {
                pool,
                client,
                creds,
                cache: RwLock::default(),
                fetching,
                me: Uuid::new_v4(),
            }),
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
        let expired = sqlx::query(
            "UPDATE access_tokens SET expires_at = now(), fetched_at = now() - interval '1 second'
             WHERE app = $1 AND token = $2 AND expires_at > now()",
        )
        .bind(app.as_str())
        .bind(bad.expose())
        .execute(&self.inner.pool)
        .await?
        .rows_affected();
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

    /// The stored token if it is fresh; else the lease and a refresh; else wait for the holder.
    async fn load_or_refresh(&self, app: &AppName) -> Result<Cached, TokenError> {
        let deadline = tokio::time::Instant::now() + LEASE + Duration::from_secs(5);
        sqlx::query("INSERT INTO access_tokens (app) VALUES ($1) ON CONFLICT (app) DO NOTHING")
            .bind(app.as_str())
            .execute(&self.inner.pool)
            .await?;
        loop {
            if let Some(fresh) = self.stored(app).await?.and_then(Stored::fresh) {
                return Ok(fresh);
            }
            if self.take_lease(app).await? {
                return self.refresh_holding_lease(app).await;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(TokenError::WaitTimeout(app.clone()));
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }

    async fn stored(&self, app: &AppName) -> Result<Option<Stored>, TokenError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            token: Option<String>,
            expires_at: Option<DateTime<Utc>>,
            fetched_at: Option<DateTime<Utc>>,
            db_now: DateTime<Utc>,
        }
        let row: Option<Row> = sqlx::query_as(
            "SELECT token, expires_at, fetched_at, now() AS db_now FROM access_tokens WHERE app = $1",
        )
        .bind(app.as_str())
        .fetch_optional(&self.inner.pool)
        .await?;
        let remaining = |until: DateTime<Utc>, now: DateTime<Utc>| {
            (until - now).to_std().unwrap_or(Duration::ZERO)
        };
        Ok(match row {
            Some(Row {
                token: Some(token),
                expires_at: Some(expires_at),
                fetched_at: Some(fetched_at),
                db_now,
            }) => Some(Stored {
                token: AccessToken::new(token),
                until_refresh: remaining(refresh_at(fetched_at, expires_at), db_now),
                until_expiry: remaining(expires_at, db_now),
            }),
            _ => None,
        })
    }

    async fn take_lease(&self, app: &AppName) -> Result<bool, TokenError> {
        let taken = sqlx::query(
            "UPDATE access_tokens
             SET refresh_holder = $2, refresh_lease_until = now() + make_interval(secs => $3)
             WHERE app = $1 AND (refresh_lease_until IS NULL OR refresh_lease_until < now())",
        )
        .bind(app.as_str())
        .bind(self.inner.me)
        .bind(LEASE.as_secs_f64())
        .execute(&self.inner.pool)
        .await?
        .rows_affected();
        Ok(taken == 1)
    }

    async fn refresh_holding_lease(&self, app: &AppName) -> Result<Cached, TokenError> {
        // Someone may have stored a fresh token between our read and our lease.
        if let Some(fresh) = self.stored(app).await?.and_then(Stored::fresh) {
            self.release_lease(app).await?;
            return Ok(fresh);
        }
        let creds = self
            .inner
            .creds
            .get(app)
            .ok_or_else(|| TokenError::UnknownApp(app.clone()))?;
        let fetched = match self.fetch(creds).await {
            Ok(f) => f,
            Err(e) => {
                self.release_lease(app).await?;
                return self.keep_valid_token(app, e).await;
            }
        };
        let source = match creds.source {
            TokenSource::Stable => "stable",
            TokenSource::Classic => "classic",
        };
        // Fenced on the lease: a holder whose lease lapsed and was taken over (a slow call to
        // WeChat) must not overwrite the token of the process that holds it now.
        let stored = sqlx::query(
            "UPDATE access_tokens
             SET token = $2, fetched_at = now(), expires_at = now() + make_interval(secs => $3),
                 source = $4, refresh_holder = NULL, refresh_lease_until = NULL,
                 refreshes = refreshes + 1
             WHERE app = $1 AND refresh_holder = $5",
        )
        .bind(app.as_str())
        .bind(fetched.token.expose())
        .bind(fetched.expires_in.as_secs_f64())
        .bind(source)
        .bind(self.inner.me)
        .execute(&self.inner.pool)
        .await?
        .rows_affected();
        if stored == 0 {
            tracing::warn!(app = %app, "the refresh lease was taken over during the call to WeChat; the token it got is not stored");
            if let Some(fresh) = self.stored(app).await?.and_then(Stored::fresh) {
                return Ok(fresh);
            }
            // Nothing fresh stored yet: the token WeChat just gave is valid; use it for now and
            // look at the store again soon.
            return Ok(Cached {
                token: fetched.token,
                refresh_at: Utc::now() + RETRY_FAILED_REFRESH.min(fetched.expires_in),
            });
        }
        tracing::info!(app = %app, source, expires_in_s = fetched.expires_in.as_secs(), "access token refreshed");
        metrics::counter!("wxnotify_token_refreshes_total", "app" => app.to_string()).increment(1);
        let now = Utc::now();
        Ok(Cached {
            token: fetched.token,
            refresh_at: refresh_at(now, now + fetched.expires_in),
        })
    }

    /// A refresh failed: the stored token is still good until it expires, so use it (and try
    /// again a little later) rather than fail every send. An invalidated token has expired.
    async fn keep_valid_token(
        &self,
        app: &AppName,
        error: WechatError,
    ) -> Result<Cached, TokenError> {
        match self.stored(app).await? {
            Some(stored) if !stored.until_expiry.is_zero() => {
                tracing::warn!(
                    app = %app,
                    error = %error,
                    class = ?error.class(),
                    expires_in_s = stored.until_expiry.as_secs(),
                    "refreshing the access token failed; the current one stays in use until it expires"
                );
                Ok(Cached {
                    refresh_at: Utc::now() + stored.until_expiry.min(RETRY_FAILED_REFRESH),
                    token: stored.token,
                })
            }
            _ => Err(error.into()),
        }
    }

    async fn release_lease(&self, app: &AppName) -> Result<(), TokenError> {
        sqlx::query(
            "UPDATE access_tokens SET refresh_holder = NULL, refresh_lease_until = NULL
             WHERE app = $1 AND refresh_holder = $2",
        )
        .bind(app.as_str())
        .bind(self.inner.me)
        .execute(&self.inner.pool)
        .await?;
        Ok(())
    }

    async fn fetch(&self, creds: &Creds) -> Result<FetchedToken, WechatError> {
        let client = &self.inner.client;
        match creds.source {
            TokenSource::Stable => {
                client
                    .stable_token(&creds.appid, &creds.secret, false)
                    .await
            }
            TokenSource::Classic => client.classic_token(&creds.appid, &creds.secret).await,
        }
    }
}

/// When a token fetched at `fetched_at` and expiring at `expires_at` should be replaced: a
/// quarter of its life (at most [`MAX_MARGIN`]) before expiry. For stable tokens this falls in
/// WeChat's last five minutes, when `stable_token` hands out the next token.
fn refresh_at(fetched_at: DateTime<Utc>, expires_at: DateTime<Utc>) -> DateTime<Utc> {
    let life = (expires_at - fetched_at).to_std().unwrap_or_default();
    let margin = (life / 4).min(MAX_MARGIN);
    expires_at - margin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refreshed_ahead_of_expiry() {
        let t0 = Utc::now();
        let two_hours = t0 + Duration::from_secs(7200);
        assert_eq!(
            refresh_at(t0, two_hours),
            two_hours - Duration::from_secs(240)
        );
        let short = t0 + Duration::from_secs(40);
        assert_eq!(refresh_at(t0, short), short - Duration::from_secs(10));
    }
}
