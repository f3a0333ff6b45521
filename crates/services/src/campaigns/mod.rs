//! Bulk campaigns: one template to a whole audience, paced, resumable, controllable, and never
//! in the way of transactional sends.
//!
//! - [`model`]: states, actions, send windows, pacing.
//! - [`audience`]: recipients files (NDJSON, CSV) and explicit lists; bad lines reported.
//! - [`snapshot`]: the audience snapshot, resolved once with `COPY` and one set-based statement.
//! - [`store`]: campaigns in Postgres: create, read, list, state changes with who and when.
//! - [`progress`]: status from the ledger (one indexed aggregate), receipts, rate, ETA.
//! - [`waiting`]: why a campaign sends nothing now and when it goes on (status, API, console).
//! - [`rows`]: each recipient's data checked against the template at create and preview.
//! - [`pacing`]: start time, window, daily cap, the daily quota's transactional reserve.
//! - [`dispatcher`]: snapshot → jobs on the bulk lane, under a lease, from a cursor in Postgres.
//! - The worker's check before a campaign job is sent (paused waits, cancelled is not sent) is
//!   the worker's `gate`.
//! - [`preview`]: a campaign's figures and pacing from text. The command is
//!   `wxnotify campaign`; the benchmark is the sandbox's `bench::campaigns`.

pub mod audience;
pub mod dispatcher;
pub mod model;
pub mod pacing;
pub mod preview;
pub mod progress;
pub mod rows;
pub mod snapshot;
pub mod store;
pub mod waiting;

pub use dispatcher::{Dispatcher, DispatcherOptions};
pub use model::{Action, CampaignState, Channels, Pacing, SendWindow, Unreachable};
pub use preview::{Preview, pacing_from, preview};
pub use progress::{Status, label, status};
pub use store::{AudienceSource, Campaign, CreateReport, NewCampaign};
pub use waiting::{WaitReason, Waiting};

/// What can go wrong with a campaign operation; callers branch on the variant (HTTP status,
/// exit code).
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// No campaign has that id.
    #[error("no campaign {0}")]
    NotFound(uuid::Uuid),
    /// The action does not apply in the campaign's state.
    #[error("cannot {action} campaign {id}: it is {state}")]
    Transition {
        /// The campaign.
        id: uuid::Uuid,
        /// Its state.
        state: CampaignState,
        /// The refused action.
        action: &'static str,
    },
    /// Bad input (rate, window, data, app …); the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// The recipients file could not be read.
    #[error("cannot read the recipients file")]
    Io(#[from] std::io::Error),
    /// Postgres failed.
    #[error("database error")]
    Db(#[from] sqlx::Error),
}
