//! WeChat's rules of the day in the fake: the daily quota (`POST /cgi-bin/openapi/quota/get`,
//! `docs/wechat.md` §9), content blocked outright (40249), content held for review (40252) and
//! the review's verdict, and the list of held messages the review blocked
//! (`POST /wxa/sec/queryblocktmplmsg`, records with growing ids, paged by `largest_id`, answered
//! as a `msginfo` list as the real API was seen doing; `docs/wechat.md` §10).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::MockConfig;
use super::endpoint::Endpoint;
use super::request::{Params, json_body};
use super::state::Mock;
use super::tokens::App;
use super::wire::Answer;

/// A message the fake held for its content review (answered 40252, no msgid).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldMessage {
    /// The record id (the paging cursor of `queryblocktmplmsg`).
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
    /// The caller's `client_msg_id`, if it sent one.
    pub client_msg_id: Option<String>,
    /// The review's verdict: blocked (listed by `queryblocktmplmsg` once decided) or delivered.
    pub blocked: bool,
    /// When the verdict comes (unix milliseconds); until then nothing lists the message.
    pub decided_at_ms: i64,
}

impl HeldMessage {
    /// Whether the review has decided by `now_ms`.
    pub fn decided(&self, now_ms: i64) -> bool {
        now_ms >= self.decided_at_ms
    }
}

/// What the content of a send is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing wrong.
    Clean,
    /// Refused with 40249.
    Blocked,
    /// Held for review (40252); the review will block it.
    HeldThenBlocked,
    /// Held for review (40252); the review will let it through.
    HeldThenDelivered,
}

/// Messages held for review.
#[derive(Debug, Default)]
pub(super) struct Content {
    next_id: AtomicI64,
    held: Mutex<Vec<HeldMessage>>,
}

/// A held message to record.
pub(super) struct Hold<'a> {
    pub template_id: &'a str,
    pub title: &'a str,
    pub openid: &'a str,
    pub client_msg_id: Option<&'a str>,
    pub blocked: bool,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Content {
    /// Judges a send's `data` by the configured words (any value containing one).
    pub(super) fn judge(&self, cfg: &MockConfig, data: &Value) -> Verdict {
        if cfg.blocked_words.is_empty()
            && cfg.review_words.is_empty()
            && cfg.review_blocked_words.is_empty()
        {
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
        } else if holds(&cfg.review_blocked_words) {
            Verdict::HeldThenBlocked
        } else if holds(&cfg.review_words) {
            Verdict::HeldThenDelivered
        } else {
            Verdict::Clean
        }
    }

    /// Records a message held for review; its verdict comes after `delay`.
    pub(super) fn hold(&self, hold: Hold<'_>, delay: Duration) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.held.lock().push(HeldMessage {
            id,
            tmpl_msg_id: hold.template_id.into(),
            title: hold.title.into(),
            content: hold.title.into(),
            send_timestamp: chrono::Utc::now().timestamp(),
            openid: hold.openid.into(),
            client_msg_id: hold.client_msg_id.map(str::to_owned),
            blocked: hold.blocked,
            decided_at_ms: now_ms() + delay.as_millis() as i64,
        });
    }

    /// Every held message, decided or not.
    pub(super) fn all(&self) -> Vec<HeldMessage> {
        self.held.lock().clone()
    }

    /// Forgets them (ids keep growing).
    pub(super) fn reset(&self) {
        self.held.lock().clear();
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
    msginfo: Vec<BlockedRecord>,
}

/// One record of `queryblocktmplmsg`, as WeChat answers it.
#[derive(Serialize)]
struct BlockedRecord {
    id: i64,
    tmpl_msg_id: String,
    title: String,
    content: String,
    send_timestamp: i64,
    openid: String,
}

/// `POST /wxa/sec/queryblocktmplmsg?access_token=…` `{"tmpl_msg_id", "largest_id", "limit"}`:
/// the held messages of that template that the review blocked (once it decided), with an id
/// above `largest_id`, at most `limit` (clamped to 1..=100: the real API's answer to a bad
/// limit is undocumented).
pub(super) fn query_blocked(mock: &Mock, params: &Params, body: &[u8]) -> Result<Answer, i64> {
    mock.tokens.check(params.get("access_token"), App::Oa)?;
    let req: BlockedRequest = json_body(body)?;
    let limit = req.limit.clamp(1, 100) as usize;
    let now = now_ms();
    let msginfo = mock
        .content
        .all()
        .into_iter()
        .filter(|m| m.blocked && m.decided(now))
        .filter(|m| m.tmpl_msg_id == req.tmpl_msg_id && m.id > req.largest_id)
        .take(limit)
        .map(|m| BlockedRecord {
            id: m.id,
            tmpl_msg_id: m.tmpl_msg_id,
            title: m.title,
            content: m.content,
            send_timestamp: m.send_timestamp,
            openid: m.openid,
        })
        .collect();
    Ok(Answer::ok(&BlockedAnswer {
        errcode: 0,
        errmsg: "ok",
        msginfo,
    }))
}
