//! # wxnotify-core
//!
//! The floor every other crate of wxnotify stands on; it depends on none of them.
//!
//! - [`at_rest`]: the codec of secrets kept in Postgres (encrypted with `WXNOTIFY_SECRET_KEY`).
//! - [`domain`]: newtypes (`OpenId`, `UnionId`, `AppName`, `TemplateId`, `JobId` …), the
//!   [`Job`](domain::Job) and the [`Lane`](domain::Lane).
//! - [`config`]: settings from the environment and an optional TOML file, read once; secrets
//!   as `SecretString`.
//! - [`db`]: the Postgres pool and the embedded migrations.
//! - [`telemetry`]: tracing set-up (readable in a terminal, JSON in production);
//!   [`metrics`]: the process's Prometheus recorder and the list of every exported series;
//!   [`health`]: the bodies of `/livez` and `/readyz`.
//! - [`wechat`]: the WeChat API client, errcode classification, the shared access-token store,
//!   the pushes and their cryptography.
//! - [`queue`]: the RabbitMQ topology, the publisher (confirms) and NDJSON publishing.
//! - [`batch`]: coalescing of concurrent Postgres writes; [`progress`]: the one style of
//!   terminal progress bars.

pub mod at_rest;
pub mod batch;
pub mod bounds;
pub mod config;
pub mod db;
pub mod domain;
pub mod health;
pub mod metrics;
pub mod progress;
pub mod queue;
pub mod telemetry;
pub mod wechat;
