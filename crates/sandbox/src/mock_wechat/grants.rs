//! The grants the fake WeChat keeps per person and subscribe template, as WeChat does
//! (`docs/wechat.md` §14): a one-time accept adds one grant (they add up and never expire) and
//! a send spends one; a long-term accept allows every later send; a reject (in the popup or
//! later in the settings) or a ban stops sends (43101) until the next accept. `filter` changes
//! nothing. Nobody outside can ask WeChat how many are left; tests and scripts can ask the fake.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::identity::mp_openid;

/// What the fake holds for one person and template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockGrant {
    /// The person (seeded index).
    pub person: u64,
    /// Their Mini Program openid.
    pub mp_openid: String,
    /// The subscribe template.
    pub template_id: String,
    /// One-time grants not yet spent.
    pub remaining: u64,
    /// Whether a long-term accept is in force.
    pub long_term: bool,
    /// `accept`, `reject` or `ban`: the person's latest choice.
    pub state: String,
}

#[derive(Debug, Clone, Default)]
struct Held {
    remaining: u64,
    long_term: bool,
    /// `None` = accept.
    refused: Option<&'static str>,
}

/// Every person's grants. Popups and sends are rare next to template sends: one mutex.
#[derive(Debug, Default)]
pub(super) struct Grants(Mutex<HashMap<(u64, String), Held>>);

impl Grants {
    /// Applies one choice of `person` for `template` (`long_term` = a type 3 template).
    /// Returns whether the status is one WeChat knows.
    pub(super) fn choose(
        &self,
        person: u64,
        template: &str,
        status: &str,
        long_term: bool,
    ) -> bool {
        let refused = match status {
            "accept" | "acceptWithAudio" => None,
            "reject" => Some("reject"),
            "ban" => Some("ban"),
            "filter" => return true,
            _ => return false,
        };
        let mut map = self.0.lock();
        let held = map.entry((person, template.to_owned())).or_default();
        held.refused = refused;
        if refused.is_none() {
            if long_term {
                held.long_term = true;
            } else {
                held.remaining += 1;
            }
        }
        true
    }

    /// Spends what a send to `person` with `template` needs: 43101 when they hold nothing.
    pub(super) fn spend(&self, person: u64, template: &str) -> Result<(), i64> {
        let mut map = self.0.lock();
        let held = map.get_mut(&(person, template.to_owned())).ok_or(43101)?;
        if held.refused.is_some() {
            return Err(43101);
        }
        if held.long_term {
            return Ok(());
        }
        held.remaining = held.remaining.checked_sub(1).ok_or(43101)?;
        Ok(())
    }

    /// What `person` holds (every person when `None`), by person then template.
    pub(super) fn list(&self, person: Option<u64>) -> Vec<MockGrant> {
        let mut list: Vec<MockGrant> = self
            .0
            .lock()
            .iter()
            .filter(|((p, _), _)| person.is_none_or(|want| *p == want))
            .map(|((p, t), h)| MockGrant {
                person: *p,
                mp_openid: mp_openid(*p),
                template_id: t.clone(),
                remaining: h.remaining,
                long_term: h.long_term,
                state: h.refused.unwrap_or("accept").to_owned(),
            })
            .collect();
        list.sort_by(|a, b| (a.person, &a.template_id).cmp(&(b.person, &b.template_id)));
        list
    }

    /// Forgets every grant.
    pub(super) fn reset(&self) {
        self.0.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_time_grants_add_up_and_each_send_spends_one() {
        let g = Grants::default();
        assert_eq!(g.spend(1, "T"), Err(43101));
        assert!(g.choose(1, "T", "accept", false));
        assert!(g.choose(1, "T", "acceptWithAudio", false));
        assert_eq!(g.list(Some(1))[0].remaining, 2);
        assert_eq!(g.spend(1, "T"), Ok(()));
        assert_eq!(g.spend(1, "T"), Ok(()));
        assert_eq!(g.spend(1, "T"), Err(43101));
    }

    #[test]
    fn a_rejection_stops_sends_until_the_next_accept_and_long_term_sends_many() {
        let g = Grants::default();
        g.choose(1, "T", "accept", false);
        g.choose(1, "T", "reject", false);
        assert_eq!(g.spend(1, "T"), Err(43101));
        assert_eq!(g.list(None)[0].state, "reject");
        g.choose(1, "T", "accept", false);
        assert_eq!(g.list(None)[0].remaining, 2);
        g.choose(2, "L", "accept", true);
        for _ in 0..5 {
            assert_eq!(g.spend(2, "L"), Ok(()));
        }
        g.choose(2, "L", "ban", true);
        assert_eq!(g.spend(2, "L"), Err(43101));
        assert!(!g.choose(2, "L", "maybe", true));
        assert!(g.choose(3, "T", "filter", false));
        assert!(g.list(Some(3)).is_empty());
    }
}
