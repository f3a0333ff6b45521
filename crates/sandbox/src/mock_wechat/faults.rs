//! Injected faults: latency, errcodes, HTTP errors and dropped connections, per endpoint, with
//! a probability and an optional count.
//!
//! Rules are tried in order for each API call. A rule whose endpoint matches fires with its
//! probability; a rule with `remaining: Some(n)` fires at most n more times (only firings
//! count). Latencies that fire add up; the first other fault that fires decides the answer and
//! ends the draw.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::endpoint::Endpoint;

/// A set of fault rules (in JSON, `{"rules":[…]}` for `POST /mock/faults`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultPlan {
    /// The rules, tried in order.
    pub rules: Vec<FaultRule>,
}

impl From<FaultRule> for FaultPlan {
    fn from(rule: FaultRule) -> FaultPlan {
        FaultPlan { rules: vec![rule] }
    }
}

/// One fault rule. In JSON only `fault` is required, e.g.
/// `{"endpoint":"template_send","fault":{"errcode":45009},"probability":0.5,"remaining":3}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// The endpoint it applies to; `None` = every endpoint.
    #[serde(default)]
    pub endpoint: Option<Endpoint>,
    /// What happens.
    pub fault: Fault,
    /// The chance it fires on a matching call, 0..=1 (default 1).
    #[serde(default = "always")]
    pub probability: f64,
    /// `Some(n)`: fires only n more times; `None`: for ever.
    #[serde(default)]
    pub remaining: Option<u64>,
}

fn always() -> f64 {
    1.0
}

impl FaultRule {
    /// A rule that makes every call (of any endpoint) suffer `fault`, for ever.
    pub fn new(fault: Fault) -> FaultRule {
        FaultRule {
            endpoint: None,
            fault,
            probability: 1.0,
            remaining: None,
        }
    }

    /// Restricts the rule to `endpoint`.
    pub fn on(mut self, endpoint: Endpoint) -> FaultRule {
        self.endpoint = Some(endpoint);
        self
    }

    /// Makes the rule fire with probability `p` (clamped to 0..=1).
    pub fn probability(mut self, p: f64) -> FaultRule {
        self.probability = p.clamp(0.0, 1.0);
        self
    }

    /// Makes the rule fire only `n` times.
    pub fn times(mut self, n: u64) -> FaultRule {
        self.remaining = Some(n);
        self
    }
}

/// What an injected fault does. In JSON: `{"latency":250}` (milliseconds), `{"errcode":-1}`,
/// `{"http_status":502}`, `"drop_connection"`, `"accept_then_drop"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Wait this long before answering (then answer normally, or per a later rule).
    Latency(#[serde(with = "millis")] Duration),
    /// Answer this errcode (HTTP 200) with its canonical errmsg and a rid, without doing the
    /// work: e.g. -1, 45009, 45011, 43117.
    Errcode(i64),
    /// Answer this HTTP status with an HTML body, like a failing proxy in front of WeChat.
    HttpStatus(u16),
    /// Close the connection without answering, without doing the work.
    DropConnection,
    /// Do the work (a template send is recorded as accepted), then close the connection
    /// without answering: the caller cannot know it succeeded.
    AcceptThenDrop,
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// What the draw decided for one call, besides latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Errcode(i64),
    HttpStatus(u16),
    DropConnection,
    AcceptThenDrop,
}

/// The outcome of drawing the fault rules for one call.
#[derive(Debug, Default)]
pub(super) struct Drawn {
    pub(super) latency: Duration,
    pub(super) action: Option<Action>,
    /// How many rules fired.
    pub(super) fired: u64,
}

#[derive(Debug)]
struct ActiveRule {
    rule: FaultRule,
    remaining: Option<AtomicU64>,
}

impl ActiveRule {
    /// Rolls the probability, then claims one of the remaining firings.
    fn fires(&self, endpoint: Endpoint) -> bool {
        if self.rule.endpoint.is_some_and(|e| e != endpoint) {
            return false;
        }
        let p = self.rule.probability;
        if p < 1.0 && !(p > 0.0 && rand::random::<f64>() < p) {
            return false;
        }
        match &self.remaining {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

/// The active fault rules. Read on every call, replaced rarely: a read-write lock, held only
/// while drawing (never across an await).
#[derive(Debug, Default)]
pub(super) struct Faults {
    rules: RwLock<Vec<ActiveRule>>,
}

impl Faults {
    /// Replaces the rules with `plan`'s.
    pub(super) fn set(&self, plan: FaultPlan) {
        let rules = plan
            .rules
            .into_iter()
            .map(|rule| ActiveRule {
                remaining: rule.remaining.map(AtomicU64::new),
                rule,
            })
            .collect();
        *self.rules.write() = rules;
    }

    /// Removes every rule.
    pub(super) fn clear(&self) {
        self.rules.write().clear();
    }

    /// Draws the rules for one call to `endpoint`.
    pub(super) fn draw(&self, endpoint: Endpoint) -> Drawn {
        let mut drawn = Drawn::default();
        for active in self.rules.read().iter() {
            if !active.fires(endpoint) {
                continue;
            }
            drawn.fired += 1;
            let action = match active.rule.fault {
                Fault::Latency(d) => {
                    drawn.latency += d;
                    continue;
                }
                Fault::Errcode(code) => Action::Errcode(code),
                Fault::HttpStatus(status) => Action::HttpStatus(status),
                Fault::DropConnection => Action::DropConnection,
                Fault::AcceptThenDrop => Action::AcceptThenDrop,
            };
            drawn.action = Some(action);
            break;
        }
        drawn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_plans_read_as_short_json() {
        let plan: FaultPlan = serde_json::from_str(
            r#"{"rules":[{"fault":{"latency":250}},
                {"endpoint":"template_send","fault":{"errcode":45009},"remaining":2},
                {"endpoint":"jscode2session","fault":"drop_connection","probability":0.5}]}"#,
        )
        .unwrap();
        assert_eq!(
            plan.rules[0],
            FaultRule::new(Fault::Latency(Duration::from_millis(250)))
        );
        assert_eq!(
            plan.rules[1],
            FaultRule::new(Fault::Errcode(45009))
                .on(Endpoint::TemplateSend)
                .times(2)
        );
        assert_eq!(plan.rules[2].endpoint, Some(Endpoint::JsCode2Session));
    }

    #[test]
    fn counted_rules_fire_only_their_count_and_latency_adds_up() {
        let faults = Faults::default();
        faults.set(FaultPlan {
            rules: vec![
                FaultRule::new(Fault::Latency(Duration::from_millis(5))),
                FaultRule::new(Fault::Errcode(-1))
                    .on(Endpoint::TemplateSend)
                    .times(1),
            ],
        });
        let first = faults.draw(Endpoint::TemplateSend);
        assert_eq!(first.action, Some(Action::Errcode(-1)));
        assert_eq!(first.latency, Duration::from_millis(5));
        assert_eq!(faults.draw(Endpoint::TemplateSend).action, None);
        assert_eq!(faults.draw(Endpoint::Token).action, None);
    }
}
