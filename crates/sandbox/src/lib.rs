//! # wxnotify-sandbox
//!
//! Everything for development, tests, the demo and the benchmarks, and nothing the service
//! runs: no crate of the service depends on this one, and the `wxnotify` binary and image do
//! not carry it. Its own binary is `wxnotify-sandbox` ([`cli`]).
//!
//! - [`mock_wechat`]: the fake WeChat API server (`wxnotify-sandbox mock-wechat`), faithful to
//!   the wire formats and errcodes, with fault injection and rules;
//! - [`demo`]: `wxnotify-sandbox demo`, the main job end to end against the fake WeChat;
//! - [`bench`](mod@bench): `wxnotify-sandbox bench`, end-to-end figures of the pipeline, the
//!   producer API, the campaign snapshot and the follower sync;
//! - [`scratch`]: throw-away environments (a database and a queue prefix of their own) for the
//!   demo, the benchmarks and the integration tests.

pub mod bench;
pub mod cli;
pub mod demo;
pub mod mock_wechat;
pub mod scratch;
