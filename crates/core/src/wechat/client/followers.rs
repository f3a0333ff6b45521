//! The OA's followers: `user/get` (openids, 10,000 a page), `user/info` and
//! `user/info/batchget` (unionids, 100 a call).

use serde::{Deserialize, Serialize};

use super::{AccessToken, WechatClient, WechatError};
use crate::domain::{OpenId, UnionId};

/// The most openids `user/info/batchget` takes in one call.
pub const BATCHGET_MAX: usize = 100;

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

impl WechatClient {
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
