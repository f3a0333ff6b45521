//! The seeded people's identities. Person `i` is computed, never stored: their OA openid, MP
//! openid and unionid are fixed functions of `i`, and an OA openid parses back to `i`.

use super::config::MockConfig;

const OA_PREFIX: &str = "oMockOA";
const MP_PREFIX: &str = "oMockMP";
const UNION_PREFIX: &str = "oMockUN";

/// The OA openid of seeded person `i`: 28 characters, e.g. `oMockOA000000000000000000042`.
pub fn oa_openid(i: u64) -> String {
    format!("{OA_PREFIX}{i:021}")
}

/// The Mini Program openid of seeded person `i`: 28 characters, e.g.
/// `oMockMP000000000000000000042`.
pub fn mp_openid(i: u64) -> String {
    format!("{MP_PREFIX}{i:021}")
}

/// The unionid of seeded person `i`, or `None` for the people `cfg.no_unionid_every` leaves
/// without one.
pub fn unionid(i: u64, cfg: &MockConfig) -> Option<String> {
    (!every_kth(i, cfg.no_unionid_every)).then(|| format!("{UNION_PREFIX}{i:021}"))
}

/// Whether seeded person `i` follows the OA (before any [`MockWechat::unsubscribe`](super::MockWechat::unsubscribe)).
pub fn seeded_follower(i: u64, cfg: &MockConfig) -> bool {
    !every_kth(i, cfg.unsubscribed_every)
}

/// Whether person `i` is one of "every k-th" (persons `k-1`, `2k-1`, …); never when `k == 0`.
pub(super) fn every_kth(i: u64, k: u64) -> bool {
    k != 0 && (i + 1).is_multiple_of(k)
}

/// How many of the persons `0..n` are "every k-th".
pub(super) fn count_kth(n: u64, k: u64) -> u64 {
    n.checked_div(k).unwrap_or(0)
}

/// The person whose OA openid is `openid`, if it is one of the `followers` seeded ones.
pub(super) fn oa_person(openid: &str, followers: u64) -> Option<u64> {
    parse_index(openid, OA_PREFIX).filter(|i| *i < followers)
}

/// The seeded person an OA or Mini Program openid belongs to.
pub fn person_of(openid: &str) -> Option<u64> {
    parse_index(openid, OA_PREFIX).or_else(|| parse_index(openid, MP_PREFIX))
}

fn parse_index(s: &str, prefix: &str) -> Option<u64> {
    let digits = s.strip_prefix(prefix)?;
    if digits.len() != 21 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The seeded `subscribe_time` of person `i`: a fixed, plausible unix time in 2017–2020.
pub(super) fn seeded_subscribe_time(i: u64) -> i64 {
    1_500_000_000 + (i.wrapping_mul(7919) % 100_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_and_have_the_real_length() {
        let cfg = MockConfig::default();
        assert_eq!(oa_openid(42).len(), 28);
        assert_eq!(mp_openid(42).len(), 28);
        assert_eq!(unionid(42, &cfg).unwrap().len(), 28);
        assert_eq!(oa_person(&oa_openid(42), 1000), Some(42));
        assert_eq!(oa_person(&oa_openid(1000), 1000), None);
        assert_eq!(oa_person(&mp_openid(42), 1000), None);
        assert_eq!(oa_person("oMockOA12", 1000), None);
    }

    #[test]
    fn every_kth_person_is_the_kth_in_counting_order() {
        assert!(every_kth(9, 10) && every_kth(19, 10) && !every_kth(0, 10));
        assert!(!every_kth(9, 0));
        assert_eq!(count_kth(25, 10), 2);
        assert_eq!(unionid(9, &MockConfig::default()), None);
    }
}
