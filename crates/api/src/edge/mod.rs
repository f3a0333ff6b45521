//! What WeChat and the Mini Program call.
//!
//! - [`login`]: `POST /v1/miniprogram/login`, with [`login_codes`] making each code single use
//!   and [`login_limits`] (per-client and global login limits);
//! - [`callback`]: `GET|POST /wechat/callback[/{app}]`, the OA server URL (events, XML or
//!   JSON, plain or encrypted), with [`replay`] (the timestamp window and nonce cache);
//! - [`mp_callback`]: `GET|POST /wechat/mp-callback[/{app}]`, the Mini Program's message push
//!   URL (subscribe-message events), under the same rules as the OA's;
//! - [`subscriptions`]: `POST /v1/miniprogram/subscriptions`, the Mini Program's report of its
//!   person's subscribe choices, authorized by a login's [`mp_sessions`] token or an API key;
//! - [`store`]: the SQL of these handlers.

pub mod callback;
pub mod login;
pub mod login_codes;
pub mod login_limits;
pub mod mp_callback;
pub mod mp_sessions;
pub mod replay;
pub mod store;
pub mod subscriptions;
