//! What WeChat and the Mini Program call.
//!
//! - [`login`]: `POST /v1/miniprogram/login`, with [`login_codes`] making each code single use
//!   and [`login_limits`] (per-client and global login limits);
//! - [`callback`]: `GET|POST /wechat/callback[/{app}]`, the OA server URL (events, XML or
//!   JSON, plain or encrypted), with [`replay`] (the timestamp window and nonce cache);
//! - [`store`]: the SQL of these handlers.

pub mod callback;
pub mod login;
pub mod login_codes;
pub mod login_limits;
pub mod replay;
pub mod store;
