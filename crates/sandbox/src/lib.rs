//! The sandbox wing: everything for development, tests, the demo and the benchmarks, and nothing
//! the service runs. The service modules (`delivery`, `queue`, `http`, `wechat`, `campaigns` …)
//! never import it; it imports them.
//!
//! - [`mock_wechat`]: the fake WeChat API server (`wxnotify mock-wechat`), faithful to the wire
//!   formats and errcodes, with fault injection and rules;
//! - [`demo`]: `wxnotify demo`, the main job end to end against the fake WeChat;
//! - [`bench`](mod@bench): `wxnotify bench`, end-to-end figures of the pipeline, the producer API,
//!   the campaign snapshot and the follower sync;
//! - [`scratch`]: throw-away environments (a database and a queue prefix of their own) for the
//!   demo, the benchmarks and the integration tests.

pub mod bench;
pub mod demo;
pub mod mock_wechat;
pub mod scratch;
