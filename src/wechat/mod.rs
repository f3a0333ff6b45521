//! Everything that speaks to WeChat: the HTTP client, the errcode classification, the shared
//! access-token store, secret redaction, the pushes (XML or JSON) and their cryptography
//! (`event`, `crypto`).
//! The fake WeChat server is in the sandbox wing (`sandbox::mock_wechat`).

pub mod client;
pub mod crypto;
pub mod errcode;
pub mod event;
pub mod redact;
pub mod response;
pub mod token;

pub use client::{AccessToken, WechatClient, WechatError};
pub use errcode::{ErrClass, PermanentKind, classify};
pub use token::{OaCredentials, TokenError, TokenSource, TokenStore};
