//! The console login's guard against token guessing: at most [`FAILURES_PER_MINUTE`] failed
//! logins per client address (an IPv6 client by its /64) in a fixed one-minute window. Past
//! that, every login from the address — right token or not, so a guess cannot be confirmed — is
//! answered 429 with `Retry-After` until the window ends. A successful login does not count.
//!
//! The client is the TCP peer (`serve` records it); requests whose address is unknown share one
//! window. The map forgets addresses whose window ended once it holds more than 10,000.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::edge::login_limits::client_key;

/// Failed console logins allowed per client address per minute.
pub const FAILURES_PER_MINUTE: u32 = 5;

const WINDOW: Duration = Duration::from_secs(60);

/// Failed-login counts per client address.
#[derive(Debug)]
pub struct LoginGuard {
    max_failures: u32,
    window: Duration,
    failures: DashMap<IpAddr, (Instant, u32)>,
}

impl Default for LoginGuard {
    fn default() -> Self {
        Self::new(FAILURES_PER_MINUTE, WINDOW)
    }
}

impl LoginGuard {
    /// At most `max_failures` failures per `window` per client.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            failures: DashMap::new(),
        }
    }

    fn key(client: Option<IpAddr>) -> IpAddr {
        client
            .map(client_key)
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    /// `Err(retry after)` when `client` used up its failures in the current window.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), Duration> {
        let key = Self::key(client);
        let now = Instant::now();
        match self.failures.get(&key) {
            Some(e) if now.duration_since(e.0) < self.window && e.1 >= self.max_failures => {
                Err(self.window - now.duration_since(e.0))
            }
            _ => Ok(()),
        }
    }

    /// Counts one failed login of `client`.
    pub fn failed(&self, client: Option<IpAddr>) {
        let now = Instant::now();
        if self.failures.len() > 10_000 {
            self.failures
                .retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let mut e = self.failures.entry(Self::key(client)).or_insert((now, 0));
        if now.duration_since(e.0) >= self.window {
            *e = (now, 0);
        }
        e.1 += 1;
    }

    /// How many addresses are remembered.
    pub fn clients(&self) -> usize {
        self.failures.len()
    }
}

/// Whole seconds for `Retry-After` (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_one_address_for_the_rest_of_the_minute_only() {
        let g = LoginGuard::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..FAILURES_PER_MINUTE {
            assert!(g.check(Some(a)).is_ok());
            g.failed(Some(a));
        }
        let wait = g.check(Some(a)).unwrap_err();
        assert!((59..=60).contains(&retry_after_secs(wait)), "{wait:?}");
        assert!(g.check(Some(b)).is_ok(), "another address is not locked");
    }

    #[test]
    fn the_window_ends() {
        let g = LoginGuard::new(2, Duration::from_millis(50));
        g.failed(None);
        g.failed(None);
        assert!(g.check(None).is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(g.check(None).is_ok());
        g.failed(None);
        assert!(g.check(None).is_ok(), "a new window starts at zero");
    }
}
