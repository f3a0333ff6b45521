//! The OA's followers: who follows (the seed plus an overlay of changes), and the three user
//! APIs, `user/get` (paged list), `user/info` and `user/info/batchget` (`docs/wechat.md`
//! §5). Pages are computed from person indexes, so a million followers cost nothing until
//! asked for.

use std::collections::HashMap;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::config::{EndOfList, MockConfig};
use super::identity::{count_kth, every_kth, oa_openid, oa_person, seeded_subscribe_time, unionid};
use super::request::{Params, json_body};
use super::state::Mock;
use super::tokens::App;
use super::wire::Answer;

/// At most this many openids per `user/info/batchget` call.
const BATCH_MAX: usize = 100;

/// Follow state of the seeded people: the seed rule plus explicit changes.
#[derive(Debug)]
pub(super) struct Followers {
    people: u64,
    unsubscribed_every: u64,
    /// Changes made through `subscribe`/`unsubscribe`; read on every send, written rarely.
    overlay: RwLock<Overlay>,
}

#[derive(Debug, Default)]
struct Overlay {
    /// person → `Some(subscribe_time)` if they (re)followed, `None` if they unfollowed.
    changes: HashMap<u64, Option<i64>>,
    /// Followers gained minus lost relative to the seed.
    delta: i64,
}

impl Followers {
    pub(super) fn new(cfg: &MockConfig) -> Followers {
        Followers {
            people: cfg.followers,
            unsubscribed_every: cfg.unsubscribed_every,
            overlay: RwLock::new(Overlay::default()),
        }
    }

    /// The seeded person with OA openid `openid`, if any.
    pub(super) fn person(&self, openid: &str) -> Option<u64> {
        oa_person(openid, self.people)
    }

    /// `Some(subscribe_time)` if person `i` follows the OA now, else `None`.
    pub(super) fn follows_since(&self, i: u64) -> Option<i64> {
        Self::state(&self.overlay.read(), i, self.unsubscribed_every)
    }

    fn state(overlay: &Overlay, i: u64, every: u64) -> Option<i64> {
        match overlay.changes.get(&i) {
            Some(change) => *change,
            None => (!every_kth(i, every)).then(|| seeded_subscribe_time(i)),
        }
    }

    /// Makes person `i` follow (`true`) or unfollow; ignored for people outside the seed.
    pub(super) fn set(&self, i: u64, follow: bool) {
        if i >= self.people {
            return;
        }
        let mut overlay = self.overlay.write();
        let before = Self::state(&overlay, i, self.unsubscribed_every).is_some();
        if before == follow {
            return;
        }
        let since = follow.then(|| chrono::Utc::now().timestamp());
        overlay.changes.insert(i, since);
        overlay.delta += if follow { 1 } else { -1 };
    }

    /// Forgets every change: back to the seed.
    pub(super) fn reset(&self) {
        *self.overlay.write() = Overlay::default();
    }

    /// How many people follow now.
    fn total(&self, overlay: &Overlay) -> u64 {
        let seeded = self.people - count_kth(self.people, self.unsubscribed_every);
        seeded.saturating_add_signed(overlay.delta)
    }

    /// Up to `size` followers after person `after` (from the start if `None`), and whether
    /// any follower comes after them.
    fn page(&self, after: Option<u64>, size: u64) -> Page {
        let overlay = self.overlay.read();
        let every = self.unsubscribed_every;
        let mut openids = Vec::new();
        let mut i = after.map_or(0, |a| a + 1);
        while i < self.people && (openids.len() as u64) < size {
            if Self::state(&overlay, i, every).is_some() {
                openids.push(oa_openid(i));
            }
            i += 1;
        }
        let more = (i..self.people).any(|j| Self::state(&overlay, j, every).is_some());
        Page {
            total: self.total(&overlay),
            openids,
            more,
        }
    }
}

struct Page {
    total: u64,
    openids: Vec<String>,
    more: bool,
}

#[derive(Serialize)]
struct UserList<'a> {
    total: u64,
    count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<OpenidList>,
    next_openid: &'a str,
}

#[derive(Serialize)]
struct OpenidList {
    openid: Vec<String>,
}

/// `GET /cgi-bin/user/get?access_token=…&next_openid=…`.
pub(super) fn user_get(mock: &Mock, params: &Params) -> Result<Answer, i64> {
    mock.tokens.check(params.get("access_token"), App::Oa)?;
    let next = params.get("next_openid").filter(|s| !s.is_empty());
    let after = match next {
        Some(openid) => Some(mock.followers.person(openid).ok_or(40003)?),
        None => None,
    };
    let page = mock.followers.page(after, mock.cfg.page_size.max(1));
    Ok(page_answer(page, next.unwrap_or(""), mock.cfg.end_of_list))
}

/// The body of one `user/get` page, ending the list the way `end` says.
fn page_answer(page: Page, asked_after: &str, end: EndOfList) -> Answer {
    let count = page.openids.len();
    let Some(last) = page.openids.last().cloned() else {
        let (data, next_openid) = match end {
            EndOfList::ZeroCount => (Some(OpenidList { openid: vec![] }), asked_after),
            _ => (None, ""),
        };
        return Answer::ok(&UserList {
            total: page.total,
            count: 0,
            data,
            next_openid,
        });
    };
    let next_openid = if !page.more && end == EndOfList::EmptyNextOpenid {
        ""
    } else {
        last.as_str()
    };
    Answer::ok(&UserList {
        total: page.total,
        count,
        next_openid,
        data: Some(OpenidList {
            openid: page.openids,
        }),
    })
}

/// One `user/info` object. Field order is the real API's; absent fields are skipped, so the
/// unfollowed form is just `subscribe`, `openid` and (when bound) `unionid`.
#[derive(Serialize)]
struct UserInfo {
    subscribe: u8,
    openid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscribe_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unionid: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<FollowerExtra>,
}

/// The fields only a current follower has, after `unionid`.
#[derive(Serialize)]
struct FollowerExtra {
    remark: &'static str,
    groupid: u64,
    tagid_list: [u64; 0],
    subscribe_scene: &'static str,
    qr_scene: u64,
    qr_scene_str: &'static str,
}

fn user_info_of(mock: &Mock, openid: &str) -> Result<UserInfo, i64> {
    let i = mock.followers.person(openid).ok_or(40003)?;
    let since = mock.followers.follows_since(i);
    Ok(UserInfo {
        subscribe: since.is_some() as u8,
        openid: openid.to_owned(),
        language: since.map(|_| "zh_CN"),
        subscribe_time: since,
        unionid: unionid(i, &mock.cfg),
        extra: since.map(|_| FollowerExtra {
            remark: "",
            groupid: 0,
            tagid_list: [],
            subscribe_scene: "ADD_SCENE_QR_CODE",
            qr_scene: 0,
            qr_scene_str: "",
        }),
    })
}

/// `GET /cgi-bin/user/info?access_token=…&openid=…&lang=…`; an openid not of this OA is 40003.
pub(super) fn user_info(mock: &Mock, params: &Params) -> Result<Answer, i64> {
    mock.tokens.check(params.get("access_token"), App::Oa)?;
    let info = user_info_of(mock, params.get("openid").unwrap_or_default())?;
    Ok(Answer::ok(&info))
}

#[derive(Deserialize)]
struct BatchRequest {
    user_list: Vec<BatchEntry>,
}

#[derive(Deserialize)]
struct BatchEntry {
    openid: String,
}

#[derive(Serialize)]
struct BatchAnswer {
    user_info_list: Vec<UserInfo>,
}

/// `POST /cgi-bin/user/info/batchget`: 1 to 100 openids (else 40032), JSON only (else 47001).
pub(super) fn user_info_batch(mock: &Mock, params: &Params, body: &[u8]) -> Result<Answer, i64> {
    mock.tokens.check(params.get("access_token"), App::Oa)?;
    let req: BatchRequest = json_body(body)?;
    if req.user_list.is_empty() || req.user_list.len() > BATCH_MAX {
        return Err(40032);
    }
    let user_info_list = req
        .user_list
        .iter()
        .map(|e| user_info_of(mock, &e.openid))
        .collect::<Result<_, _>>()?;
    Ok(Answer::ok(&BatchAnswer { user_info_list }))
}
