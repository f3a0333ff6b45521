//! `POST /cgi-bin/message/subscribe/send` (`docs/wechat.md` §14), with the Mini Program's
//! token: validation in WeChat's order, the grant it spends, an optional msgid, the record of
//! accepted subscribe messages and the count per person, and the `subscribe_msg_sent_event`
//! receipt pushed afterwards. There is no `client_msg_id`: a resend is a second message.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::identity::person_of;
use super::mp_templates::check_subscribe_data;
use super::request::{Params, json_body};
use super::state::Mock;
use super::tokens::App;
use super::wire::Answer;

/// The first msgid of a subscribe message (a 64-bit id like the template sends').
const FIRST_SUBSCRIBE_MSGID: u64 = 2_864_323_726_461_255_680;

/// A subscribe message the fake WeChat accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptedSubscribe {
    /// The recipient's Mini Program openid.
    pub touser: String,
    /// The subscribe template.
    pub template_id: String,
    /// The msgid answered, if the answer carried one.
    pub msgid: Option<u64>,
    /// The page, if any.
    pub page: Option<String>,
    /// `miniprogram_state`, if sent.
    pub miniprogram_state: Option<String>,
    /// The `data` object as sent.
    pub data: Value,
    /// When it was accepted, in milliseconds since the Unix epoch.
    pub accepted_at_ms: u64,
}

#[derive(Deserialize)]
struct SubscribeRequest {
    #[serde(default)]
    touser: String,
    #[serde(default)]
    template_id: String,
    #[serde(default)]
    page: Option<String>,
    #[serde(default)]
    miniprogram_state: Option<String>,
    #[serde(default)]
    data: Value,
}

#[derive(Serialize)]
struct SendOk {
    errcode: i64,
    errmsg: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    msgid: Option<u64>,
}

/// Accepted subscribe messages: counters, the bounded record and the count per person.
#[derive(Debug)]
pub(super) struct SubscribeLog {
    next_msgid: AtomicU64,
    accepted: AtomicU64,
    max_recorded: usize,
    log: Mutex<VecDeque<AcceptedSubscribe>>,
    per_person: Mutex<BTreeMap<u64, u64>>,
}

impl SubscribeLog {
    pub(super) fn new(max_recorded: usize) -> SubscribeLog {
        SubscribeLog {
            next_msgid: AtomicU64::new(FIRST_SUBSCRIBE_MSGID),
            accepted: AtomicU64::new(0),
            max_recorded,
            log: Mutex::new(VecDeque::new()),
            per_person: Mutex::new(BTreeMap::new()),
        }
    }

    /// Subscribe messages accepted.
    pub(super) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// The recorded subscribe messages, oldest first.
    pub(super) fn sends(&self) -> Vec<AcceptedSubscribe> {
        self.log.lock().iter().cloned().collect()
    }

    /// Subscribe messages accepted per person (persons with none are absent).
    pub(super) fn per_person(&self) -> BTreeMap<u64, u64> {
        self.per_person.lock().clone()
    }

    /// Forgets everything except the msgid sequence.
    pub(super) fn reset(&self) {
        self.accepted.store(0, Ordering::Relaxed);
        self.log.lock().clear();
        self.per_person.lock().clear();
    }

    fn record(&self, person: u64, send: AcceptedSubscribe) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        *self.per_person.lock().entry(person).or_default() += 1;
        if self.max_recorded == 0 {
            return;
        }
        let mut log = self.log.lock();
        if log.len() >= self.max_recorded {
            log.pop_front();
        }
        log.push_back(send);
    }
}

/// `POST /cgi-bin/message/subscribe/send?access_token=…` (MP token only).
///
/// Checks, in order: token; JSON (47001); `touser` is a seeded person's Mini Program openid
/// (40003); the template exists (40037); `data` (47003, naming the field; the value table plus
/// the enums); `page`, without its query, is one of the Mini Program's pages (41030); the person
/// holds a grant (43101). None of these spends a grant. Then spends one (a long-term accept
/// spends none), records the message, answers `{"errcode":0,"errmsg":"ok","msgid":N}` (without
/// the msgid on every `subscribe_msgid_omit_every`-th) and schedules the receipt.
pub(super) fn subscribe_send(mock: &Mock, params: &Params, body: &[u8]) -> Result<Answer, i64> {
    mock.tokens.check(params.get("access_token"), App::Mp)?;
    let req: SubscribeRequest = json_body(body)?;
    let person = person_of(&req.touser)
        .filter(|p| *p < mock.cfg.followers && req.touser.starts_with("oMockMP"))
        .ok_or(40003)?;
    let template = mock.mp_templates.find(&req.template_id).ok_or(40037)?;
    if let Err(detail) = check_subscribe_data(&template, &req.data) {
        return Ok(Answer::err_with(47003, detail));
    }
    if let Some(page) = req.page.as_deref().filter(|p| !p.is_empty()) {
        let path = page.split('?').next().unwrap_or_default();
        if !mock.cfg.mp_pages.iter().any(|known| known == path) {
            return Err(41030);
        }
    }
    mock.grants.spend(person, &template.id)?;
    let id = mock.subscribes.next_msgid.fetch_add(1, Ordering::Relaxed);
    let n = id - FIRST_SUBSCRIBE_MSGID + 1;
    let every = mock.cfg.subscribe_msgid_omit_every;
    let msgid = (every == 0 || !n.is_multiple_of(every)).then_some(id);
    let send = AcceptedSubscribe {
        touser: req.touser,
        template_id: template.id,
        msgid,
        page: req.page,
        miniprogram_state: req.miniprogram_state,
        data: req.data,
        accepted_at_ms: chrono::Utc::now().timestamp_millis() as u64,
    };
    mock.schedule_sent_receipt(&send);
    mock.subscribes.record(person, send);
    Ok(Answer::ok(&SendOk {
        errcode: 0,
        errmsg: "ok",
        msgid,
    }))
}
