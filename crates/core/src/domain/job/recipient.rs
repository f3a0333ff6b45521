//! Who a job is for: a Mini Program openid, a unionid or an OA openid, written as exactly one
//! of three JSON keys.

use serde::{Deserialize, Serialize};

use crate::domain::{OpenId, UnionId};

/// Who a job is for. Written as exactly one of `{"mp_openid": …}`, `{"unionid": …}` or
/// `{"oa_openid": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Recipient {
    /// The person's Mini Program openid (from `wx.login` → jscode2session).
    MpOpenid(OpenId),
    /// The person's unionid.
    Unionid(UnionId),
    /// The person's OA openid (sent to as is, no mapping needed).
    OaOpenid(OpenId),
}

impl Recipient {
    /// The kind of address, as stored in the ledger (`mp_openid`, `unionid`, `oa_openid`).
    pub fn kind(&self) -> &'static str {
        match self {
            Recipient::MpOpenid(_) => "mp_openid",
            Recipient::Unionid(_) => "unionid",
            Recipient::OaOpenid(_) => "oa_openid",
        }
    }

    /// The address itself.
    pub fn value(&self) -> &str {
        match self {
            Recipient::MpOpenid(id) | Recipient::OaOpenid(id) => id.as_str(),
            Recipient::Unionid(id) => id.as_str(),
        }
    }
}

impl<'de> Deserialize<'de> for Recipient {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(
            deny_unknown_fields,
            expecting = "an object with exactly one of mp_openid, unionid or oa_openid"
        )]
        struct Raw {
            mp_openid: Option<OpenId>,
            unionid: Option<UnionId>,
            oa_openid: Option<OpenId>,
        }
        match Raw::deserialize(d)? {
            Raw {
                mp_openid: Some(id),
                unionid: None,
                oa_openid: None,
            } => Ok(Recipient::MpOpenid(id)),
            Raw {
                mp_openid: None,
                unionid: Some(id),
                oa_openid: None,
            } => Ok(Recipient::Unionid(id)),
            Raw {
                mp_openid: None,
                unionid: None,
                oa_openid: Some(id),
            } => Ok(Recipient::OaOpenid(id)),
            _ => Err(serde::de::Error::custom(
                "`to` must hold exactly one of mp_openid, unionid or oa_openid",
            )),
        }
    }
}
