//! Limits on `POST /v1/miniprogram/login`, checked before WeChat is called: each exchange spends
//! `jscode2session` quota, and a flood of made-up codes would otherwise turn real users' logins
//! into 45011. Two token buckets (governor, GCRA):
//!
//! - **per client**: keyed by the client's address (an IPv6 client by its /64, which one host
//!   usually owns whole), or by the address a trusted reverse proxy names in a header
//!   (`--client-ip-header`);
//! - **global**: across all clients of this process, set below WeChat's quota.
//!
//! A refused login gets 429 with `Retry-After` (whole seconds). The per-client map keeps only
//! clients seen within the last minute or so ([`LoginLimiter::forget_idle`], run periodically by
//! `serve`), so it stays bounded by the recent request rate.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How many logins are allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLimits {
    /// Logins per minute from one client.
    pub per_client_per_minute: NonZeroU32,
    /// Logins per minute from all clients together.
    pub global_per_minute: NonZeroU32,
    /// The header a trusted reverse proxy puts the client's address in (its last value is
    /// used); `None` = the TCP peer is the client.
    pub client_ip_header: Option<axum::http::HeaderName>,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            per_client_per_minute: NonZeroU32::new(30).expect("non-zero"),
            global_per_minute: NonZeroU32::new(3000).expect("non-zero"),
            client_ip_header: None,
        }
    }
}

/// Which limit refused a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// This client's.
    Client(Duration),
    /// Everyone's.
    Global(Duration),
}

impl Refused {
    /// Seconds to put in `Retry-After` (at least 1).
    pub fn retry_after_secs(self) -> u32 {
        let (Refused::Client(d) | Refused::Global(d)) = self;
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
    }
}

/// The two buckets.
pub struct LoginLimiter {
    limits: LoginLimits,
    per_client: DefaultKeyedRateLimiter<IpAddr>,
    global: DefaultDirectRateLimiter,
    clock: DefaultClock,
}

impl std::fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLimiter")
            .field("limits", &self.limits)
            .field("clients", &self.per_client.len())
            .finish()
    }
}

impl LoginLimiter {
    /// Buckets for `limits`; a bucket holds a minute's worth at most (a burst of a tenth of it,
    /// at least 1).
    pub fn new(limits: LoginLimits) -> Self {
        let quota = |per_minute: NonZeroU32| {
            let burst = NonZeroU32::new((per_minute.get() / 10).max(1)).expect("non-zero");
            Quota::per_minute(per_minute).allow_burst(burst)
        };
        Self {
            per_client: RateLimiter::keyed(quota(limits.per_client_per_minute)),
            global: RateLimiter::direct(quota(limits.global_per_minute)),
            clock: DefaultClock::default(),
            limits,
        }
    }

    /// The limits.
    pub fn limits(&self) -> &LoginLimits {
        &self.limits
    }

    /// Takes one login from `client`'s bucket, then from the global one.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), Refused> {
        if let Some(ip) = client {
            self.per_client
                .check_key(&client_key(ip))
                .map_err(|n| Refused::Client(n.wait_time_from(self.clock.now())))?;
        }
        self.global
            .check()
            .map_err(|n| Refused::Global(n.wait_time_from(self.clock.now())))
    }

    /// Forgets clients whose bucket is full again (run every few seconds to bound the map).
    pub fn forget_idle(&self) {
        self.per_client.retain_recent();
        self.per_client.shrink_to_fit();
    }

    /// How many clients are remembered.
    pub fn clients(&self) -> usize {
        self.per_client.len()
    }
}

/// The key of a client address: IPv4 as is; IPv6 by its /64 (an IPv4-mapped address as IPv4).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The TCP peer of a request, when the server recorded it (`serve` does; a bare router in a
/// test may not).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// The client's address: the last value of `header` when one is configured and parses, else
/// the TCP peer's.
pub fn client_ip(
    header: Option<&axum::http::HeaderName>,
    headers: &axum::http::HeaderMap,
    peer: Peer,
) -> Option<IpAddr> {
    let from_header = header.and_then(|name| {
        headers
            .get_all(name)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    });
    from_header.or(peer.0.map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_client: u32, global: u32) -> LoginLimiter {
        LoginLimiter::new(LoginLimits {
            per_client_per_minute: NonZeroU32::new(per_client).unwrap(),
            global_per_minute: NonZeroU32::new(global).unwrap(),
            client_ip_header: None,
        })
    }

    #[test]
    fn one_client_is_limited_before_the_others_and_gets_a_retry_after() {
        let l = limiter(20, 10_000);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let allowed = (0..50).filter(|_| l.check(Some(a)).is_ok()).count();
        assert_eq!(allowed, 2, "the burst is a tenth of a minute's worth");
        let refused = l.check(Some(a)).unwrap_err();
        assert!(matches!(refused, Refused::Client(_)));
        assert!((1..=3).contains(&refused.retry_after_secs()));
        assert!(l.check(Some(b)).is_ok());
    }

    #[test]
    fn the_global_limit_holds_across_clients() {
        let l = limiter(600, 100);
        let allowed = (0..100u8)
            .filter(|i| l.check(Some(IpAddr::from([10, 0, 0, *i]))).is_ok())
            .count();
        assert_eq!(allowed, 10);
        assert!(matches!(l.check(None), Err(Refused::Global(_))));
    }

    #[test]
    fn an_ipv6_host_is_one_client_per_64() {
        let l = limiter(10, 10_000);
        let first: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let second: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(l.check(Some(first)).is_ok());
        assert!(l.check(Some(second)).is_err());
    }

    #[test]
    fn a_trusted_header_names_the_client() {
        let name = axum::http::HeaderName::from_static("x-forwarded-for");
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(&name, "198.51.100.7, 203.0.113.9".parse().unwrap());
        let peer = Peer(Some("127.0.0.1:1000".parse().unwrap()));
        assert_eq!(
            client_ip(Some(&name), &headers, peer),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            client_ip(None, &headers, peer),
            Some("127.0.0.1".parse().unwrap())
        );
    }
}
