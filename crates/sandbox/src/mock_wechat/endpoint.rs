//! The WeChat APIs the fake serves, by name.

use serde::{Deserialize, Serialize};

/// One of the fake WeChat's APIs (for fault rules and statistics). In JSON, snake_case names:
/// `token`, `stable_token`, `user_get`, `user_info`, `user_info_batch`, `jscode2session`,
/// `template_send`, `private_templates`, `quota_get`, `query_blocked`, `subscribe_send`,
/// `mp_templates`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `GET /cgi-bin/token`.
    Token,
    /// `POST /cgi-bin/stable_token`.
    StableToken,
    /// `GET /cgi-bin/user/get`.
    UserGet,
    /// `GET /cgi-bin/user/info`.
    UserInfo,
    /// `POST /cgi-bin/user/info/batchget`.
    UserInfoBatch,
    /// `GET /sns/jscode2session`.
    #[serde(rename = "jscode2session")]
    JsCode2Session,
    /// `POST /cgi-bin/message/template/send`.
    TemplateSend,
    /// `GET /cgi-bin/template/get_all_private_template`.
    PrivateTemplates,
    /// `POST /cgi-bin/openapi/quota/get`.
    QuotaGet,
    /// `POST /wxa/sec/queryblocktmplmsg`.
    QueryBlocked,
    /// `POST /cgi-bin/message/subscribe/send` (the Mini Program's subscribe messages).
    SubscribeSend,
    /// `GET /wxaapi/newtmpl/gettemplate` (the Mini Program's subscribe templates).
    MpTemplates,
}

impl Endpoint {
    /// Every endpoint, in declaration order.
    pub const ALL: [Endpoint; 12] = [
        Endpoint::Token,
        Endpoint::StableToken,
        Endpoint::UserGet,
        Endpoint::UserInfo,
        Endpoint::UserInfoBatch,
        Endpoint::JsCode2Session,
        Endpoint::TemplateSend,
        Endpoint::PrivateTemplates,
        Endpoint::QuotaGet,
        Endpoint::QueryBlocked,
        Endpoint::SubscribeSend,
        Endpoint::MpTemplates,
    ];

    /// The URL path, relative to the API base.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Token => "/cgi-bin/token",
            Endpoint::StableToken => "/cgi-bin/stable_token",
            Endpoint::UserGet => "/cgi-bin/user/get",
            Endpoint::UserInfo => "/cgi-bin/user/info",
            Endpoint::UserInfoBatch => "/cgi-bin/user/info/batchget",
            Endpoint::JsCode2Session => "/sns/jscode2session",
            Endpoint::TemplateSend => "/cgi-bin/message/template/send",
            Endpoint::PrivateTemplates => "/cgi-bin/template/get_all_private_template",
            Endpoint::QuotaGet => "/cgi-bin/openapi/quota/get",
            Endpoint::QueryBlocked => "/wxa/sec/queryblocktmplmsg",
            Endpoint::SubscribeSend => "/cgi-bin/message/subscribe/send",
            Endpoint::MpTemplates => "/wxaapi/newtmpl/gettemplate",
        }
    }

    /// Whether the API is called with POST (and a JSON body) rather than GET.
    pub fn is_post(self) -> bool {
        matches!(
            self,
            Endpoint::StableToken
                | Endpoint::UserInfoBatch
                | Endpoint::TemplateSend
                | Endpoint::QuotaGet
                | Endpoint::QueryBlocked
                | Endpoint::SubscribeSend
        )
    }

    /// Position in [`Endpoint::ALL`].
    pub(super) fn index(self) -> usize {
        self as usize
    }
}
