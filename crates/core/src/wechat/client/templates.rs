//! Template messages: `cgi-bin/message/template/send` and the OA's private template list
//! with its placeholder names, and the Mini Program's subscribe template list.

use serde::{Deserialize, Serialize};
use url::Url;

use super::{AccessToken, WechatClient, WechatError};
use crate::domain::{MiniProgramLink, OpenId, TemplateData, TemplateId};

/// The template send endpoint's path.
pub(super) const TEMPLATE_SEND: &str = "cgi-bin/message/template/send";

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

impl WechatClient {
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
}

/// A subscribe template of the Mini Program (`wxaapi/newtmpl/gettemplate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeTemplate {
    /// Its id (`priTmplId`).
    pub template_id: String,
    /// Its title.
    pub title: String,
    /// The raw content with `{{name.DATA}}` placeholders.
    pub content: String,
    /// The placeholder names, in order of appearance.
    pub keys: Vec<String>,
    /// Long-term (`type` 3: one accept allows many messages) rather than one-time (2).
    pub long_term: bool,
    /// `keywordEnumValueList`: key → the only values it may take.
    pub enum_values: std::collections::BTreeMap<String, Vec<String>>,
}

impl WechatClient {
    /// `GET wxaapi/newtmpl/gettemplate` with the **Mini Program's** token: its subscribe
    /// templates (the whole list).
    pub async fn subscribe_templates(
        &self,
        token: &AccessToken,
    ) -> Result<Vec<SubscribeTemplate>, WechatError> {
        const EP: &str = "wxaapi/newtmpl/gettemplate";
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Enum {
            keyword_code: String,
            #[serde(default)]
            enum_value_list: Vec<String>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Item {
            pri_tmpl_id: String,
            #[serde(default)]
            title: String,
            #[serde(default)]
            content: String,
            #[serde(default, rename = "type")]
            kind: i64,
            #[serde(default)]
            keyword_enum_value_list: Vec<Enum>,
        }
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            data: Vec<Item>,
        }
        let url = self.url(EP, &[("access_token", token.expose())]);
        let raw: Raw = self.call(EP, self.http.get(url)).await?;
        Ok(raw
            .data
            .into_iter()
            .map(|t| SubscribeTemplate {
                keys: template_keys(&t.content),
                template_id: t.pri_tmpl_id,
                title: t.title,
                content: t.content,
                long_term: t.kind == 3,
                enum_values: t
                    .keyword_enum_value_list
                    .into_iter()
                    .map(|e| (e.keyword_code, e.enum_value_list))
                    .collect(),
            })
            .collect())
    }
}
