//! The fake WeChat API server: the far end of every test, the demo and every benchmark.
//!
//! It speaks the wire format of `docs/wechat.md` §1 byte for byte (HTTP 200, `text/plain`, no
//! `errcode` on success except `template/send`, errmsg with a `rid`, 64-bit msgids) and is an
//! implementation independent of the crate's client (it shares none of its types), so tests of
//! the client against it mean something.
//!
//! The world is seeded and computed: person `i` (0-based) has OA openid [`oa_openid`]`(i)`, MP
//! openid [`mp_openid`]`(i)` and unionid [`unionid`]`(i, cfg)`; every k-th person has no unionid
//! or has unfollowed, as [`MockConfig`] says. Tests change it through [`MockWechat`] (follow
//! state, faults, token invalidation, login codes) and read back [`MockStats`] and
//! [`AcceptedSend`]s; scripts do the same over HTTP under `/mock/…` (see `control`).
//!
//! # Layout
//!
//! - `config`: [`MockConfig`], [`EndOfList`], [`MockTemplate`]; `identity`: who person i is.
//! - `server`: the hyper accept loop (able to drop connections) and the janitor; `routes`: the
//!   API routes and the per-call pipeline (count, latency, faults, work, answer); `control`:
//!   `/mock/…`; `wire`: the answer format and canonical errmsgs; `request`: query and body
//!   parsing.
//! - One file per API family: `credentials` + `tokens` (access tokens), `followers` (user/get,
//!   user/info, batchget), `login` (jscode2session), `templates` (template list and data
//!   rules; deleted and added at run time), `sends` (template/send, dedupe, msgids), `rules`
//!   (`openapi/quota/get`, blocked content, content held for review and its verdict,
//!   `queryblocktmplmsg`).
//! - `faults` ([`FaultPlan`]), `stats` ([`MockStats`]), `state` (all of it together).
//! - The Mini Program's subscribe messages: `mp_templates` (`wxaapi/newtmpl/gettemplate` and the
//!   data rules with enums), `grants` (what each person holds per template), `subscribe`
//!   (`subscribe/send`, optional msgids, counts per person), `mp_events` (the popup, a later
//!   cancellation and the send receipts, pushed to the Mini Program's push URL with retries).
//! - `events`: pushing signed (and, in safe mode, encrypted) events to a callback URL, as XML
//!   or JSON ([`PushFormat`], per fake in [`MockConfig::push_format`] or per push).

mod cli;
mod config;
mod control;
mod credentials;
mod endpoint;
mod events;
mod faults;
mod followers;
mod grants;
mod identity;
mod login;
mod mp_events;
mod mp_templates;
mod request;
mod routes;
mod rules;
mod sends;
mod server;
mod state;
mod stats;
mod subscribe;
mod templates;
mod tokens;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use cli::{MockArgs, run};
pub use config::{EndOfList, MockConfig, MockMpTemplate, MockTemplate, MpCallback};
pub use endpoint::Endpoint;
pub use events::{
    EventPush, MOCK_OA_ORIGINAL_ID, MockEvent, PushAnswer, PushMode, deliver_body, deliver_xml,
};
pub use faults::{Fault, FaultPlan, FaultRule};
pub use grants::MockGrant;
pub use identity::{mp_openid, oa_openid, person_of, seeded_follower, unionid};
pub use mp_events::{MOCK_MP_ORIGINAL_ID, MpEventPush, MpPushReport, PopupResults};
pub use rules::HeldMessage;
pub use sends::{AcceptedSend, FIRST_MSGID};
pub use stats::MockStats;
pub use subscribe::AcceptedSubscribe;
pub use wxnotify_core::wechat::event::PushFormat;

use state::Mock;

/// The fake Official Account's appid.
pub const MOCK_OA_APPID: &str = "wxmockoa000000001";
/// The fake Official Account's AppSecret (not a secret: it is public and fake).
pub const MOCK_OA_SECRET: &str = "mock-oa-secret";
/// The fake Mini Program's appid.
pub const MOCK_MP_APPID: &str = "wxmockmp000000001";
/// The fake Mini Program's AppSecret (not a secret: it is public and fake).
pub const MOCK_MP_SECRET: &str = "mock-mp-secret";

/// A running fake WeChat. Dropping it stops the server (without waiting); prefer
/// [`shutdown`](MockWechat::shutdown).
#[derive(Debug)]
pub struct MockWechat {
    mock: Arc<Mock>,
    addr: SocketAddr,
    /// Stops the accept loop and the janitor.
    cancel: CancellationToken,
    server: Option<JoinHandle<()>>,
}

impl MockWechat {
    /// Starts a fake WeChat on `127.0.0.1` and a free port.
    pub async fn start(cfg: MockConfig) -> anyhow::Result<MockWechat> {
        Self::start_on(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a fake WeChat on `addr` (port 0 = any free port).
    pub async fn start_on(cfg: MockConfig, addr: SocketAddr) -> anyhow::Result<MockWechat> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mock = Arc::new(Mock::new(cfg));
        let router = routes::api()
            .merge(control::control())
            .with_state(mock.clone());
        let cancel = CancellationToken::new();
        tokio::spawn(server::janitor(mock.clone(), cancel.clone()));
        let server = tokio::spawn(server::serve(listener, router, cancel.clone()));
        Ok(MockWechat {
            mock,
            addr,
            cancel,
            server: Some(server),
        })
    }

    /// The API base URL, e.g. `http://127.0.0.1:38117/` (use as `WECHAT_API_BASE`).
    pub fn base_url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}", self.addr)).expect("a socket address is a URL host")
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &MockConfig {
        &self.mock.cfg
    }

    /// A `wx.login()` code for Mini Program user `person`: usable once, for
    /// `login_code_ttl` (5 minutes by default).
    pub fn issue_login_code(&self, person: u64) -> String {
        self.mock.logins.issue(person)
    }

    /// Replaces the fault rules.
    pub fn set_faults(&self, plan: FaultPlan) {
        self.mock.faults.set(plan);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.mock.faults.clear();
    }

    /// Every token issued so far answers 40001 from now on (new ones work).
    pub fn invalidate_tokens(&self) {
        self.mock.tokens.invalidate_all(40001);
    }

    /// Every token issued so far answers 42001 from now on (new ones work).
    pub fn expire_tokens(&self) {
        self.mock.tokens.invalidate_all(42001);
    }

    /// Person `person` unfollows the OA (ignored outside `0..followers`).
    pub fn unsubscribe(&self, person: u64) {
        self.mock.followers.set(person, false);
    }

    /// Person `person` follows the OA again, as of now (ignored outside `0..followers`).
    pub fn subscribe(&self, person: u64) {
        self.mock.followers.set(person, true);
    }

    /// Deletes a template on "WeChat's side": sends with it answer 40037 and
    /// `get_all_private_template` no longer lists it. True if it existed.
    pub fn delete_template(&self, id: &str) -> bool {
        self.mock.templates.delete(id)
    }

    /// Adds (or replaces) a template.
    pub fn add_template(&self, template: MockTemplate) {
        self.mock.templates.add(template);
    }

    /// The messages held for review so far (40252), with their verdicts; the blocked ones are
    /// what `queryblocktmplmsg` lists once decided.
    pub fn held(&self) -> Vec<HeldMessage> {
        self.mock.content.all()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> MockStats {
        self.mock.stats()
    }

    /// The accepted sends, oldest first (at most `max_recorded_sends`, the latest ones).
    pub fn sends(&self) -> Vec<AcceptedSend> {
        self.mock.sends.sends()
    }

    /// Forgets what happened: counters, recorded sends, `client_msg_id` memory, fault rules,
    /// follow changes and login codes. Issued tokens stay valid; msgids keep increasing.
    pub fn reset(&self) {
        self.mock.reset();
    }

    /// Stops accepting, lets in-flight calls finish (up to 5 s) and returns.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for MockWechat {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
