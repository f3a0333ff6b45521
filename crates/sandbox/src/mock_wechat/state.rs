//! The fake WeChat's whole state, shared by the request handlers, the control API and the
//! [`MockWechat`](super::MockWechat) handle. Each part guards itself (see their modules); there
//! is no lock around the whole.

use super::config::MockConfig;
use super::config::MpCallback;
use super::faults::Faults;
use super::followers::Followers;
use super::grants::Grants;
use super::login::Logins;
use super::mp_templates::MpTemplates;
use super::rules::Content;
use super::sends::SendLog;
use super::stats::{MockStats, Stats};
use super::subscribe::SubscribeLog;
use super::templates::Templates;
use super::tokens::Tokens;

/// Everything the fake knows.
#[derive(Debug)]
pub(super) struct Mock {
    pub(super) cfg: MockConfig,
    pub(super) tokens: Tokens,
    pub(super) followers: Followers,
    pub(super) logins: Logins,
    pub(super) sends: SendLog,
    pub(super) faults: Faults,
    pub(super) stats: Stats,
    pub(super) templates: Templates,
    pub(super) content: Content,
    pub(super) mp_templates: MpTemplates,
    pub(super) grants: Grants,
    pub(super) subscribes: SubscribeLog,
    /// The Mini Program's message push URL; changed at run time, read per push.
    pub(super) mp_callback: parking_lot::RwLock<Option<MpCallback>>,
}

impl Mock {
    pub(super) fn new(cfg: MockConfig) -> Mock {
        Mock {
            tokens: Tokens::new(&cfg),
            followers: Followers::new(&cfg),
            logins: Logins::default(),
            sends: SendLog::new(&cfg),
            faults: Faults::default(),
            stats: Stats::default(),
            templates: Templates::new(&cfg.templates),
            content: Content::default(),
            mp_templates: MpTemplates::new(&cfg.mp_templates),
            grants: Grants::default(),
            subscribes: SubscribeLog::new(cfg.max_recorded_sends),
            mp_callback: parking_lot::RwLock::new(cfg.mp_callback.clone()),
            cfg,
        }
    }

    /// A snapshot of the counters.
    pub(super) fn stats(&self) -> MockStats {
        let mut stats = self
            .stats
            .snapshot(self.sends.counts(), self.tokens.minted());
        stats.subscribe_sends_accepted = self.subscribes.accepted();
        stats
    }

    /// Forgets what happened: counters, recorded sends (template and subscribe), `client_msg_id`
    /// memory, fault rules, follow changes, grants and login codes. Issued tokens stay valid (a client holding one keeps
    /// working), and msgids keep increasing.
    pub(super) fn reset(&self) {
        self.stats.reset();
        self.sends.reset();
        self.faults.clear();
        self.followers.reset();
        self.logins.reset();
        self.tokens.reset_counters();
        self.content.reset();
        self.grants.reset();
        self.subscribes.reset();
    }

    /// Drops memory nobody can use any more (expired de-duplication keys, old codes, long-dead
    /// tokens). Called periodically.
    pub(super) fn prune(&self) {
        self.sends.prune();
        self.logins.prune(self.cfg.login_code_ttl);
        self.tokens.prune();
    }
}
