//! The token row every process shares (`access_tokens`): read it by Postgres's clock, take
//! the refresh lease, fetch from WeChat without holding a lock, store, release; and when the
//! refresh fails, keep a token that has not expired yet.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    Cached, Creds, LEASE, MAX_MARGIN, RETRY_FAILED_REFRESH, TokenError, TokenStore, WAIT_POLL,
};
use super::{TokenSource, token_place};
use crate::domain::AppName;
use crate::wechat::client::{AccessToken, FetchedToken, WechatError};

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

impl TokenStore {
    /// The stored token if it is fresh; else the lease and a refresh; else wait for the holder.
    pub(super) async fn load_or_refresh(&self, app: &AppName) -> Result<Cached, TokenError> {
        let deadline = tokio::time::Instant::now() + LEASE + Duration::from_secs(5);
        sqlx::query(
            "INSERT INTO access_tokens (app, kind) VALUES ($1, $2) ON CONFLICT (app, kind) DO NOTHING",
        )
        .bind(app.as_str())
        .bind(self.inner.kind.as_str())
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
            "SELECT token, expires_at, fetched_at, now() AS db_now FROM access_tokens
             WHERE app = $1 AND kind = $2",
        )
        .bind(app.as_str())
        .bind(self.inner.kind.as_str())
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
                token: AccessToken::new(
                    self.inner
                        .secrets
                        .open(token_place(self.inner.kind.as_str(), app.as_str()), &token)?,
                ),
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
             WHERE app = $1 AND kind = $4
               AND (refresh_lease_until IS NULL OR refresh_lease_until < now())",
        )
        .bind(app.as_str())
        .bind(self.inner.me)
        .bind(LEASE.as_secs_f64())
        .bind(self.inner.kind.as_str())
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
             WHERE app = $1 AND kind = $6 AND refresh_holder = $5",
        )
        .bind(app.as_str())
        .bind(self.inner.secrets.seal(
            token_place(self.inner.kind.as_str(), app.as_str()),
            fetched.token.expose(),
        ))
        .bind(fetched.expires_in.as_secs_f64())
        .bind(source)
        .bind(self.inner.me)
        .bind(self.inner.kind.as_str())
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
        metrics::counter!("wxnotify_token_refresh_failures_total", "app" => app.to_string())
            .increment(1);
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
             WHERE app = $1 AND kind = $3 AND refresh_holder = $2",
        )
        .bind(app.as_str())
        .bind(self.inner.me)
        .bind(self.inner.kind.as_str())
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
