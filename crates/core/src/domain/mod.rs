//! Domain types: raw input becomes one of these once, at the edge (HTTP body, AMQP bytes, CLI
//! argument, config), and everything inside the crate trusts them.

pub mod id_hint;
mod ids;
pub mod job;
pub mod lane;
pub mod template;

pub use ids::{AppId, AppName, IdError, JobId, OpenId, UnionId};
pub use job::{Job, JobError, MiniProgramLink, MiniprogramState, MpSubscribe, Recipient};
pub use lane::Lane;
pub use template::{FieldKey, TemplateData, TemplateId};
