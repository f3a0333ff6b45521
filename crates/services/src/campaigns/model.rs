//! A campaign's states, the changes allowed between them, and what a campaign is made of.

use chrono::{DateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a campaign is. Stored as text (`as_str`), CHECKed in Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    /// Created with its snapshot; nothing dispatched until `start`.
    Draft,
    /// Started with a start time in the future.
    Scheduled,
    /// Being dispatched (within its window, cap and quota).
    Running,
    /// Stopped by an operator; `resume` continues where it stopped.
    Paused,
    /// Every reachable recipient reached a final state.
    Completed,
    /// Stopped for good; jobs still on the lane are recorded `cancelled`, not sent.
    Cancelled,
}

impl CampaignState {
    /// Every state.
    pub const ALL: [CampaignState; 6] = [
        CampaignState::Draft,
        CampaignState::Scheduled,
        CampaignState::Running,
        CampaignState::Paused,
        CampaignState::Completed,
        CampaignState::Cancelled,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Draft => "draft",
            CampaignState::Scheduled => "scheduled",
            CampaignState::Running => "running",
            CampaignState::Paused => "paused",
            CampaignState::Completed => "completed",
            CampaignState::Cancelled => "cancelled",
        }
    }

    /// The state of a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether nothing more happens to the campaign.
    pub fn is_final(self) -> bool {
        matches!(self, CampaignState::Completed | CampaignState::Cancelled)
    }
}

impl std::fmt::Display for CampaignState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operator's (or the dispatcher's) request to change a campaign's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// draft → running (or scheduled when its start time is ahead).
    Start,
    /// scheduled / running → paused.
    Pause,
    /// paused → running (or scheduled).
    Resume,
    /// anything not final → cancelled.
    Cancel,
}

impl Action {
    /// The states the action applies to.
    pub fn from_states(self) -> &'static [CampaignState] {
        use CampaignState::*;
        match self {
            Action::Start => &[Draft],
            Action::Pause => &[Scheduled, Running],
            Action::Resume => &[Paused],
            Action::Cancel => &[Draft, Scheduled, Running, Paused],
        }
    }

    /// The state the action leads to, given whether the start time is still ahead.
    pub fn to_state(self, start_ahead: bool) -> CampaignState {
        match self {
            Action::Start | Action::Resume if start_ahead => CampaignState::Scheduled,
            Action::Start | Action::Resume => CampaignState::Running,
            Action::Pause => CampaignState::Paused,
            Action::Cancel => CampaignState::Cancelled,
        }
    }

    /// The verb, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Cancel => "cancel",
        }
    }
}

/// Why a recipient of the snapshot cannot be sent to. Stored as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unreachable {
    /// A Mini Program openid that never logged in.
    UnknownMpUser,
    /// A Mini Program user without unionid (the Mini Program is not bound to the Open Platform).
    NoUnionid,
    /// No subscribed OA follower for the person.
    NotFollowing,
}

impl Unreachable {
    /// Every reason.
    pub const ALL: [Unreachable; 3] = [
        Unreachable::UnknownMpUser,
        Unreachable::NoUnionid,
        Unreachable::NotFollowing,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Unreachable::UnknownMpUser => "unknown_mp_user",
            Unreachable::NoUnionid => "no_unionid",
            Unreachable::NotFollowing => "not_following",
        }
    }
}

/// A campaign's audience by the channel that reaches it: `followers` (the OA's template
/// message), `grant_holders` (Mini Program users who do not follow but hold a grant for the
/// campaign's subscribe template) and `unreachable` (neither).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channels {
    /// Reached by the OA's template message.
    pub followers: u64,
    /// Reached by the Mini Program's subscribe message.
    pub grant_holders: u64,
    /// Reached by neither.
    pub unreachable: u64,
}

impl Channels {
    /// The channels of an audience of `audience` with `reachable` reachable, `grant_holders` of
    /// them by a grant.
    pub fn of(audience: i64, reachable: i64, grant_holders: i64) -> Self {
        let n = |v: i64| v.max(0) as u64;
        Channels {
            followers: n(reachable - grant_holders),
            grant_holders: n(grant_holders),
            unreachable: n(audience - reachable),
        }
    }
}

/// A daily send window in a time zone, e.g. 09:00–21:00 Asia/Shanghai. A window whose end is
/// before its start spans midnight (22:00–06:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    /// Opens at (local time).
    pub start: NaiveTime,
    /// Closes at (local time, exclusive).
    pub end: NaiveTime,
}

impl SendWindow {
    /// Parses `HH:MM-HH:MM`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("window {s:?} must look like 09:00-21:00");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let t = |x: &str| NaiveTime::parse_from_str(x.trim(), "%H:%M").map_err(|_| bad());
        let w = SendWindow {
            start: t(a)?,
            end: t(b)?,
        };
        if w.start == w.end {
            return Err(format!("window {s:?} is empty: start and end are equal"));
        }
        Ok(w)
    }

    /// Whether local time `t` is inside the window.
    pub fn contains(&self, t: NaiveTime) -> bool {
        if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

impl std::fmt::Display for SendWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }
}

/// How a campaign is paced.
#[derive(Debug, Clone, PartialEq)]
pub struct Pacing {
    /// Sends per second at most (never above the app's rate).
    pub rate_per_second: u32,
    /// Optional daily window.
    pub window: Option<SendWindow>,
    /// The window's and the daily cap's time zone.
    pub time_zone: chrono_tz::Tz,
    /// Not before this instant.
    pub start_at: Option<DateTime<Utc>>,
    /// At most this many dispatched per day (in `time_zone`).
    pub daily_cap: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_open_and_close_in_local_time_also_across_midnight() {
        let day = SendWindow::parse("09:00-21:00").unwrap();
        let t = |s| NaiveTime::parse_from_str(s, "%H:%M").unwrap();
        assert!(day.contains(t("09:00")) && day.contains(t("20:59")));
        assert!(!day.contains(t("21:00")) && !day.contains(t("08:59")));
        let night = SendWindow::parse("22:00-06:00").unwrap();
        assert!(night.contains(t("23:00")) && night.contains(t("05:00")));
        assert!(!night.contains(t("12:00")));
        assert!(SendWindow::parse("9-21").is_err());
        assert!(SendWindow::parse("10:00-10:00").is_err());
    }

    #[test]
    fn actions_only_apply_to_their_states() {
        assert_eq!(Action::Start.to_state(true), CampaignState::Scheduled);
        assert_eq!(Action::Resume.to_state(false), CampaignState::Running);
        assert!(
            !Action::Resume
                .from_states()
                .contains(&CampaignState::Running)
        );
        assert!(
            CampaignState::ALL
                .iter()
                .filter(|s| s.is_final())
                .all(|s| !Action::Cancel.from_states().contains(s))
        );
    }
}
