//! `POST /cgi-bin/message/template/send` (`docs/wechat.md` §4): validation in WeChat's order,
//! `client_msg_id` de-duplication, 64-bit msgids, and the record of accepted sends.
//!
//! This is the hot path of every benchmark: counters are atomics, the de-duplication memory is
//! a sharded map, and the log of accepted sends is a bounded queue behind a briefly held mutex.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::MockConfig;
use super::request::{Params, json_body};
use super::rules::{Hold, Verdict};
use super::state::Mock;
use super::templates::check_data;
use super::tokens::App;
use super::wire::Answer;

/// WeChat's answer to a message it held for its content review (no msgid).
const HELD_FOR_REVIEW: i64 = 40252;

/// WeChat's answer to a message identical to one sent within the last minute.
const REPEATED_CONTENT: i64 = 40241;

/// The first msgid handed out: a real-looking id above 2^53, so a client that parses it as a
/// float loses digits.
pub const FIRST_MSGID: u64 = 3_487_542_469_355_618_313;

/// A template message the fake WeChat accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptedSend {
    /// The recipient's OA openid.
    pub touser: String,
    /// The template.
    pub template_id: String,
    /// The caller's anti-reentry id, if it sent one.
    pub client_msg_id: Option<String>,
    /// The msgid answered (a 64-bit integer above 2^53).
    pub msgid: u64,
    /// When it was accepted, in milliseconds since the Unix epoch (for rate measurements).
    pub accepted_at_ms: u64,
    /// The `data` object as sent.
    pub data: Value,
    /// The jump URL, if any.
    pub url: Option<String>,
    /// The `miniprogram` object as sent, if any.
    pub miniprogram: Option<Value>,
}

/// The fields a send is checked on, borrowed from the body where possible (the hot path).
#[derive(Deserialize)]
struct SendRequest<'a> {
    #[serde(default, borrow)]
    touser: Cow<'a, str>,
    #[serde(default, borrow)]
    template_id: Cow<'a, str>,
    #[serde(default)]
    miniprogram: Option<Value>,
    #[serde(default, borrow)]
    client_msg_id: Option<Cow<'a, str>>,
    #[serde(default)]
    data: Value,
}

/// An accepted body, read again only when someone inspects the sends.
#[derive(Deserialize)]
struct RecordedBody {
    #[serde(default)]
    touser: String,
    #[serde(default)]
    template_id: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    miniprogram: Option<Value>,
    #[serde(default)]
    client_msg_id: Option<String>,
    #[serde(default)]
    data: Value,
}

/// An accepted send as kept: the raw body (one allocation), its msgid and when.
#[derive(Debug, Clone)]
struct Recorded {
    body: Box<[u8]>,
    msgid: u64,
    accepted_at_ms: u64,
}

/// Now, in milliseconds since the Unix epoch.
fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Recorded {
    fn to_send(&self) -> Option<AcceptedSend> {
        let b: RecordedBody = serde_json::from_slice(&self.body).ok()?;
        Some(AcceptedSend {
            touser: b.touser,
            template_id: b.template_id,
            client_msg_id: b.client_msg_id,
            msgid: self.msgid,
            accepted_at_ms: self.accepted_at_ms,
            data: b.data,
            url: b.url,
            miniprogram: b.miniprogram,
        })
    }
}

#[derive(Serialize)]
struct SendOk {
    errcode: i64,
    errmsg: &'static str,
    msgid: u64,
}

/// Accepted sends, their counters and the de-duplication memory.
#[derive(Debug)]
pub(super) struct SendLog {
    next_msgid: AtomicU64,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    window: Duration,
    max_recorded: usize,
    /// `touser` + `\n` + `client_msg_id` → (msgid, when); sharded so sends do not contend.
    recent: DashMap<String, (u64, Instant)>,
    /// How long an identical message is answered 40241 (zero: never).
    repeat_window: Duration,
    /// A hash of (touser, template, data) → when it was accepted; only with a repeat window.
    contents: DashMap<u64, Instant>,
    /// The last `max_recorded` accepted sends, as raw bodies (cheaper to keep than parsed
    /// JSON); the mutex is held for one push, or one copy when inspected.
    log: Mutex<VecDeque<Recorded>>,
}

impl SendLog {
    pub(super) fn new(cfg: &MockConfig) -> SendLog {
        SendLog {
            next_msgid: AtomicU64::new(FIRST_MSGID),
            accepted: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            window: cfg.client_msg_id_window,
            max_recorded: cfg.max_recorded_sends,
            recent: DashMap::new(),
            repeat_window: cfg.repeat_window,
            contents: DashMap::new(),
            log: Mutex::new(VecDeque::new()),
        }
    }

    /// Whether `req` is a resend of an accepted `(touser, client_msg_id)` still in the window
    /// (answered with the original msgid, never 40241).
    fn is_resend(&self, req: &SendRequest) -> bool {
        req.client_msg_id
            .as_deref()
            .filter(|id| !id.is_empty())
            .and_then(|id| self.recent.get(&format!("{}\n{id}", req.touser)))
            .is_some_and(|e| e.1.elapsed() < self.window)
    }

    /// Whether an identical message (recipient, template, data) was accepted within the repeat
    /// window: WeChat's 40241. Remembers this one otherwise.
    fn is_repeat(&self, req: &SendRequest) -> bool {
        if self.repeat_window.is_zero() {
            return false;
        }
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        req.touser.hash(&mut h);
        req.template_id.hash(&mut h);
        req.data.to_string().hash(&mut h);
        let now = Instant::now();
        match self.contents.entry(h.finish()) {
            Entry::Occupied(e) if now - *e.get() < self.repeat_window => true,
            entry => {
                entry.insert(now);
                false
            }
        }
    }

    /// Accepts a valid send: its msgid, or the original msgid if `(touser, client_msg_id)` was
    /// accepted within the window (then nothing is recorded and a duplicate is counted).
    fn accept(&self, req: &SendRequest, body: &[u8]) -> u64 {
        let msgid = match req.client_msg_id.as_deref().filter(|id| !id.is_empty()) {
            Some(id) => match self.remember(format!("{}\n{id}", req.touser)) {
                Ok(msgid) => msgid,
                Err(original) => {
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
                    return original;
                }
            },
            None => self.next_msgid.fetch_add(1, Ordering::Relaxed),
        };
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.record(Recorded {
            body: body.into(),
            msgid,
            accepted_at_ms: unix_millis(),
        });
        msgid
    }

    /// A new msgid remembered under `key`, or `Err(original msgid)` if `key` is still fresh.
    fn remember(&self, key: String) -> Result<u64, u64> {
        let now = Instant::now();
        match self.recent.entry(key) {
            Entry::Occupied(e) if now - e.get().1 < self.window => Err(e.get().0),
            entry => {
                let msgid = self.next_msgid.fetch_add(1, Ordering::Relaxed);
                entry.insert((msgid, now));
                Ok(msgid)
            }
        }
    }

    fn record(&self, send: Recorded) {
        if self.max_recorded == 0 {
            return;
        }
        let mut log = self.log.lock();
        if log.len() >= self.max_recorded {
            log.pop_front();
        }
        log.push_back(send);
    }

    /// The recorded sends, oldest first.
    pub(super) fn sends(&self) -> Vec<AcceptedSend> {
        // Copy the raw bodies under the lock, parse them outside it.
        let recorded: Vec<Recorded> = self.log.lock().iter().cloned().collect();
        recorded.iter().filter_map(Recorded::to_send).collect()
    }

    /// (accepted, duplicates dropped).
    pub(super) fn counts(&self) -> (u64, u64) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.duplicates.load(Ordering::Relaxed),
        )
    }

    /// Forgets `client_msg_id`s older than the window.
    pub(super) fn prune(&self) {
        let now = Instant::now();
        self.recent.retain(|_, (_, at)| now - *at < self.window);
        self.contents.retain(|_, at| now - *at < self.repeat_window);
    }

    /// Forgets everything except the msgid sequence (msgids never repeat).
    pub(super) fn reset(&self) {
        self.recent.clear();
        self.contents.clear();
        self.log.lock().clear();
        self.accepted.store(0, Ordering::Relaxed);
        self.duplicates.store(0, Ordering::Relaxed);
    }
}

/// `POST /cgi-bin/message/template/send?access_token=…` (OA token only).
///
/// Checks, in order: token; JSON (47001); `touser` is one of the OA's people (40003); the
/// template exists (40037); `data` (47003, naming the field); `miniprogram.pagepath` has no
/// leading `/` (40165); the recipient follows (43004); no blocked word (40249); a word held for
/// review answers 40252 without a msgid (the review's verdict comes after `review_delay`); the
/// daily quota is not used up (45009); with a repeat window, an identical message accepted
/// within it answers 40241 (a resend of the same `client_msg_id` is not one: it gets its
/// original msgid). Then de-duplicates and accepts.
pub(super) fn template_send(mock: &Mock, params: &Params, body: &[u8]) -> Result<Answer, i64> {
    mock.tokens.check(params.get("access_token"), App::Oa)?;
    let req: SendRequest = json_body(body)?;
    let person = mock.followers.person(&req.touser).ok_or(40003)?;
    let template = mock.templates.find(&req.template_id).ok_or(40037)?;
    if let Err(detail) = check_data(&template.keys, &req.data) {
        // 47003 is the one error whose errmsg names the offending field.
        return Ok(Answer::err_with(47003, detail));
    }
    let pagepath = req.miniprogram.as_ref().and_then(|m| m.get("pagepath"));
    if pagepath
        .and_then(Value::as_str)
        .is_some_and(|p| p.starts_with('/'))
    {
        return Err(40165);
    }
    if mock.followers.follows_since(person).is_none() {
        return Err(43004);
    }
    match mock.content.judge(&mock.cfg, &req.data) {
        Verdict::Clean => {}
        Verdict::Blocked => return Err(40249),
        held @ (Verdict::HeldThenBlocked | Verdict::HeldThenDelivered) => {
            let hold = Hold {
                template_id: &req.template_id,
                title: &template.title,
                openid: &req.touser,
                client_msg_id: req.client_msg_id.as_deref(),
                blocked: held == Verdict::HeldThenBlocked,
            };
            mock.content.hold(hold, mock.cfg.review_delay);
            return Err(HELD_FOR_REVIEW);
        }
    }
    if mock.sends.counts().0 >= mock.cfg.daily_quota {
        return Err(45009);
    }
    if !mock.sends.is_resend(&req) && mock.sends.is_repeat(&req) {
        return Err(REPEATED_CONTENT);
    }
    let msgid = mock.sends.accept(&req, body);
    Ok(Answer::ok(&SendOk {
        errcode: 0,
        errmsg: "ok",
        msgid,
    }))
}
