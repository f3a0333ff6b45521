//! # wxnotify-services
//!
//! What wxnotify knows and keeps in Postgres, above [`wxnotify_core`] and below the worker and
//! the HTTP API (which never depend on each other).
//!
//! - [`ledger`]: the `deliveries` ledger, the one writer of job states, and dead letters.
//! - [`app_pause`]: whether an app may send now (quota pauses, pauses by hand, suspensions
//!   while WeChat refuses the account itself), shared by every worker.
//! - [`templates`]: each app's template catalog and the checks before sending; [`quota`]: the
//!   real daily quota and `wxnotify status`; [`reviews`]: messages WeChat held for its content
//!   review, followed to their verdict.
//! - [`followers`]: the OA follower sync.
//! - [`dlq`]: dead letters: list, show, replay and purge.
//! - [`campaigns`]: bulk campaigns: audience snapshot, dispatcher, pacing, control, status.
//! - [`subscriptions`]: the grant ledger of Mini Program subscribe messages.
//! - [`error`]: the error of the calls the worker's upkeep makes here.

pub mod app_pause;
pub mod campaigns;
pub mod dlq;
pub mod error;
pub mod followers;
pub mod ledger;
pub mod quota;
pub mod reviews;
pub mod subscriptions;
pub mod templates;
