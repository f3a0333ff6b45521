//! Everything that speaks to WeChat: the HTTP client, the errcode classification, the shared
//! access-token store, secret redaction, and the fake WeChat server.

pub mod client;
pub mod errcode;
pub mod mock;
pub mod redact;
pub mod response;
pub mod token;

pub use client::{AccessToken, WechatClient, WechatError};
pub use errcode::{ErrClass, PermanentKind, classify};
pub use token::{TokenError, TokenStore};
