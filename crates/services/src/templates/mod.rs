//! The template catalog and the checks before sending.
//!
//! - [`catalog`]: each app's templates in Postgres and in memory ([`Catalog`]): those WeChat
//!   lists, those it listed and no longer does (deleted), and those registered by hand.
//! - [`sync`]: fetching them from WeChat (`get_all_private_template`).
//! - [`subscribe`]: the Mini Program's subscribe templates (`wxaapi/newtmpl/gettemplate`),
//!   stored beside the OA's with their channel, and [`check_subscribe`], the checks before a
//!   subscribe message (the OA category rules plus `enum`).
//! - [`manual`]: registering by hand the category templates WeChat's API does not list.
//! - [`check`]: the one check every entry point calls ([`check_job`], [`check_job_in`],
//!   [`check_message`]).
//! - [`findings`]: what a check finds ([`Refusal`], [`Warning`], [`Checked`]).
//! - [`types`]: the value rules of category-template keys.
//!
//! `wxnotify templates sync|list|add|remove` is the command line of it; the worker keeps the
//! catalog fresh (see `wxnotify_worker::upkeep`).

pub mod catalog;
pub mod check;
pub mod findings;
pub mod manual;
pub mod subscribe;
pub mod sync;
pub mod types;

pub use catalog::{AppCatalog, AppListing, Catalog, CatalogTemplate, SyncTrigger, TemplateSource};
pub use check::{
    Checked, Problem, Refusal, Truncation, Warning, check_job, check_job_in, check_message,
};
pub use manual::{ManualError, ManualTemplate};
pub use subscribe::{SubscribeCatalog, SubscribeCatalogTemplate, check_subscribe, store_subscribe};
pub use sync::{sync_app, sync_subscribe_app};
