//! The OA follower sync (the command is `wxnotify sync-followers`).
//!
//! Every follower openid comes from `user/get` (10,000 a page), their unionid from
//! `user/info/batchget` (100 a call); both land in `oa_followers`. The mapping
//! mini-program openid → unionid → OA openid needs the unionid, so followers without one (the OA
//! is not bound to an Open Platform account) are kept and counted but cannot be joined.
//!
//! - [`sync`]: the pass (fetch, store, resume, mark the absent unsubscribed); `fetch`: its
//!   WeChat half (user/get, batchget, retries, rate limit); [`report`]: what a run reports;
//! - [`store`]: its SQL, and the follower changes callback events make;
//! - [`progress`]: the terminal progress bar;
//! - the seed method (one `user/info` per follower), for the benchmark's comparison, is in
//!   `sandbox::bench::followers`.

mod fetch;
pub mod progress;
pub mod report;
pub mod store;
pub mod sync;

pub use progress::Progress;
pub use report::{SyncError, SyncReport};
pub use sync::{SyncOptions, sync_followers};
