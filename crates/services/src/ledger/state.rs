//! The states of a job on the `deliveries` ledger, as one enum: the migrations' `CHECK`
//! constraint lists the same names (a test holds the two together).
//!
//! ```text
//!              claim (first delivery)
//!   (no row) ─────────────────────────▶ sending ──▶ sent       (accepted: WeChat's msgid)
//!                                        │  │ ├───▶ held ─────▶ sent  (no block reported)
//!                                        │  │ │        └──────▶ dead  (content_blocked)
//!                                        │  │ ├───▶ duplicate  (40241: the same message
//!                                        │  │ │                  went out within a minute)
//!                                        │  │ ├───▶ dead       (with a dead reason)
//!                                        │  │ └───▶ cancelled  (its campaign was cancelled)
//!                                        ▼  │
//!                                   retrying ◀─ (a failure worth another try)
//!                                        │
//!                                        └─────▶ sending       (the next delivery claims it)
//!   dead ──▶ retrying                   (replayed by ops: a new life)
//! ```
//!
//! A second delivery of a finished job (a twin) changes no state: it is counted in the row's
//! `duplicates` and acknowledged.
//!
//! `sent`, `held`, `dead`, `cancelled` and `duplicate` are final: a delivery of such a job
//! is acknowledged without a send ([`LedgerState::is_final`]). `held` is final for the ledger
//! (WeChat, not wxnotify, delivers it once its review passes); its verdict only changes what
//! is recorded.

/// A job's state on the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedgerState {
    /// Claimed by a worker that is sending it (or about to).
    Sending,
    /// Waiting in a retry tier for its next delivery.
    Retrying,
    /// WeChat accepted it (it has WeChat's msgid).
    Sent,
    /// WeChat holds it for its content review (40252); WeChat delivers it if the review passes.
    Held,
    /// Ended without a send that counts, with a dead reason.
    Dead,
    /// Its campaign was cancelled before it was sent.
    Cancelled,
    /// WeChat answered that the same message went out within the last minute (40241): not
    /// sent again, not dead.
    Duplicate,
}

impl LedgerState {
    /// Every state, in the order of the diagram.
    pub const ALL: [LedgerState; 7] = [
        LedgerState::Sending,
        LedgerState::Retrying,
        LedgerState::Sent,
        LedgerState::Held,
        LedgerState::Dead,
        LedgerState::Cancelled,
        LedgerState::Duplicate,
    ];

    /// The name stored in `deliveries.state`.
    pub const fn as_str(self) -> &'static str {
        match self {
            LedgerState::Sending => "sending",
            LedgerState::Retrying => "retrying",
            LedgerState::Sent => "sent",
            LedgerState::Held => "held",
            LedgerState::Dead => "dead",
            LedgerState::Cancelled => "cancelled",
            LedgerState::Duplicate => "duplicate",
        }
    }

    /// The state stored as `name`.
    pub fn parse(name: &str) -> Option<LedgerState> {
        LedgerState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether a delivery of a job in this state is acknowledged without a send.
    pub const fn is_final(self) -> bool {
        !matches!(self, LedgerState::Sending | LedgerState::Retrying)
    }

    /// The names of the final states (for `state = ANY($1)` binds).
    pub fn final_names() -> Vec<&'static str> {
        LedgerState::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .map(LedgerState::as_str)
            .collect()
    }
}

impl std::fmt::Display for LedgerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state names of the newest `CHECK (state IN (…))` on `deliveries` in the migrations.
    fn checked_names() -> Vec<String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let mut last = None;
        for file in files {
            let sql = std::fs::read_to_string(&file).unwrap();
            for statement in sql.split(';') {
                let deliveries = statement.contains("deliveries") || statement.contains("sending");
                if let Some(at) = statement.find("CHECK (state IN (")
                    && deliveries
                    && statement.contains("'retrying'")
                {
                    let list = &statement[at + "CHECK (state IN (".len()..];
                    let list = &list[..list.find(')').unwrap()];
                    last = Some(
                        list.split(',')
                            .map(|s| s.trim().trim_matches('\'').to_owned())
                            .collect::<Vec<_>>(),
                    );
                }
            }
        }
        last.expect("a CHECK of the deliveries states")
    }

    #[test]
    fn the_enum_and_the_migrations_name_the_same_states() {
        let mut checked = checked_names();
        checked.sort();
        let mut ours: Vec<String> = LedgerState::ALL.iter().map(|s| s.to_string()).collect();
        ours.sort();
        assert_eq!(ours, checked);
        for state in LedgerState::ALL {
            assert_eq!(LedgerState::parse(state.as_str()), Some(state));
        }
        assert_eq!(
            LedgerState::final_names(),
            ["sent", "held", "dead", "cancelled", "duplicate"]
        );
    }
}
