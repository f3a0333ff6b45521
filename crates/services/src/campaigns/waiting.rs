//! Why a campaign sends nothing now, and when it goes on: the one decision `campaign status`,
//! the admin API and the console show (the dispatcher's own checks are the [`pacing`] functions
//! this module builds on, so the two cannot disagree).
//!
//! [`pacing`]: super::pacing

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use serde::Serialize;

use super::model::{CampaignState, Pacing};
use super::pacing::{self, Wait};

/// Why a campaign waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    /// Started with a start time ahead: it begins then.
    Scheduled,
    /// Paused by an operator: it goes on when someone resumes it.
    Paused,
    /// Outside its daily send window: it goes on when the window opens.
    WindowClosed,
    /// Its daily cap is reached: it goes on when its next day (in its time zone) begins.
    DailyCap,
    /// The app is paused because WeChat's daily quota is used up (45009).
    Quota,
    /// The app is paused by an operator or suspended while WeChat refuses the account.
    AppPaused,
}

impl WaitReason {
    /// The name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Scheduled => "scheduled",
            WaitReason::Paused => "paused",
            WaitReason::WindowClosed => "window_closed",
            WaitReason::DailyCap => "daily_cap",
            WaitReason::Quota => "quota",
            WaitReason::AppPaused => "app_paused",
        }
    }
}

/// Why a campaign sends nothing now, until when, and the sentence that says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Waiting {
    /// Why.
    pub reason: WaitReason,
    /// When it goes on by itself (none: someone must act, e.g. resume it).
    pub until: Option<DateTime<Utc>>,
    /// One sentence for people, with the time.
    pub message: String,
}

/// The app's pause, as far as a campaign cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppHold {
    /// The app may send.
    None,
    /// WeChat's daily quota is used up until then.
    Quota(Option<DateTime<Utc>>),
    /// Paused by hand until then, or suspended (no end).
    Other(Option<DateTime<Utc>>),
}

/// What the decision reads besides the clock.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The campaign's state.
    pub state: CampaignState,
    /// Its pacing.
    pub pacing: &'a Pacing,
    /// The stored cap day and what was dispatched on it.
    pub cap_day: Option<NaiveDate>,
    /// Dispatched on `cap_day`.
    pub cap_day_dispatched: u64,
    /// Reachable recipients not dispatched yet (nothing to wait for when none are left).
    pub not_dispatched: u64,
    /// The app's pause.
    pub app: AppHold,
}

/// Why the campaign sends nothing at `now`, or `None` when it may send (or is not meant to:
/// a draft, or a finished campaign).
pub fn waiting(i: &Inputs<'_>, now: DateTime<Utc>) -> Option<Waiting> {
    let tz = i.pacing.time_zone;
    let at = |t: DateTime<Utc>| {
        format!(
            "{} ({})",
            t.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
            tz.name()
        )
    };
    let make = |reason, until: Option<DateTime<Utc>>, message: String| {
        Some(Waiting {
            reason,
            until,
            message,
        })
    };
    match i.state {
        CampaignState::Paused => {
            return make(
                WaitReason::Paused,
                None,
                "paused by an operator: it goes on when someone resumes it".into(),
            );
        }
        CampaignState::Scheduled | CampaignState::Running => {}
        _ => return None,
    }
    if i.state == CampaignState::Scheduled || i.pacing.start_at.is_some_and(|s| s > now) {
        let until = i.pacing.start_at.filter(|s| *s > now);
        let message = match until {
            Some(t) => format!("scheduled: starts at {}", at(t)),
            None => "scheduled: starts within seconds".into(),
        };
        return make(WaitReason::Scheduled, until, message);
    }
    if i.not_dispatched == 0 {
        return None;
    }
    match i.app {
        AppHold::None => {}
        AppHold::Quota(until) => {
            let message = match until {
                Some(t) => format!(
                    "the app's daily WeChat quota is used up: sending goes on at {}",
                    at(t)
                ),
                None => "the app's daily WeChat quota is used up".into(),
            };
            return make(WaitReason::Quota, until, message);
        }
        AppHold::Other(until) => {
            let message = match until {
                Some(t) => format!("the app is paused: sending goes on at {}", at(t)),
                None => "the app is suspended while WeChat refuses it (`wxnotify status` says why)"
                    .into(),
            };
            return make(WaitReason::AppPaused, until, message);
        }
    }
    if pacing::time_allows(i.pacing, now) == Err(Wait::WindowClosed) {
        let until = next_window_opening(i.pacing, now);
        let message = match until {
            Some(t) => format!("outside its send window: sending goes on at {}", at(t)),
            None => "outside its send window".into(),
        };
        return make(WaitReason::WindowClosed, until, message);
    }
    if pacing::cap_left(i.pacing, now, i.cap_day, i.cap_day_dispatched) == 0 {
        let until = next_local_day(i.pacing, now).map(|day| {
            // A new day starts outside a window that opens later that day.
            match next_window_opening(i.pacing, day) {
                Some(open) if pacing::time_allows(i.pacing, day).is_err() => open,
                _ => day,
            }
        });
        let message = match until {
            Some(t) => format!(
                "its daily cap of {} is reached: sending goes on at {}",
                i.pacing.daily_cap.unwrap_or_default(),
                at(t)
            ),
            None => "its daily cap is reached".into(),
        };
        return make(WaitReason::DailyCap, until, message);
    }
    None
}

/// The first instant of the next local day in the campaign's time zone.
fn next_local_day(p: &Pacing, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let tomorrow = pacing::cap_day(p, now).succ_opt()?;
    local_instant(p, tomorrow, NaiveTime::MIN)
}

/// When the send window opens next after `now` (today's opening if still ahead, else
/// tomorrow's).
fn next_window_opening(p: &Pacing, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let w = p.window?;
    let local = now.with_timezone(&p.time_zone);
    let today = local.date_naive();
    let day = if local.time() < w.start {
        today
    } else {
        today.succ_opt()?
    };
    local_instant(p, day, w.start)
}

/// The instant of local `day` at `time` in the campaign's time zone (the earlier one when a
/// clock change repeats it, an hour later when it skips it).
fn local_instant(p: &Pacing, day: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    let naive = day.and_time(time);
    p.time_zone
        .from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            p.time_zone
                .from_local_datetime(&(naive + Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaigns::model::SendWindow;

    fn pacing() -> Pacing {
        Pacing {
            rate_per_second: 10,
            window: Some(SendWindow::parse("09:00-21:00").unwrap()),
            time_zone: chrono_tz::Asia::Shanghai,
            start_at: None,
            daily_cap: Some(100),
        }
    }

    fn inputs(p: &Pacing) -> Inputs<'_> {
        Inputs {
            state: CampaignState::Running,
            pacing: p,
            cap_day: None,
            cap_day_dispatched: 0,
            not_dispatched: 50,
            app: AppHold::None,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_closed_window_waits_until_it_opens_in_the_campaigns_time_zone() {
        let p = pacing();
        // 14:00 UTC is 22:00 in Shanghai: the window opens at 09:00 there, 01:00 UTC.
        let w = waiting(&inputs(&p), at("2026-11-30T14:00:00Z")).unwrap();
        assert_eq!(w.reason, WaitReason::WindowClosed);
        assert_eq!(w.until, Some(at("2026-12-01T01:00:00Z")));
        assert!(w.message.contains("2026-12-01 09:00"), "{}", w.message);
        // 00:30 UTC is 08:30 there: it opens the same day.
        let w = waiting(&inputs(&p), at("2026-11-30T00:30:00Z")).unwrap();
        assert_eq!(w.until, Some(at("2026-11-30T01:00:00Z")));
        assert_eq!(waiting(&inputs(&p), at("2026-11-30T02:00:00Z")), None);
    }

    #[test]
    fn a_reached_daily_cap_waits_for_the_next_days_window() {
        let p = pacing();
        let now = at("2026-11-30T02:00:00Z");
        let mut i = inputs(&p);
        i.cap_day = Some(pacing::cap_day(&p, now));
        i.cap_day_dispatched = 100;
        let w = waiting(&i, now).unwrap();
        assert_eq!(w.reason, WaitReason::DailyCap);
        // Midnight in Shanghai is outside the window: the window's opening is when it goes on.
        assert_eq!(w.until, Some(at("2026-12-01T01:00:00Z")));
        let no_window = Pacing {
            window: None,
            ..pacing()
        };
        let mut i = inputs(&no_window);
        i.cap_day = Some(pacing::cap_day(&no_window, now));
        i.cap_day_dispatched = 100;
        assert_eq!(
            waiting(&i, now).unwrap().until,
            Some(at("2026-11-30T16:00:00Z"))
        );
    }

    #[test]
    fn scheduled_paused_and_quota_each_say_so() {
        let start = at("2026-12-24T10:00:00Z");
        let p = Pacing {
            start_at: Some(start),
            window: None,
            ..pacing()
        };
        let mut i = inputs(&p);
        i.state = CampaignState::Scheduled;
        let w = waiting(&i, at("2026-12-01T00:00:00Z")).unwrap();
        assert_eq!((w.reason, w.until), (WaitReason::Scheduled, Some(start)));
        i.state = CampaignState::Paused;
        let w = waiting(&i, at("2026-12-01T00:00:00Z")).unwrap();
        assert_eq!((w.reason, w.until), (WaitReason::Paused, None));
        let p = Pacing {
            window: None,
            ..pacing()
        };
        let mut i = inputs(&p);
        let until = at("2026-11-30T16:00:00Z");
        i.app = AppHold::Quota(Some(until));
        let w = waiting(&i, at("2026-11-30T02:00:00Z")).unwrap();
        assert_eq!((w.reason, w.until), (WaitReason::Quota, Some(until)));
        i.state = CampaignState::Completed;
        assert_eq!(waiting(&i, at("2026-11-30T02:00:00Z")), None);
    }
}
