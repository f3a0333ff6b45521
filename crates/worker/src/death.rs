//! Why RabbitMQ dead-lettered a message, read from its headers.
//!
//! `x-first-death-reason` / `x-first-death-queue` describe the *first* dead-lettering: a job that
//! waited in a retry tier (dead-lettered there with reason `expired`, back to its lane) and then
//! exceeded its lane's delivery limit still says `expired` and the tier's queue there. The last
//! death is what put the message in the dead queue: RabbitMQ 3.13+ says it in
//! `x-last-death-reason` / `x-last-death-queue`; older brokers keep it as the first entry of
//! `x-death` (one entry per queue and reason, the most recent first), which is read otherwise.

use lapin::types::{AMQPValue, FieldTable};

use wxnotify_core::queue::Lane;
use wxnotify_services::ledger::outcome::DeadReason;

/// The last dead-lettering of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// RabbitMQ's reason: `delivery_limit`, `rejected`, `expired`, `maxlen`.
    pub reason: String,
    /// The queue it died in.
    pub queue: Option<String>,
    /// How many times it died there for that reason.
    pub count: i64,
}

impl Death {
    /// Reads the last death from a message's headers; `None` when it has none.
    pub fn from_headers(headers: Option<&FieldTable>) -> Option<Death> {
        let headers = headers?.inner();
        let last = |name: &str| headers.get(name).and_then(text);
        let entry = headers.get("x-death").and_then(|v| match v {
            AMQPValue::FieldArray(a) => a.as_slice().first().and_then(|e| match e {
                AMQPValue::FieldTable(t) => Some(t.inner()),
                _ => None,
            }),
            _ => None,
        });
        let from_entry = |name: &str| entry.and_then(|t| t.get(name)).and_then(text);
        let reason = last("x-last-death-reason").or_else(|| from_entry("reason"))?;
        let queue = last("x-last-death-queue").or_else(|| from_entry("queue"));
        let count = entry
            .and_then(|t| t.get("count"))
            .and_then(integer)
            .unwrap_or(1);
        Some(Death {
            reason,
            queue,
            count,
        })
    }

    /// The dead reason wxnotify records.
    pub fn dead_reason(&self) -> DeadReason {
        match self.reason.as_str() {
            "delivery_limit" => DeadReason::DeliveryLimit,
            _ => DeadReason::Rejected,
        }
    }

    /// The lane the message died on, when its queue is a lane.
    pub fn lane(&self) -> Option<Lane> {
        let queue = self.queue.as_deref()?;
        let (_, suffix) = queue.rsplit_once('.')?;
        Lane::from_routing_key(suffix)
    }
}

fn text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn integer(v: &AMQPValue) -> Option<i64> {
    match v {
        AMQPValue::LongLongInt(i) => Some(*i),
        AMQPValue::LongInt(i) => Some((*i).into()),
        AMQPValue::ShortInt(i) => Some((*i).into()),
        AMQPValue::LongUInt(i) => Some((*i).into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::{FieldArray, LongString};

    use super::*;

    fn entry(queue: &str, reason: &str, count: i64) -> AMQPValue {
        let mut t = FieldTable::default();
        t.insert(
            "queue".into(),
            AMQPValue::LongString(LongString::from(queue)),
        );
        t.insert(
            "reason".into(),
            AMQPValue::LongString(LongString::from(reason)),
        );
        t.insert("count".into(), AMQPValue::LongLongInt(count));
        AMQPValue::FieldTable(t)
    }

    /// A job that waited in a retry tier once, then exceeded the bulk lane's delivery limit, as
    /// RabbitMQ 3.10 heads it.
    fn retried_then_over_the_limit() -> FieldTable {
        let mut h = FieldTable::default();
        h.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![
                entry("p.bulk", "delivery_limit", 1),
                entry("p.retry.500ms", "expired", 1),
            ])),
        );
        h.insert(
            "x-first-death-reason".into(),
            AMQPValue::LongString(LongString::from("expired")),
        );
        h.insert(
            "x-first-death-queue".into(),
            AMQPValue::LongString(LongString::from("p.retry.500ms")),
        );
        h
    }

    #[test]
    fn the_last_death_decides_not_the_first() {
        let d = Death::from_headers(Some(&retried_then_over_the_limit())).unwrap();
        assert_eq!(d.dead_reason(), DeadReason::DeliveryLimit);
        assert_eq!(d.lane(), Some(Lane::Bulk));
    }

    #[test]
    fn x_last_death_headers_win_where_present() {
        let mut h = retried_then_over_the_limit();
        h.insert(
            "x-last-death-reason".into(),
            AMQPValue::LongString(LongString::from("rejected")),
        );
        h.insert(
            "x-last-death-queue".into(),
            AMQPValue::LongString(LongString::from("p.jobs")),
        );
        let d = Death::from_headers(Some(&h)).unwrap();
        assert_eq!(d.dead_reason(), DeadReason::Rejected);
        assert_eq!(d.lane(), Some(Lane::Jobs));
    }

    #[test]
    fn no_headers_no_death() {
        assert_eq!(Death::from_headers(None), None);
        assert_eq!(Death::from_headers(Some(&FieldTable::default())), None);
    }
}
