//! Counters of what the fake WeChat was asked and answered. Lock-free on the hot path: one
//! atomic per endpoint and per known errcode; only errcodes outside the canonical table (which
//! only fault injection produces) go through a mutex.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::endpoint::Endpoint;
use super::wire::CANONICAL;

/// A snapshot of the fake's counters (`GET /mock/stats` serves it as JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MockStats {
    /// Calls per endpoint (every endpoint is listed, zeros included), faults included.
    pub calls: BTreeMap<Endpoint, u64>,
    /// Answers per errcode (0 = success); errcodes never answered are absent. Dropped
    /// connections and HTTP-status faults answer no errcode.
    pub errcodes: BTreeMap<i64, u64>,
    /// Template sends accepted (recorded); duplicates are not counted here.
    pub sends_accepted: u64,
    /// Template sends answered with an earlier msgid because `(touser, client_msg_id)` repeated
    /// within the window (not sent again).
    pub duplicate_sends_dropped: u64,
    /// Subscribe messages accepted (`subscribe/send`; per person: `GET /mock/mp/counts`).
    #[serde(default)]
    pub subscribe_sends_accepted: u64,
    /// Tokens minted, under [`Endpoint::Token`] and [`Endpoint::StableToken`].
    pub tokens_minted: BTreeMap<Endpoint, u64>,
    /// Fault rules that fired.
    pub faults_injected: u64,
}

impl MockStats {
    /// Calls to `endpoint`.
    pub fn calls_to(&self, endpoint: Endpoint) -> u64 {
        self.calls.get(&endpoint).copied().unwrap_or(0)
    }

    /// Answers carrying `errcode` (0 = success).
    pub fn answers_with(&self, errcode: i64) -> u64 {
        self.errcodes.get(&errcode).copied().unwrap_or(0)
    }

    /// Tokens minted by `endpoint` ([`Endpoint::Token`] or [`Endpoint::StableToken`]).
    pub fn tokens_minted_by(&self, endpoint: Endpoint) -> u64 {
        self.tokens_minted.get(&endpoint).copied().unwrap_or(0)
    }
}

/// The live counters.
#[derive(Debug)]
pub(super) struct Stats {
    calls: [AtomicU64; Endpoint::ALL.len()],
    /// Parallel to [`CANONICAL`].
    known: Vec<AtomicU64>,
    /// Errcodes outside [`CANONICAL`]; only injected faults produce them, so a mutex is fine.
    other: Mutex<BTreeMap<i64, u64>>,
    faults: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            calls: Default::default(),
            known: CANONICAL.iter().map(|_| AtomicU64::new(0)).collect(),
            other: Mutex::default(),
            faults: AtomicU64::new(0),
        }
    }
}

impl Stats {
    /// Counts a call to `endpoint`.
    pub(super) fn call(&self, endpoint: Endpoint) {
        self.calls[endpoint.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an answer with `errcode`.
    pub(super) fn answered(&self, errcode: i64) {
        match CANONICAL.iter().position(|(c, _)| *c == errcode) {
            Some(i) => {
                self.known[i].fetch_add(1, Ordering::Relaxed);
            }
            None => *self.other.lock().entry(errcode).or_default() += 1,
        }
    }

    /// Counts `n` fault rules that fired.
    pub(super) fn faults(&self, n: u64) {
        if n > 0 {
            self.faults.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The counters kept here, with the send and token counts supplied by their owners.
    pub(super) fn snapshot(&self, sends: (u64, u64), minted: (u64, u64)) -> MockStats {
        let calls = Endpoint::ALL
            .iter()
            .map(|e| (*e, self.calls[e.index()].load(Ordering::Relaxed)))
            .collect();
        let mut errcodes = self.other.lock().clone();
        for ((code, _), n) in CANONICAL.iter().zip(&self.known) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                errcodes.insert(*code, n);
            }
        }
        MockStats {
            calls,
            errcodes,
            sends_accepted: sends.0,
            duplicate_sends_dropped: sends.1,
            subscribe_sends_accepted: 0,
            tokens_minted: [
                (Endpoint::Token, minted.0),
                (Endpoint::StableToken, minted.1),
            ]
            .into(),
            faults_injected: self.faults.load(Ordering::Relaxed),
        }
    }

    /// Zeroes everything.
    pub(super) fn reset(&self) {
        for n in self.calls.iter().chain(&self.known) {
            n.store(0, Ordering::Relaxed);
        }
        self.other.lock().clear();
        self.faults.store(0, Ordering::Relaxed);
    }
}
