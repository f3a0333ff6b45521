//! Dead letters: what ops need at 3 a.m. — list, inspect, replay and purge dead letters.
//!
//! Dead letters live in Postgres (`dead_letters`), with the reason, WeChat's errcode and message,
//! the original job and the attempt count; the attempt history is in `delivery_attempts`.
//! Replaying a dead letter re-opens its ledger row and publishes the job to its lane again with
//! the same id (so it is sent at most once more); malformed messages cannot be replayed. The
//! command is `wxnotify dlq`.

pub mod query;
pub mod replay;
pub mod store;

pub use query::DeadLetterQuery;
pub use replay::{ReplayOptions, ReplayReport, Touched, replay, replay_query};
pub use store::{AttemptRow, DeadLetterRow, by_ids, get, history, purge};
