//! The one way a request reaches WeChat: build the URL, send, read the body whatever its
//! Content-Type, and turn the answer into a value or a classified [`WechatError`]. URLs carry
//! the access token, so errors carry only redacted text.

use serde::de::DeserializeOwned;
use url::Url;

use super::{WechatClient, WechatError};
use crate::wechat::errcode::{self, ErrClass};
use crate::wechat::redact::{redact_error, redact_url};
use crate::wechat::response::{self, Envelope};

/// Whether an HTTP error status (no WeChat answer in the body) leaves the request's effect
/// unknown. A 5xx on a subscribe send proves nothing was sent (WeChat's gateway answers before
/// the message is taken), so that send may be retried; every other status on any endpoint is
/// taken as "may have been done" (a template send is protected by its `client_msg_id`).
fn status_may_have_delivered(endpoint: &str, status: reqwest::StatusCode) -> bool {
    !(endpoint == super::subscribe::SUBSCRIBE_SEND && status.is_server_error())
}

impl WechatClient {
    /// The URL of `endpoint` under the client's base, with `query`.
    pub(super) fn url(&self, endpoint: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        let path = format!("{}/{endpoint}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Sends, reads the body whatever its type, and classifies the answer.
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, WechatError> {
        self.call_with(endpoint, request, errcode::classify).await
    }

    /// Like `call`, for the token endpoints, where 40001 means a wrong secret.
    pub(super) async fn call_token<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, WechatError> {
        self.call_with(endpoint, request, errcode::classify_token_endpoint)
            .await
    }

    /// Sends `request`, reads the body whatever its type, and classifies a non-zero errcode
    /// with `classify`.
    async fn call_with<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
        classify: fn(i64) -> ErrClass,
    ) -> Result<T, WechatError> {
        let transport = |detail: String| WechatError::Transport {
            endpoint,
            detail,
            maybe_delivered: true,
        };
        let response = request.send().await.map_err(|e| WechatError::Transport {
            endpoint,
            maybe_delivered: !e.is_connect(),
            detail: redact_error(e),
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(WechatError::Transport {
                endpoint,
                detail: format!("HTTP {status} from {}", redact_url(response.url())),
                maybe_delivered: status_may_have_delivered(endpoint, status),
            });
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| transport(redact_error(e)))?;
        let (envelope, payload) =
            response::parse::<T>(&body).map_err(|e| transport(e.to_string()))?;
        match payload {
            Some(payload) => Ok(payload),
            None => {
                let Envelope { errcode, errmsg } = envelope;
                let class = classify(errcode);
                tracing::debug!(
                    endpoint,
                    errcode,
                    rid = response::rid_of(&errmsg),
                    "WeChat error"
                );
                Err(WechatError::Api {
                    endpoint,
                    errcode,
                    errmsg,
                    class,
                })
            }
        }
    }
}
