//! # wxnotify
//!
//! Pushes WeChat Official Account (OA) template messages to Mini Program users. A person's Mini
//! Program openid is joined to their OA openid through the unionid both apps share; jobs arrive
//! on RabbitMQ, a rate-limited worker pool sends them, and every job ends sent, duplicate or dead
//! with a reason, recorded in Postgres.
//!
//! # Layout
//!
//! - [`commands`]: the front door: the command line (clap), one module per command (parse → call
//!   the library → print → exit code); `main.rs` only parses and dispatches. Nothing below it
//!   imports clap or knows exit codes.
//! - [`app`]: the composition root: the Postgres pool, the WeChat client and token store, the
//!   producer's RabbitMQ link, built in one place from the settings.
//! - [`ops_http`]: a process's `/metrics` and the worker's `/healthz` (RabbitMQ connected?).
//! - [`app_pause`]: whether an app may send now (quota pauses, pauses by hand, and suspensions
//!   while WeChat refuses the account itself), shared by every worker through Postgres.
//! - [`config`]: settings from the environment and an optional TOML file; secrets as
//!   `SecretString`.
//! - [`telemetry`]: tracing set-up (readable in a terminal, JSON in production).
//! - [`db`]: the Postgres pool and the embedded migrations.
//! - [`domain`]: newtypes (`OpenId`, `UnionId`, `AppId`, `TemplateId`, `JobId` …), the
//!   [`Job`](domain::Job) and the [`Lane`](domain::Lane).
//! - [`wechat`]: the WeChat API client, errcode classification, the shared access-token store.
//! - [`queue`]: the RabbitMQ topology and publisher (confirms).
//! - [`delivery`]: the worker pipeline: decode, claim, resolve, rate-limit, send, classify, record,
//!   ack; retries and dead letters.
//! - [`campaigns`]: bulk campaigns: audience snapshot, dispatcher, pacing, control, status.
//! - [`dlq`]: dead letters: list, show, replay and purge.
//! - [`followers`]: the OA follower sync.
//! - [`progress`]: the one style of terminal progress bars.
//! - [`http`]: the HTTP API ([`http::serve`]): Mini Program login, the OA event callback,
//!   notifications, admin.
//! - [`templates`]: each app's template catalog and the checks before sending;
//!   [`quota`]: the real daily quota and `wxnotify status`; [`reviews`]: messages WeChat held
//!   for its content review (40252), followed to their verdict; [`upkeep`]: the worker's view
//!   of all three.
//! - [`sandbox`]: the wing for development, tests, the demo and benchmarks: the fake WeChat
//!   server, `wxnotify demo`, `wxnotify bench` and throw-away databases and queues. The service
//!   modules above never import it.

pub mod app;
pub mod app_pause;
pub mod batch;
pub mod campaigns;
pub mod commands;
pub mod config;
pub mod db;
pub mod delivery;
pub mod dlq;
pub mod domain;
pub mod followers;
pub mod http;
pub mod ops_http;
pub mod progress;
pub mod queue;
pub mod quota;
pub mod reviews;
pub mod sandbox;
pub mod telemetry;
pub mod templates;
pub mod upkeep;
pub mod wechat;
