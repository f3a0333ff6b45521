//! The WeChat API client: one method per endpoint wxnotify uses. Answers are read the way
//! `docs/wechat.md` §1 says (JSON whatever the Content-Type, missing errcode = success, 64-bit
//! msgids), and every failure becomes a [`WechatError`] whose [`class`](WechatError::class) tells
//! the caller what to do. URLs carry the access token, so nothing here logs or returns a raw URL.
//!
//! By responsibility: [`transport`] (the one request path), [`tokens`], [`followers`],
//! [`login`], [`templates`], [`subscribe`] (one module per API family), [`rules`] (quota and blocked
//! messages), and [`error`] (what a failure means).

use std::time::Duration;

use url::Url;

mod error;
mod followers;
mod login;
pub mod rules;
mod subscribe;
mod templates;
mod tokens;
mod transport;

pub use error::WechatError;
pub use followers::{BATCHGET_MAX, FollowerPage, UserInfo};
pub use login::MpSession;
pub use rules::{ApiQuota, BlockedMessage, TEMPLATE_SEND_CGI_PATH};
pub use subscribe::SubscribeMessage;
pub use templates::{PrivateTemplate, TemplateMessage, template_keys};
pub use tokens::{AccessToken, FetchedToken};
// The Mini Program's subscribe template list.
pub use templates::SubscribeTemplate;

/// Client options.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Per-request timeout (a timeout is transient).
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Idle pooled connections kept per host.
    pub pool_max_idle_per_host: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            pool_max_idle_per_host: 256,
        }
    }
}

/// The WeChat API client. Cheap to clone (one shared connection pool).
#[derive(Debug, Clone)]
pub struct WechatClient {
    http: reqwest::Client,
    base: Url,
}

impl WechatClient {
    /// A client for the API at `base` (`https://api.weixin.qq.com`, or the fake's address).
    pub fn new(base: Url, options: &ClientOptions) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            // WeChat's API does not redirect: a 3xx is an answer we cannot use (a transport
            // error). Retries are the pipeline's (backoff, client_msg_id), not reqwest's, which
            // would otherwise keep a copy of every request in case it resends it.
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .retry(reqwest::retry::never().max_retries_per_request(0))
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            .pool_max_idle_per_host(options.pool_max_idle_per_host)
            .user_agent(concat!("wxnotify/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, base })
    }
}

#[cfg(test)]
mod tests;
