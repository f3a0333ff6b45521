//! The bodies of the health endpoints the worker and `serve` share: `/livez` (the process
//! works: always 200 while it answers at all) and `/readyz` (it can do its job now: 200 when
//! every dependency it needs answers, else 503 naming what is missing).
//!
//! A liveness probe must not fail while RabbitMQ or Postgres is away (restarting the process
//! would not bring them back); a readiness probe takes the process out of service meanwhile.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// How long a readiness check waits for Postgres.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `/livez`'s body: `{"status":"ok"}`.
pub fn live() -> serde_json::Value {
    serde_json::json!({"status": "ok"})
}

/// `/readyz`'s body: `{"status":"ready","checks":{...}}` or
/// `{"status":"unavailable","missing":[...],"checks":{...}}`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: &'static str,
    /// The dependencies that are not there (empty when ready).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<&'static str>,
    /// Each dependency's state, in words (`ok`, `consuming`, `disconnected`, ...).
    pub checks: BTreeMap<&'static str, String>,
}

impl Readiness {
    /// No check yet: ready.
    pub fn new() -> Self {
        Readiness {
            status: "ready",
            ..Readiness::default()
        }
    }

    /// Adds the dependency `name` in `state`; `ok` false makes the whole unavailable.
    pub fn check(mut self, name: &'static str, ok: bool, state: impl Into<String>) -> Self {
        self.checks.insert(name, state.into());
        if !ok {
            self.missing.push(name);
            self.status = "unavailable";
        }
        self
    }

    /// Whether every dependency is there (answer 200, else 503).
    pub fn is_ready(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Whether Postgres answers `SELECT 1` within [`CHECK_TIMEOUT`]: `Ok(())` or the reason, for
/// [`Readiness::check`] (no secret in it: sqlx's errors do not carry the password).
pub async fn postgres(pool: &sqlx::PgPool) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(pool)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("unreachable: {e}")),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_missing_dependency_makes_it_unavailable_and_is_named() {
        let ready = Readiness::new().check("postgres", true, "ok");
        assert!(ready.is_ready());
        assert_eq!(
            serde_json::to_value(&ready).unwrap(),
            serde_json::json!({"status": "ready", "checks": {"postgres": "ok"}})
        );
        let not = ready.check("rabbitmq", false, "disconnected");
        assert!(!not.is_ready());
        assert_eq!(
            serde_json::to_value(&not).unwrap(),
            serde_json::json!({"status": "unavailable", "missing": ["rabbitmq"],
                "checks": {"postgres": "ok", "rabbitmq": "disconnected"}})
        );
    }
}
