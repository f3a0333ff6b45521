//! Mini Program subscribe messages: `cgi-bin/message/subscribe/send`, sent with the Mini
//! Program's access token to the person's Mini Program openid. WeChat does not de-duplicate
//! them (there is no `client_msg_id`): a request whose answer was lost must never be repeated.

use serde::{Deserialize, Serialize};

use super::{AccessToken, WechatClient, WechatError};
use crate::domain::{MiniprogramState, OpenId, TemplateData, TemplateId};

/// The subscribe send endpoint's path.
pub(super) const SUBSCRIBE_SEND: &str = "cgi-bin/message/subscribe/send";

/// A subscribe message to one Mini Program user.
#[derive(Debug, Clone)]
pub struct SubscribeMessage<'a> {
    /// The person's Mini Program openid.
    pub touser: &'a OpenId,
    /// The subscribe template (`priTmplId`).
    pub template_id: &'a TemplateId,
    /// Its fields.
    pub data: &'a TemplateData,
    /// The Mini Program page a tap opens.
    pub page: Option<&'a str>,
    /// Which version of the Mini Program a tap opens.
    pub miniprogram_state: Option<MiniprogramState>,
}

impl WechatClient {
    /// `POST cgi-bin/message/subscribe/send`: returns WeChat's `msgid` when the answer has one
    /// (it is not documented and not always there).
    pub async fn send_subscribe(
        &self,
        token: &AccessToken,
        msg: &SubscribeMessage<'_>,
    ) -> Result<Option<i64>, WechatError> {
        const EP: &str = SUBSCRIBE_SEND;
        #[derive(Serialize)]
        struct Body<'a> {
            touser: &'a str,
            template_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            page: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            miniprogram_state: Option<MiniprogramState>,
            data: crate::domain::template::WechatData<'a>,
        }
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            msgid: Option<i64>,
        }
        let body = Body {
            touser: msg.touser.as_str(),
            template_id: msg.template_id.as_str(),
            page: msg.page,
            miniprogram_state: msg.miniprogram_state,
            data: msg.data.to_wechat(),
        };
        let url = self.url(EP, &[("access_token", token.expose())]);
        let raw: Raw = self.call(EP, self.http.post(url).json(&body)).await?;
        Ok(raw.msgid)
    }
}
