//! This process's own record of 45009 quota pauses, and of its tries to probe suspended apps.
//!
//! A pause is shared with other workers through `apps.paused_until` (see `rate_limit.rs`), and
//! the heartbeat copies what Postgres says into the limiters every second. When the pause could
//! not be written to Postgres, the heartbeat would read "no pause" back and lift it within a
//! second; so the pipeline also keeps the pauses it decided itself here, where no heartbeat
//! overwrites them, and an app stays paused until the later of the two ends.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wxnotify_core::domain::AppName;

/// Pauses this process decided, by app, and when it last tried to claim a probe of a
/// suspended app.
#[derive(Debug, Default)]
pub struct Pauses {
    until: Mutex<HashMap<AppName, Instant>>,
    probe_tried: Mutex<HashMap<AppName, Instant>>,
}

/// The least time between two tries of this process to claim a probe of one app (the claim
/// itself, in Postgres, allows one probe per interval across all processes).
const PROBE_TRY_EVERY: Duration = Duration::from_secs(1);

impl Pauses {
    /// Pauses `app` for `pause` from now (never shortens a longer pause).
    pub fn pause(&self, app: &AppName, pause: Duration) {
        let until = Instant::now() + pause;
        let mut map = self.until.lock().expect("pause lock");
        let entry = map.entry(app.clone()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Whether this process may try to claim a probe of suspended `app` now (at most once per
    /// second, so the jobs waiting on a suspended app cost no statement each); marks the try.
    pub fn probe_due(&self, app: &AppName) -> bool {
        let now = Instant::now();
        let mut tried = self.probe_tried.lock().expect("pause lock");
        match tried.get(app) {
            Some(at) if now.duration_since(*at) < PROBE_TRY_EVERY => false,
            _ => {
                tried.insert(app.clone(), now);
                true
            }
        }
    }

    /// How long `app` stays paused by this process's own decision, if it does.
    pub fn paused_for(&self, app: &AppName) -> Option<Duration> {
        let map = self.until.lock().expect("pause lock");
        let left = map.get(app)?.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_holds_until_it_ends_and_is_never_shortened() {
        let p = Pauses::default();
        let app = AppName::parse("shop").unwrap();
        assert_eq!(p.paused_for(&app), None);
        p.pause(&app, Duration::from_secs(60));
        p.pause(&app, Duration::from_secs(1));
        assert!(p.paused_for(&app).unwrap() > Duration::from_secs(50));
        p.pause(&app, Duration::ZERO);
        assert!(p.paused_for(&app).is_some());
    }
}
