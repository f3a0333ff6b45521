//! WeChat's rules of the day in the fake: the daily quota (`POST /cgi-bin/openapi/quota/get`,
//! `docs/wechat.md` §9), content blocked outright (40249) or intercepted after acceptance, and
//! the list of intercepted messages (`POST /wxa/sec/queryblocktmplmsg`, records with growing
//! ids, paged by `largest_id`, answered as a `msginfo` list as the real API was seen doing).

use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::MockConfig;
use super::endpoint::Endpoint;
use super::request::{Params, json_body};
use super::state::Mock;
use super::tokens::App;
use super::wire::Answer;

/// A message the fake accepted and then intercepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterceptedMessage {
    /// The record id (the paging cursor).
    pub id: i64,
    /// The template.
    pub tmpl_msg_id: String,
    /// The template's title.
    pub title: String,
    /// The template's content (the fake puts the title).
    pub content: String,
    /// When it was sent (unix seconds).
    pub send_timestamp: i64,
    /// The recipient's OA openid.
    pub openid: String,
}

/// What the content of a send is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing wrong.
    Clean,
    /// Refused with 40249.
    Blocked,
    /// Accepted, then intercepted.
    Intercepted,
}

/// Intercepted messages.
#[derive(Debug, Default)]
pub(super) struct Content {
    next_id: AtomicI64,
    intercepted: Mutex<Vec<InterceptedMessage>>,
}

impl Content {
    /// Judges a send's `data` by the configured words (any value containing one).
    pub(super) fn judge(&self, cfg: &MockConfig, data: &Value) -> Verdict {
        if cfg.blocked_words.is_empty() && cfg.intercepted_words.is_empty() {
            return Verdict::Clean;
        }
        let values: Vec<&str> = data
            .as_object()
            .map(|o| {
                o.values()
                    .filter_map(|f| f.get("value").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        let holds = |words: &[String]| {
            words
                .iter()
                .any(|w| values.iter().any(|v| v.contains(w.as_str())))
        };
        if holds(&cfg.blocked_words) {
            Verdict::Blocked
        } else if holds(&cfg.intercepted_words) {
            Verdict::Intercepted
        } else {
            Verdict::Clean
        }
    }

    /// Records an accepted message as intercepted.
    pub(super) fn intercept(&self, template_id: &str, title: &str, openid: &str) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.intercepted.lock().push(InterceptedMessage {
            id,
            tmpl_msg_id: template_id.into(),
            title: title.into(),
            content: title.into(),
            send_timestamp: chrono::Utc::now().timestamp(),
            openid: openid.into(),
        });
    }

    /// Every intercepted message.
    pub(super) fn all(&self) -> Vec<InterceptedMessage> {
        self.intercepted.lock().clone()
    }

    /// Forgets them (ids keep growing).
    pub(super) fn reset(&self) {
        self.intercepted.lock().clear();
    }
}

#[derive(Deserialize)]
struct QuotaRequest {
    #[serde(default)]
    cgi_path: String,
}

#[derive(Serialize)]
struct QuotaAnswer {
    errcode: i64,
    errmsg: &'static str,
    quota: Quota,
}

#[derive(Serialize)]
struct Quota {
    daily_limit: u64,
    used: u64,
    remain: u64,
}

/// `POST /cgi-bin/openapi/quota/get?access_token=…` `{"cgi_path": …}` (OA token). Template
/// sends report the configured daily quota and the sends accepted; the other APIs the fake
/// serves report their calls against 500,000; `sns/*` is 76022, anything else 76021.
pub(super) fn quota_get(mock: &Mock, params: &Params, body: &[u8]) -> Result<Answer, i64> {
    mock.tokens.check(params.get("access_token"), App::Oa)?;
    let req: QuotaRequest = json_body(body)?;
    if req.cgi_path.starts_with("/sns/") {
        return Err(76022);
    }
    let endpoint = Endpoint::ALL
        .into_iter()
        .find(|e| e.path() == req.cgi_path)
        .ok_or(76021)?;
    let (daily_limit, used) = if endpoint == Endpoint::TemplateSend {
        (mock.cfg.daily_quota, mock.sends.counts().0)
    } else {
        (500_000, mock.stats().calls_to(endpoint))
    };
    Ok(Answer::ok(&QuotaAnswer {
        errcode: 0,
        errmsg: "ok",
        quota: Quota {
            daily_limit,
            used,
            remain: daily_limit.saturating_sub(used),
        },
    }))
}

#[derive(Deserialize)]
struct BlockedRequest {
    #[serde(default)]
    tmpl_msg_id: String,
    #[serde(default)]
    largest_id: i64,
    #[serde(default)]
    limit: u32,
}

#[derive(Serialize)]
struct BlockedAnswer {
    errcode: i64,
    errmsg: &'static str,
    msginfo: Vec<InterceptedMessage>,
}

/// `POST /wxa/sec/queryblocktmplmsg?access_token=…` `{"tmpl_msg_id", "largest_id", "limit"}`:
/// the intercepted messages of that template with an id above `largest_id`, at most `limit`
/// (clamped to 1..=100: the real API's answer to a bad limit is undocumented).
pub(super) fn query_blocked(mock: &Mock, params: &Params, body: &[u8]) -> Result<Answer, i64> {
    mock.tokens.check(params.get("access_token"), App::Oa)?;
    let req: BlockedRequest = json_body(body)?;
    let limit = req.limit.clamp(1, 100) as usize;
    let msginfo = mock
        .content
        .all()
        .into_iter()
        .filter(|m| m.tmpl_msg_id == req.tmpl_msg_id && m.id > req.largest_id)
        .take(limit)
        .collect();
    Ok(Answer::ok(&BlockedAnswer {
        errcode: 0,
        errmsg: "ok",
        msginfo,
    }))
}
