//! Failed authentications, limited per client address and per token prefix, with the counts in
//! Postgres (`auth_failures`) so that every `serve` process sees the same ones.
//!
//! One mechanism for every secret a client may guess, by [`Scope`]:
//!
//! - [`Scope::Admin`]: bearer tries on `/admin/api/...` and console logins, per client address
//!   and per token prefix;
//! - [`Scope::ApiKey`]: unknown or revoked producer API keys, per client address.
//!
//! Each failure is one upsert (all of its keys in one statement) in a fixed window; a success
//! writes nothing. Once a key reaches its limit it is locked until its window ends: every try on
//! it, right secret or not (so a guess cannot be confirmed), is answered 429 with `Retry-After`.
//! A process remembers the locks it learned, so a locked client costs it no query; the admin
//! scope also asks Postgres before it checks a token ([`FailureLimiter::locked`]), so a lock
//! taken through another process holds at once.
//!
//! The client is the TCP peer, or the address a trusted reverse proxy names in
//! `--client-ip-header` (its last value); an IPv6 client counts by its /64.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::http::request::Parts;
use dashmap::DashMap;
use sqlx::PgPool;

use crate::edge::login_limits::{Peer, client_ip, client_key};

/// What is being guessed: each scope counts apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Admin and viewer tokens, personal or break-glass (the admin API and the console).
    Admin,
    /// Producer API keys.
    ApiKey,
}

impl Scope {
    /// The scope's name in `auth_failures` and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::ApiKey => "api_key",
        }
    }
}

/// How many failures a key may have in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimits {
    /// Failures allowed per key per window; the try after them is refused.
    pub max_failures: u32,
    /// The window (fixed, starting at a key's first failure).
    pub window: Duration,
}

/// Failed admin logins or bearer tries per client address (and per token prefix) per minute.
pub const ADMIN_FAILURES_PER_MINUTE: u32 = 5;
/// Failed producer API-key look-ups per client address per minute.
pub const API_KEY_FAILURES_PER_MINUTE: u32 = 20;
/// How many characters of a presented token name its prefix key.
pub const PREFIX_CHARS: usize = 8;

impl FailureLimits {
    /// The default of `scope`: [`ADMIN_FAILURES_PER_MINUTE`] or [`API_KEY_FAILURES_PER_MINUTE`]
    /// per minute.
    pub fn default_for(scope: Scope) -> Self {
        let max_failures = match scope {
            Scope::Admin => ADMIN_FAILURES_PER_MINUTE,
            Scope::ApiKey => API_KEY_FAILURES_PER_MINUTE,
        };
        FailureLimits {
            max_failures,
            window: Duration::from_secs(60),
        }
    }
}

/// The keys one try counts against: the client (`ip:…`) and, when given, the token's prefix
/// (`prefix:…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryKeys(Vec<String>);

impl TryKeys {
    /// The keys of a try from `client` (unknown clients share one key) presenting `token`.
    pub fn new(client: Option<IpAddr>, token: Option<&str>) -> Self {
        let mut keys = vec![match client {
            Some(ip) => format!("ip:{}", client_key(ip)),
            None => "ip:unknown".to_owned(),
        }];
        if let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) {
            let prefix: String = token.chars().take(PREFIX_CHARS).collect();
            keys.push(format!("prefix:{prefix}"));
        }
        TryKeys(keys)
    }

    /// The keys.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// The failure counts of one scope, and the locks this process knows of.
#[derive(Debug)]
pub struct FailureLimiter {
    scope: Scope,
    limits: FailureLimits,
    client_ip_header: Option<axum::http::HeaderName>,
    locks: DashMap<String, Instant>,
}

/// Seconds of a wait as `Retry-After` says them (whole, at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

fn wait_of(secs: f64) -> Duration {
    Duration::from_secs_f64(secs.clamp(0.001, 86_400.0))
}

impl FailureLimiter {
    /// A limiter of `scope`; the client is named by `client_ip_header` when set (a trusted
    /// proxy's header), else by the TCP peer.
    pub fn new(
        scope: Scope,
        limits: FailureLimits,
        client_ip_header: Option<axum::http::HeaderName>,
    ) -> Self {
        FailureLimiter {
            scope,
            limits: FailureLimits {
                max_failures: limits.max_failures.max(1),
                window: limits.window.max(Duration::from_millis(10)),
            },
            client_ip_header,
            locks: DashMap::new(),
        }
    }

    /// The limits.
    pub fn limits(&self) -> FailureLimits {
        self.limits
    }

    /// The client address of a request (the proxy's header when configured, else the peer).
    pub fn client_of(&self, parts: &Parts) -> Option<IpAddr> {
        let peer = Peer(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0),
        );
        self.client_from(&parts.headers, peer)
    }

    /// The client address from a request's headers and TCP peer.
    pub fn client_from(&self, headers: &axum::http::HeaderMap, peer: Peer) -> Option<IpAddr> {
        client_ip(self.client_ip_header.as_ref(), headers, peer)
    }

    fn lock_key(&self, key: &str) -> String {
        format!("{}:{key}", self.scope.as_str())
    }

    /// How long `keys` stay locked, as far as this process knows (no query).
    pub fn locked_here(&self, keys: &TryKeys) -> Option<Duration> {
        let now = Instant::now();
        keys.as_slice()
            .iter()
            .filter_map(|k| self.locks.get(&self.lock_key(k)).map(|until| *until))
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// Remembers `keys` as locked for `wait` (the map forgets ended locks past 10,000 keys).
    fn remember(&self, keys: impl IntoIterator<Item = String>, wait: Duration) {
        let now = Instant::now();
        if self.locks.len() > 10_000 {
            self.locks.retain(|_, until| *until > now);
        }
        for key in keys {
            self.locks.insert(self.lock_key(&key), now + wait);
        }
    }

    /// How long `keys` stay locked: what this process knows, else what Postgres holds (one
    /// primary-key read; a lock found is remembered).
    pub async fn locked(
        &self,
        pool: &PgPool,
        keys: &TryKeys,
    ) -> Result<Option<Duration>, sqlx::Error> {
        if let Some(wait) = self.locked_here(keys) {
            return Ok(Some(wait));
        }
        let rows: Vec<(String, f64)> = sqlx::query_as(
            "SELECT key, EXTRACT(EPOCH FROM (window_start + make_interval(secs => $3) - now()))::float8
             FROM auth_failures
             WHERE scope = $1 AND key = ANY($2) AND failures >= $4
               AND window_start > now() - make_interval(secs => $3)",
        )
        .bind(self.scope.as_str())
        .bind(keys.as_slice())
        .bind(self.limits.window.as_secs_f64())
        .bind(i32::try_from(self.limits.max_failures).unwrap_or(i32::MAX))
        .fetch_all(pool)
        .await?;
        let Some(secs) = rows.iter().map(|(_, s)| *s).reduce(f64::max) else {
            return Ok(None);
        };
        let wait = wait_of(secs);
        self.remember(rows.into_iter().map(|(k, _)| k), wait);
        Ok(Some(wait))
    }

    /// Counts one failed try against every key of `keys` (one upsert). `Some(wait)` when the try
    /// went past the limit and must be refused (429); a key that reached its limit is locked.
    pub async fn failed(
        &self,
        pool: &PgPool,
        keys: &TryKeys,
    ) -> Result<Option<Duration>, sqlx::Error> {
        metrics::counter!("wxnotify_auth_failures_total", "scope" => self.scope.as_str())
            .increment(1);
        let rows: Vec<(String, i32, f64)> = sqlx::query_as(
            "INSERT INTO auth_failures AS f (scope, key, window_start, failures)
             SELECT $1, k, now(), 1 FROM unnest($2::text[]) AS k
             ON CONFLICT (scope, key) DO UPDATE SET
                 window_start = CASE WHEN f.window_start <= now() - make_interval(secs => $3)
                                     THEN now() ELSE f.window_start END,
                 failures = CASE WHEN f.window_start <= now() - make_interval(secs => $3)
                                 THEN 1 ELSE f.failures + 1 END
             RETURNING f.key, f.failures,
                 EXTRACT(EPOCH FROM (f.window_start + make_interval(secs => $3) - now()))::float8",
        )
        .bind(self.scope.as_str())
        .bind(keys.as_slice())
        .bind(self.limits.window.as_secs_f64())
        .fetch_all(pool)
        .await?;
        let max = i64::from(self.limits.max_failures);
        let reached: Vec<&(String, i32, f64)> = rows
            .iter()
            .filter(|(_, n, _)| i64::from(*n) >= max)
            .collect();
        let Some(secs) = reached.iter().map(|(_, _, s)| *s).reduce(f64::max) else {
            return Ok(None);
        };
        let wait = wait_of(secs);
        self.remember(reached.iter().map(|(k, _, _)| k.clone()), wait);
        let over = rows.iter().any(|(_, n, _)| i64::from(*n) > max);
        if over {
            metrics::counter!("wxnotify_auth_refused_total", "scope" => self.scope.as_str())
                .increment(1);
        }
        Ok(over.then_some(wait))
    }
}

/// Deletes the counts whose window started more than an hour ago (`serve`'s housekeeping).
pub async fn prune(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM auth_failures WHERE window_start < now() - interval '1 hour'")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_try_counts_against_its_client_and_its_token_prefix() {
        let keys = TryKeys::new(
            Some("2001:db8:1:2::7".parse().unwrap()),
            Some("wxa_abcdefghijk"),
        );
        assert_eq!(keys.as_slice(), ["ip:2001:db8:1:2::", "prefix:wxa_abcd"]);
        assert_eq!(TryKeys::new(None, Some(" ")).as_slice(), ["ip:unknown"]);
    }

    #[test]
    fn a_remembered_lock_holds_until_it_ends() {
        let l = FailureLimiter::new(Scope::Admin, FailureLimits::default_for(Scope::Admin), None);
        let a = TryKeys::new(Some("192.0.2.1".parse().unwrap()), None);
        let b = TryKeys::new(Some("192.0.2.2".parse().unwrap()), None);
        l.remember(a.as_slice().to_vec(), Duration::from_millis(30));
        assert!(l.locked_here(&a).is_some());
        assert!(l.locked_here(&b).is_none());
        std::thread::sleep(Duration::from_millis(40));
        assert!(l.locked_here(&a).is_none());
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(59_100)), 60);
    }
}
