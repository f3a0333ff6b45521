//! Access tokens (`docs/wechat.md` §3): two isolated families per app.
//!
//! - `cgi-bin/token` (classic): every call mints a new token; the previous one keeps working for
//!   `token_overlap` more, then answers 40001 ("not latest").
//! - `cgi-bin/stable_token`: the same token while it has more than `token_overlap` to live; in
//!   its last `token_overlap` a call mints the next one (the old one lives out its life);
//!   `force_refresh` kills the current token and mints another (at most once per
//!   `force_refresh_spacing`).
//!
//! A token past its natural expiry answers 42001; one killed early (superseded, force-refreshed,
//! or [`invalidate_all`](Tokens::invalidate_all)) answers 40001; an unknown one 40001.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use rand::Rng;
use rand::distr::Alphanumeric;

use super::config::MockConfig;

/// Which fake app a token or credential belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum App {
    /// The Official Account.
    Oa = 0,
    /// The Mini Program.
    Mp = 1,
}

/// Length of a minted token (the real ones are ~130 characters; callers must reserve 512).
const TOKEN_LEN: usize = 128;

#[derive(Debug)]
struct Record {
    app: App,
    /// When the token stops working.
    dies_at: Instant,
    /// When it would have expired naturally (`dies_at` earlier than this ⇒ superseded ⇒ 40001).
    expires_at: Instant,
    /// Set by [`Tokens::invalidate_all`]: the errcode every later use answers.
    forced: Option<i64>,
}

impl Record {
    fn verdict(&self, now: Instant) -> Result<App, i64> {
        match self.forced {
            Some(code) => Err(code),
            None if now < self.dies_at => Ok(self.app),
            None if self.dies_at < self.expires_at => Err(40001),
            None => Err(42001),
        }
    }
}

/// The newest token of each family and app; only touched while minting.
#[derive(Debug, Default)]
struct Heads {
    classic: [Option<Box<str>>; 2],
    stable: [Option<Box<str>>; 2],
    last_force: [Option<Instant>; 2],
}

/// Every token issued, and the minting rules.
#[derive(Debug)]
pub(super) struct Tokens {
    ttl: Duration,
    overlap: Duration,
    force_spacing: Duration,
    /// Read on every API call, written only when minting or invalidating: a read-write lock.
    records: RwLock<HashMap<Box<str>, Record>>,
    /// Serialises minting so two concurrent `stable_token` calls agree on one token. Taken
    /// before `records` when both are needed.
    heads: Mutex<Heads>,
    minted_classic: AtomicU64,
    minted_stable: AtomicU64,
}

/// A token handed out, with its `expires_in`.
#[derive(Debug)]
pub(super) struct Issued {
    pub(super) token: String,
    pub(super) expires_in: u64,
}

impl Tokens {
    pub(super) fn new(cfg: &MockConfig) -> Tokens {
        Tokens {
            ttl: cfg.token_ttl,
            overlap: cfg.token_overlap,
            force_spacing: cfg.force_refresh_spacing,
            records: RwLock::new(HashMap::new()),
            heads: Mutex::new(Heads::default()),
            minted_classic: AtomicU64::new(0),
            minted_stable: AtomicU64::new(0),
        }
    }

    /// Checks the `access_token` of a call to an API of `want`: 41001 when missing, 40001 when
    /// unknown or killed, 42001 when expired, 48001 when it belongs to the other app.
    pub(super) fn check(&self, token: Option<&str>, want: App) -> Result<(), i64> {
        let token = token.filter(|t| !t.is_empty()).ok_or(41001)?;
        let app = match self.records.read().get(token) {
            Some(record) => record.verdict(Instant::now())?,
            None => return Err(40001),
        };
        if app == want { Ok(()) } else { Err(48001) }
    }

    /// `cgi-bin/token`: a new token; the app's previous classic token dies `overlap` from now.
    pub(super) fn mint_classic(&self, app: App) -> Issued {
        let now = Instant::now();
        let mut heads = self.heads.lock();
        let mut records = self.records.write();
        if let Some(prev) = heads.classic[app as usize].as_deref()
            && let Some(record) = records.get_mut(prev)
        {
            record.dies_at = record.dies_at.min(now + self.overlap);
        }
        let token = self.insert(&mut records, app, now);
        heads.classic[app as usize] = Some(token.clone().into());
        self.minted_classic.fetch_add(1, Ordering::Relaxed);
        Issued {
            token,
            expires_in: self.ttl.as_secs(),
        }
    }

    /// `cgi-bin/stable_token`: the current stable token, or the next one (see the module doc).
    pub(super) fn stable(&self, app: App, force_refresh: bool) -> Issued {
        let now = Instant::now();
        let mut heads = self.heads.lock();
        let mut records = self.records.write();
        let slot = app as usize;
        let head = heads.stable[slot].as_deref().and_then(|t| {
            let record = records.get(t)?;
            record.verdict(now).ok()?;
            Some((t.to_owned(), record.dies_at - now))
        });
        let spaced = heads.last_force[slot].is_none_or(|t| now - t >= self.force_spacing);
        match head {
            Some((token, _)) if force_refresh && spaced => {
                if let Some(record) = records.get_mut(token.as_str()) {
                    record.forced = Some(40001);
                }
                heads.last_force[slot] = Some(now);
            }
            Some((token, left)) if force_refresh || left > self.overlap => {
                return Issued {
                    token,
                    expires_in: left.as_secs(),
                };
            }
            _ => {}
        }
        let token = self.insert(&mut records, app, now);
        heads.stable[slot] = Some(token.clone().into());
        self.minted_stable.fetch_add(1, Ordering::Relaxed);
        Issued {
            token,
            expires_in: self.ttl.as_secs(),
        }
    }

    fn insert(&self, records: &mut HashMap<Box<str>, Record>, app: App, now: Instant) -> String {
        let token: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(TOKEN_LEN)
            .map(char::from)
            .collect();
        records.insert(
            token.clone().into(),
            Record {
                app,
                dies_at: now + self.ttl,
                expires_at: now + self.ttl,
                forced: None,
            },
        );
        token
    }

    /// Makes every token issued so far answer `code` (40001 or 42001) from now on.
    pub(super) fn invalidate_all(&self, code: i64) {
        for record in self.records.write().values_mut() {
            record.forced = Some(code);
        }
    }

    /// Forgets tokens dead for longer than a token lifetime (they then answer 40001, unknown).
    pub(super) fn prune(&self) {
        let now = Instant::now();
        let ttl = self.ttl;
        self.records.write().retain(|_, r| r.dies_at + ttl > now);
    }

    /// Tokens minted so far by `cgi-bin/token` and by `stable_token`.
    pub(super) fn minted(&self) -> (u64, u64) {
        (
            self.minted_classic.load(Ordering::Relaxed),
            self.minted_stable.load(Ordering::Relaxed),
        )
    }

    /// Zeroes the minted counters (tokens stay valid).
    pub(super) fn reset_counters(&self) {
        self.minted_classic.store(0, Ordering::Relaxed);
        self.minted_stable.store(0, Ordering::Relaxed);
    }
}
