//! Mini Program logins: `wx.login()` codes issued by the test (standing in for the phone) and
//! `GET /sns/jscode2session` (`docs/wechat.md` §6). A code works once, for
//! `login_code_ttl`; a reused code is 40163, an unknown or expired one 40029.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use parking_lot::Mutex;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Serialize;

use super::credentials::app_for;
use super::identity::{mp_openid, unionid};
use super::request::Params;
use super::state::Mock;
use super::tokens::App;
use super::wire::Answer;

#[derive(Debug)]
struct Code {
    person: u64,
    issued: Instant,
    used: bool,
}

/// The codes issued and not yet forgotten. Logins are rare: one mutex held briefly is enough.
#[derive(Debug, Default)]
pub(super) struct Logins {
    codes: Mutex<HashMap<String, Code>>,
}

impl Logins {
    /// A fresh 32-character code for MP user `person`.
    pub(super) fn issue(&self, person: u64) -> String {
        let code: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let entry = Code {
            person,
            issued: Instant::now(),
            used: false,
        };
        self.codes.lock().insert(code.clone(), entry);
        code
    }

    /// Uses `code` up: the person it was issued for, or 40029 (unknown, expired) / 40163 (used).
    fn redeem(&self, code: &str, ttl: Duration) -> Result<u64, i64> {
        let mut codes = self.codes.lock();
        let entry = codes.get_mut(code).ok_or(40029)?;
        if entry.used {
            return Err(40163);
        }
        if entry.issued.elapsed() > ttl {
            return Err(40029);
        }
        entry.used = true;
        Ok(entry.person)
    }

    /// Forgets codes older than twice `ttl` (an old code then reads as unknown: still 40029).
    pub(super) fn prune(&self, ttl: Duration) {
        self.codes
            .lock()
            .retain(|_, c| c.issued.elapsed() < ttl * 2);
    }

    /// Forgets every code.
    pub(super) fn reset(&self) {
        self.codes.lock().clear();
    }
}

#[derive(Serialize)]
struct Session {
    openid: String,
    session_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    unionid: Option<String>,
}

/// `GET /sns/jscode2session?appid=…&secret=…&js_code=…&grant_type=authorization_code` with the
/// MP's credentials (no access token). Success has no `errcode` and no `expires_in`.
pub(super) fn jscode2session(mock: &Mock, params: &Params) -> Result<Answer, i64> {
    let appid = params.get("appid").unwrap_or_default();
    if app_for(appid, params.get("secret").unwrap_or_default(), 40125)? != App::Mp {
        return Err(40013);
    }
    if params.get("grant_type") != Some("authorization_code") {
        return Err(40002);
    }
    let code = params.get("js_code").unwrap_or_default();
    let person = mock.logins.redeem(code, mock.cfg.login_code_ttl)?;
    Ok(Answer::ok(&Session {
        openid: mp_openid(person),
        session_key: STANDARD.encode(rand::random::<[u8; 16]>()),
        unionid: unionid(person, &mock.cfg),
    }))
}
