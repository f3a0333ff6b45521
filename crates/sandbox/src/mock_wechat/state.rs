//! The fake WeChat's whole state, shared by the request handlers, the control API and the
//! [`MockWechat`](super::MockWechat) handle. Each part guards itself (see their modules); there
//! is no lock around the whole.

use super::config::MockConfig;
use super::faults::Faults;
use super::followers::Followers;
use super::login::Logins;
use super::rules::Content;
use super::sends::SendLog;
use super::stats::{MockStats, Stats};
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
            cfg,
        }
    }

    /// A snapshot of the counters.
    pub(super) fn stats(&self) -> MockStats {
        self.stats
            .snapshot(self.sends.counts(), self.tokens.minted())
    }

    /// Forgets what happened: counters, recorded sends, `client_msg_id` memory, fault rules,
    /// follow changes and login codes. Issued tokens stay valid (a client holding one keeps
    /// working), and msgids keep increasing.
    pub(super) fn reset(&self) {
        self.stats.reset();
        self.sends.reset();
        self.faults.clear();
        self.followers.reset();
        self.logins.reset();
        self.tokens.reset_counters();
        self.content.reset();
    }

    /// Drops memory nobody can use any more (expired de-duplication keys, old codes, long-dead
    /// tokens). Called periodically.
    pub(super) fn prune(&self) {
        self.sends.prune();
        self.logins.prune(self.cfg.login_code_ttl);
        self.tokens.prune();
    }
}
