//! The WeChat client and the shared access-token store against Postgres and a fake WeChat.

mod token_store;
mod with_fake;
