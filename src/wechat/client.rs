//! The WeChat API client: one method per endpoint wxnotify uses. Answers are read the way
//! `wechat-api.md` §1 says (JSON whatever the Content-Type, missing errcode = success, 64-bit
//! msgids), and every failure becomes a [`WechatError`] whose [`class`](WechatError::class) tells
//! the caller what to do. URLs carry the access token, so nothing here logs or returns a raw URL.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

use super::errcode::{self, ErrClass};
use super::redact::{redact_error, redact_url};
use super::response::{self, Envelope};
use crate::domain::{AppId, MiniProgramLink, OpenId, TemplateData, TemplateId, UnionId};

pub use rules::{ApiQuota, BlockedMessage, TEMPLATE_SEND_CGI_PATH};

/// The most openids `user/info/batchget` takes in one call.
pub const BATCHGET_MAX: usize = 100;

/// An access token. Compared by value (for compare-and-swap), never printed.
#[derive(Clone)]
pub struct AccessToken(SecretString);

impl AccessToken {
    /// Wraps a token string.
    pub fn new(token: impl Into<String>) -> Self {
        Self(SecretString::from(token.into()))
    }
    /// The token, for the query string and the token table only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl PartialEq for AccessToken {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(REDACTED)")
    }
}

/// A freshly fetched token and how long WeChat says it lives.
#[derive(Debug, Clone)]
pub struct FetchedToken {
    /// The token.
    pub token: AccessToken,
    /// `expires_in` as returned (never assume 7200).
    pub expires_in: Duration,
}

/// Why a call failed. [`WechatError::class`] says what to do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WechatError {
    /// WeChat answered with a non-zero errcode.
    #[error("WeChat {endpoint} answered errcode {errcode}: {errmsg}")]
    Api {
        /// The endpoint path.
        endpoint: &'static str,
        /// The code.
        errcode: i64,
        /// The message, with its `rid` for WeChat support.
        errmsg: String,
        /// The classification.
        class: ErrClass,
    },
    /// No usable answer: timeout, connection error, HTTP status other than 2xx, or a body that
    /// is not JSON. Always transient. The text is redacted.
    #[error("WeChat {endpoint} could not be reached: {detail}")]
    Transport {
        /// The endpoint path.
        endpoint: &'static str,
        /// What happened (no secrets).
        detail: String,
        /// Whether the request may have reached WeChat (anything but a failed connect): for a
        /// send, its outcome is then unknown.
        maybe_delivered: bool,
    },
    /// The request was refused before sending (e.g. more than 100 openids for batchget).
    #[error("invalid request to WeChat {endpoint}: {detail}")]
    InvalidRequest {
        /// The endpoint path.
        endpoint: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// The template send endpoint's path.
const TEMPLATE_SEND: &str = "cgi-bin/message/template/send";

impl WechatError {
    /// What the caller should do about it.
    pub fn class(&self) -> ErrClass {
        match self {
            WechatError::Api { class, .. } => *class,
            WechatError::Transport { .. } => ErrClass::Transient,
            WechatError::InvalidRequest { .. } => {
                ErrClass::Permanent(errcode::PermanentKind::Other)
            }
        }
    }

    /// The errcode, for WeChat answers.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            WechatError::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// Whether this error leaves a template send's outcome unknown: the request may have
    /// reached WeChat but no answer said what became of it (timeout, dropped connection, a
    /// gateway error, an unreadable body).
    pub fn may_have_been_delivered(&self) -> bool {
        matches!(
            self,
            WechatError::Transport { endpoint, maybe_delivered: true, .. }
                if *endpoint == TEMPLATE_SEND
        )
    }

    /// The errmsg (WeChat answers) or the transport detail.
    pub fn message(&self) -> String {
        match self {
            WechatError::Api { errmsg, .. } => errmsg.clone(),
            WechatError::Transport { detail, .. } | WechatError::InvalidRequest { detail, .. } => {
                detail.clone()
            }
        }
    }

    /// The request id WeChat support asks for, when WeChat gave one.
    pub fn rid(&self) -> Option<&str> {
        match self {
            WechatError::Api { errmsg, .. } => response::rid_of(errmsg),
            _ => None,
        }
    }
}

/// One page of `user/get`.
#[derive(Debug, Clone, Default)]
pub struct FollowerPage {
    /// All followers of the OA.
    pub total: u64,
    /// The openids of this page (up to 10,000).
    pub openids: Vec<OpenId>,
    /// Where the next page starts; `None` at the end of the list (any of the three forms).
    pub next_openid: Option<OpenId>,
}

/// A follower's details from `user/info` or `user/info/batchget`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// The OA openid.
    pub openid: OpenId,
    /// Whether the person follows the OA now.
    pub subscribed: bool,
    /// Present only when the OA is bound to an Open Platform account.
    pub unionid: Option<UnionId>,
    /// The latest follow time (unix seconds), for followers.
    pub subscribe_time: Option<i64>,
}

/// A Mini Program login (`jscode2session`). The session key is secret and stays server side.
#[derive(Debug, Clone)]
pub struct MpSession {
    /// The Mini Program openid.
    pub openid: OpenId,
    /// Present only when the Mini Program is bound to an Open Platform account.
    pub unionid: Option<UnionId>,
    /// The session key (never logged, never sent to the client).
    pub session_key: SecretString,
}

/// A template message to one OA follower.
#[derive(Debug, Clone)]
pub struct TemplateMessage<'a> {
    /// The follower's OA openid.
    pub touser: &'a OpenId,
    /// The template.
    pub template_id: &'a TemplateId,
    /// Its fields.
    pub data: &'a TemplateData,
    /// Optional link.
    pub url: Option<&'a Url>,
    /// Optional Mini Program page.
    pub miniprogram: Option<&'a MiniProgramLink>,
    /// Anti-reentry id: WeChat sends one message per (openid, client_msg_id) within 10 minutes.
    pub client_msg_id: Option<&'a str>,
}

/// A template of the OA's private template list, with its placeholder names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateTemplate {
    /// Its id.
    pub template_id: String,
    /// Its title.
    pub title: String,
    /// The raw content with `{{name.DATA}}` placeholders.
    pub content: String,
    /// The placeholder names, in order of appearance (`thing1`, `time2` …).
    pub keys: Vec<String>,
}

/// The names of `{{name.DATA}}` placeholders in a template's content, in order, without repeats.
pub fn template_keys(content: &str) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let mut rest = content;
    while let Some(start) = rest.find("{{") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find("}}") else { break };
        if let Some(name) = rest[..end].strip_suffix(".DATA")
            && !name.is_empty()
            && !keys.iter().any(|k| k == name)
        {
            keys.push(name.to_owned());
        }
        rest = &rest[end + 2..];
    }
    keys
}

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

    /// `GET cgi-bin/token`: a new classic token (the previous one dies 5 minutes later).
    pub async fn classic_token(
        &self,
        appid: &AppId,
        secret: &SecretString,
    ) -> Result<FetchedToken, WechatError> {
        const EP: &str = "cgi-bin/token";
        let url = self.url(
            EP,
            &[
                ("grant_type", "client_credential"),
                ("appid", appid.as_str()),
                ("secret", secret.expose_secret()),
            ],
        );
        let raw: RawToken = self.call_token(EP, self.http.get(url)).await?;
        Ok(raw.into())
    }

    /// `POST cgi-bin/stable_token`: the current stable token (the same one for every caller
    /// while it is valid). `force_refresh` invalidates everyone's token: wxnotify never sets it
    /// on its own.
    pub async fn stable_token(
        &self,
        appid: &AppId,
        secret: &SecretString,
        force_refresh: bool,
    ) -> Result<FetchedToken, WechatError> {
        const EP: &str = "cgi-bin/stable_token";
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": appid.as_str(),
            "secret": secret.expose_secret(),
            "force_refresh": force_refresh,
        });
        let raw: RawToken = self
            .call_token(EP, self.http.post(self.url(EP, &[])).json(&body))
            .await?;
        Ok(raw.into())
    }

    /// `GET cgi-bin/user/get`: one page of follower openids, from `next` (or the start).
    pub async fn user_get(
        &self,
        token: &AccessToken,
        next: Option<&OpenId>,
    ) -> Result<FollowerPage, WechatError> {
        const EP: &str = "cgi-bin/user/get";
        #[derive(Deserialize)]
        struct Data {
            #[serde(default)]
            openid: Vec<OpenId>,
        }
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            total: u64,
            #[serde(default)]
            count: u64,
            data: Option<Data>,
            #[serde(default)]
            next_openid: Option<String>,
        }
        let mut query = vec![("access_token", token.expose())];
        if let Some(next) = next {
            query.push(("next_openid", next.as_str()));
        }
        let raw: Raw = self.call(EP, self.http.get(self.url(EP, &query))).await?;
        let openids = raw.data.map(|d| d.openid).unwrap_or_default();
        // The end of the list has three forms: an empty next_openid, no `data`, or count 0.
        let at_end = openids.is_empty() || raw.count == 0;
        let next_openid = match raw.next_openid.filter(|s| !s.is_empty()) {
            Some(next) if !at_end => {
                Some(OpenId::parse(next).map_err(|e| WechatError::Transport {
                    endpoint: EP,
                    detail: format!("bad next_openid: {e}"),
                    maybe_delivered: true,
                })?)
            }
            _ => None,
        };
        Ok(FollowerPage {
            total: raw.total,
            openids,
            next_openid,
        })
    }

    /// `GET cgi-bin/user/info`: one follower.
    pub async fn user_info(
        &self,
        token: &AccessToken,
        openid: &OpenId,
    ) -> Result<UserInfo, WechatError> {
        const EP: &str = "cgi-bin/user/info";
        let url = self.url(
            EP,
            &[
                ("access_token", token.expose()),
                ("openid", openid.as_str()),
                ("lang", "zh_CN"),
            ],
        );
        let raw: RawUserInfo = self.call(EP, self.http.get(url)).await?;
        Ok(raw.into())
    }

    /// `POST cgi-bin/user/info/batchget`: up to [`BATCHGET_MAX`] followers in one call.
    pub async fn user_info_batch(
        &self,
        token: &AccessToken,
        openids: &[OpenId],
    ) -> Result<Vec<UserInfo>, WechatError> {
        const EP: &str = "cgi-bin/user/info/batchget";
        if openids.is_empty() || openids.len() > BATCHGET_MAX {
            return Err(WechatError::InvalidRequest {
                endpoint: EP,
                detail: format!("{} openids; 1 to {BATCHGET_MAX} per call", openids.len()),
            });
        }
        #[derive(Serialize)]
        struct Item<'a> {
            openid: &'a str,
            lang: &'static str,
        }
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            user_info_list: Vec<RawUserInfo>,
        }
        let list: Vec<Item<'_>> = openids
            .iter()
            .map(|o| Item {
                openid: o.as_str(),
                lang: "zh_CN",
            })
            .collect();
        let body = serde_json::json!({ "user_list": list });
        let url = self.url(EP, &[("access_token", token.expose())]);
        let raw: Raw = self.call(EP, self.http.post(url).json(&body)).await?;
        Ok(raw.user_info_list.into_iter().map(Into::into).collect())
    }

    /// `GET sns/jscode2session`: exchanges a `wx.login()` code (single use, 5 minutes) for the
    /// Mini Program openid, unionid and session key.
    pub async fn jscode2session(
        &self,
        appid: &AppId,
        secret: &SecretString,
        code: &str,
    ) -> Result<MpSession, WechatError> {
        const EP: &str = "sns/jscode2session";
        #[derive(Deserialize)]
        struct Raw {
            openid: OpenId,
            #[serde(default)]
            unionid: Option<UnionId>,
            session_key: String,
        }
        let url = self.url(
            EP,
            &[
                ("appid", appid.as_str()),
                ("secret", secret.expose_secret()),
                ("js_code", code),
                ("grant_type", "authorization_code"),
            ],
        );
        let raw: Raw = self.call(EP, self.http.get(url)).await?;
        Ok(MpSession {
            openid: raw.openid,
            unionid: raw.unionid,
            session_key: raw.session_key.into(),
        })
    }

    /// `POST cgi-bin/message/template/send`: returns WeChat's 64-bit `msgid`.
    pub async fn send_template(
        &self,
        token: &AccessToken,
        msg: &TemplateMessage<'_>,
    ) -> Result<i64, WechatError> {
        const EP: &str = TEMPLATE_SEND;
        #[derive(Serialize)]
        struct Body<'a> {
            touser: &'a str,
            template_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            url: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            miniprogram: Option<&'a MiniProgramLink>,
            #[serde(skip_serializing_if = "Option::is_none")]
            client_msg_id: Option<&'a str>,
            data: crate::domain::template::WechatData<'a>,
        }
        #[derive(Deserialize)]
        struct Raw {
            msgid: i64,
        }
        let body = Body {
            touser: msg.touser.as_str(),
            template_id: msg.template_id.as_str(),
            url: msg.url.map(Url::as_str),
            miniprogram: msg.miniprogram,
            client_msg_id: msg.client_msg_id,
            data: msg.data.to_wechat(),
        };
        let url = self.url(EP, &[("access_token", token.expose())]);
        let raw: Raw = self.call(EP, self.http.post(url).json(&body)).await?;
        Ok(raw.msgid)
    }

    /// `GET cgi-bin/template/get_all_private_template`: the OA's templates with their keys.
    pub async fn private_templates(
        &self,
        token: &AccessToken,
    ) -> Result<Vec<PrivateTemplate>, WechatError> {
        const EP: &str = "cgi-bin/template/get_all_private_template";
        #[derive(Deserialize)]
        struct Item {
            template_id: String,
            #[serde(default)]
            title: String,
            #[serde(default)]
            content: String,
        }
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            template_list: Vec<Item>,
        }
        let url = self.url(EP, &[("access_token", token.expose())]);
        let raw: Raw = self.call(EP, self.http.get(url)).await?;
        Ok(raw
            .template_list
            .into_iter()
            .map(|t| PrivateTemplate {
                keys: template_keys(&t.content),
                template_id: t.template_id,
                title: t.title,
                content: t.content,
            })
            .collect())
    }

    fn url(&self, endpoint: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        let path = format!("{}/{endpoint}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Sends, reads the body whatever its type, and classifies the answer.
    async fn call<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, WechatError> {
        self.call_with(endpoint, request, errcode::classify).await
    }

    /// Like `call`, for the token endpoints, where 40001 means a wrong secret.
    async fn call_token<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, WechatError> {
        self.call_with(endpoint, request, errcode::classify_token_endpoint)
            .await
    }

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
            return Err(transport(format!(
                "HTTP {status} from {}",
                redact_url(response.url())
            )));
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

#[derive(Deserialize)]
struct RawToken {
    access_token: String,
    expires_in: u64,
}

impl From<RawToken> for FetchedToken {
    fn from(raw: RawToken) -> Self {
        FetchedToken {
            token: AccessToken::new(raw.access_token),
            expires_in: Duration::from_secs(raw.expires_in),
        }
    }
}

#[derive(Deserialize)]
struct RawUserInfo {
    #[serde(default)]
    subscribe: i64,
    openid: OpenId,
    #[serde(default)]
    unionid: Option<UnionId>,
    #[serde(default)]
    subscribe_time: Option<i64>,
}

impl From<RawUserInfo> for UserInfo {
    fn from(raw: RawUserInfo) -> Self {
        UserInfo {
            openid: raw.openid,
            subscribed: raw.subscribe == 1,
            unionid: raw.unionid,
            subscribe_time: raw.subscribe_time.filter(|_| raw.subscribe == 1),
        }
    }
}

pub mod rules;

#[cfg(test)]
mod tests;
