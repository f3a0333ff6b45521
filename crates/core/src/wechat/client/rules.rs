//! The calls that teach wxnotify WeChat's rules of the day: the real daily quota
//! (`openapi/quota/get`, `docs/wechat.md` §9) and the messages WeChat accepted and later
//! intercepted (`wxa/sec/queryblocktmplmsg`, §10).

use serde::{Deserialize, Deserializer};

use super::{AccessToken, WechatClient, WechatError};

/// The API path whose quota wxnotify reads (template sends).
pub const TEMPLATE_SEND_CGI_PATH: &str = "/cgi-bin/message/template/send";

/// The most records one `queryblocktmplmsg` page holds.
pub const BLOCKED_PAGE_MAX: u32 = 100;

/// One API's daily quota as WeChat counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ApiQuota {
    /// Calls allowed per day.
    pub daily_limit: i64,
    /// Calls made today.
    #[serde(default)]
    pub used: i64,
    /// Calls left today.
    #[serde(default)]
    pub remain: i64,
}

/// A template message WeChat accepted and then intercepted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BlockedMessage {
    /// The record's id: the paging cursor (`largest_id`) of the next call.
    #[serde(deserialize_with = "int_or_string")]
    pub id: i64,
    /// The template of the intercepted message.
    #[serde(default)]
    pub tmpl_msg_id: String,
    /// The recipient's OA openid.
    #[serde(default)]
    pub openid: String,
    /// When it was sent (unix seconds).
    #[serde(default, deserialize_with = "int_or_string")]
    pub send_timestamp: i64,
    /// The template's title.
    #[serde(default)]
    pub title: String,
}

/// The documented `id` is a string in one table and a number in another: take both.
fn int_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(i) => Ok(i),
        Raw::Text(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// `msginfo` is documented as one object, and answered as a list (community report): take both.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BlockedMessage>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Many(Vec<BlockedMessage>),
        One(BlockedMessage),
        // Anything else (null, an empty object): no records.
        Nothing(serde::de::IgnoredAny),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::Many(v) => v,
        Raw::One(m) => vec![m],
        Raw::Nothing(serde::de::IgnoredAny) => Vec::new(),
    })
}

impl WechatClient {
    /// `POST cgi-bin/openapi/quota/get`: the daily quota of `cgi_path` (e.g.
    /// [`TEMPLATE_SEND_CGI_PATH`]) for the account of `token`.
    pub async fn quota_get(
        &self,
        token: &AccessToken,
        cgi_path: &str,
    ) -> Result<ApiQuota, WechatError> {
        const EP: &str = "cgi-bin/openapi/quota/get";
        #[derive(Deserialize)]
        struct Raw {
            quota: ApiQuota,
        }
        let body = serde_json::json!({ "cgi_path": cgi_path });
        let url = self.url(EP, &[("access_token", token.expose())]);
        let raw: Raw = self.call(EP, self.http.post(url).json(&body)).await?;
        Ok(raw.quota)
    }

    /// `POST wxa/sec/queryblocktmplmsg`: intercepted messages of template `template_id` with a
    /// record id above `largest_id`, at most `limit` (≤ [`BLOCKED_PAGE_MAX`]).
    pub async fn query_blocked(
        &self,
        token: &AccessToken,
        template_id: &str,
        largest_id: i64,
        limit: u32,
    ) -> Result<Vec<BlockedMessage>, WechatError> {
        const EP: &str = "wxa/sec/queryblocktmplmsg";
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default, deserialize_with = "one_or_many")]
            msginfo: Vec<BlockedMessage>,
        }
        let body = serde_json::json!({
            "tmpl_msg_id": template_id,
            "largest_id": largest_id,
            "limit": limit.clamp(1, BLOCKED_PAGE_MAX),
        });
        let url = self.url(EP, &[("access_token", token.expose())]);
        let raw: Raw = self.call(EP, self.http.post(url).json(&body)).await?;
        Ok(raw.msginfo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msginfo_is_read_as_a_list_or_as_one_object() {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default, deserialize_with = "one_or_many")]
            msginfo: Vec<BlockedMessage>,
        }
        let one: Raw = serde_json::from_str(
            r#"{"errcode":0,"errmsg":"ok","msginfo":{"id":2,"tmpl_msg_id":"T","title":"t","content":"c","send_timestamp":1788796187,"openid":"o1"}}"#,
        )
        .unwrap();
        assert_eq!(one.msginfo.len(), 1);
        assert_eq!(one.msginfo[0].id, 2);
        let many: Raw = serde_json::from_str(
            r#"{"msginfo":[{"id":"3","tmpl_msg_id":"T","openid":"o","send_timestamp":1}],"errcode":0}"#,
        )
        .unwrap();
        assert_eq!(many.msginfo[0].id, 3);
        let none: Raw = serde_json::from_str(r#"{"msginfo":[],"errcode":0}"#).unwrap();
        assert!(none.msginfo.is_empty());
    }
}
