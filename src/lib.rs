//! # wxnotify
//!
//! Pushes WeChat Official Account (OA) template messages to Mini Program users. A person's Mini
//! Program openid is joined to their OA openid through the unionid both apps share; jobs arrive
//! on RabbitMQ, a rate-limited worker pool sends them, and every job ends in one recorded state
//! in Postgres.
//!
//! This crate is the `wxnotify` binary's command line: [`commands`], one module per
//! subcommand (parse → call the crates below → print → exit code). The crates below, each
//! depending only on those under it:
//!
//! - `wxnotify-app`: the composition root every command and the sandbox build from;
//! - `wxnotify-worker` (consume, decide, send, settle) and `wxnotify-api` (the HTTP API and
//!   the console), neither depending on the other;
//! - `wxnotify-services`: the ledger, templates, quota, reviews, followers, dead letters,
//!   campaigns;
//! - `wxnotify-core`: domain types, settings, Postgres, the WeChat client, RabbitMQ.
//!
//! `wxnotify-sandbox` (the fake WeChat, the demo, the benchmarks) stands beside them; nothing
//! of the service depends on it. See `docs/ARCHITECTURE.md`.

pub mod commands;
