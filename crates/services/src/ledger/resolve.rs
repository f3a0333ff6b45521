//! Resolving a job's recipient to a subscribed OA follower's openid:
//! Mini Program openid -> unionid (`mp_users`, from logins) -> OA openid (`oa_followers`, from the
//! follower sync and subscribe events). The look-up itself runs in the ledger's claim statement
//! (`ledger.rs`), batched with other jobs'; this module turns its answer into a decision.

use crate::ledger::outcome::DeadReason;
use wxnotify_core::domain::{OpenId, Recipient};

/// Where a recipient leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Send to this OA openid.
    Follower(OpenId),
    /// Cannot be sent, for this reason.
    Unreachable(DeadReason, String),
}

/// What Postgres knows about a recipient (read in the same statement as the claim).
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Lookup {
    /// For a Mini Program openid: whether that user has logged in (always true otherwise).
    pub mp_known: bool,
    /// The unionid the recipient leads to, if any.
    pub unionid: Option<String>,
    /// The newest subscribed follower's OA openid.
    pub subscribed_openid: Option<String>,
    /// Whether any follower (subscribed or not) matches.
    pub any_follower: bool,
}

/// Whether a job with a subscribe message goes that way (and so needs a grant): when it has no OA
/// template message (`has_oa`), or the OA does not reach the person.
/// The claim statement (`claims.rs`) applies the same rule in SQL to reserve the grant with the
/// claim: the two must stay in step.
pub fn needs_grant(has_oa: bool, resolved: &Resolved) -> bool {
    !(has_oa && matches!(resolved, Resolved::Follower(_)))
}

/// Decides where `to` leads from what Postgres knows.
pub fn decide(to: &Recipient, row: Lookup) -> Resolved {
    use Resolved::*;
    if let Some(openid) = row.subscribed_openid.and_then(|o| OpenId::parse(o).ok()) {
        return Follower(openid);
    }
    match to {
        Recipient::OaOpenid(openid) if !row.any_follower => {
            // An OA openid wxnotify has not seen: send as asked; WeChat will say if it is wrong.
            Follower(openid.clone())
        }
        Recipient::OaOpenid(openid) => Unreachable(
            DeadReason::NotFollowing,
            format!("OA openid {openid} has unfollowed the Official Account"),
        ),
        Recipient::MpOpenid(openid) if !row.mp_known => Unreachable(
            DeadReason::UnknownMpUser,
            format!(
                "no Mini Program login is known for openid {openid}; the user must log in first"
            ),
        ),
        Recipient::MpOpenid(openid) if row.unionid.is_none() => Unreachable(
            DeadReason::NoUnionid,
            format!(
                "Mini Program user {openid} has no unionid: bind the Mini Program to the WeChat Open Platform account of the OA"
            ),
        ),
        _ if row.any_follower => Unreachable(
            DeadReason::NotFollowing,
            format!(
                "unionid {} belongs to an OA follower who has unfollowed",
                row.unionid.unwrap_or_default()
            ),
        ),
        _ => Unreachable(
            DeadReason::NotFollowing,
            format!(
                "no OA follower has unionid {}: the person does not follow the Official Account (or the follower sync has not run)",
                row.unionid.unwrap_or_default()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wxnotify_core::domain::UnionId;

    fn mp() -> Recipient {
        Recipient::MpOpenid(OpenId::parse("oMP1").unwrap())
    }

    #[test]
    fn the_subscribe_message_goes_only_where_the_oa_does_not() {
        let follower = Resolved::Follower(OpenId::parse("oOA1").unwrap());
        let gone = Resolved::Unreachable(DeadReason::NotFollowing, String::new());
        assert!(!needs_grant(true, &follower));
        assert!(needs_grant(true, &gone));
        assert!(needs_grant(false, &follower));
        assert!(needs_grant(false, &gone));
    }

    #[test]
    fn each_gap_in_the_mapping_has_its_reason() {
        let known = |unionid: Option<&str>, openid: Option<&str>, any| Lookup {
            mp_known: true,
            unionid: unionid.map(str::to_owned),
            subscribed_openid: openid.map(str::to_owned),
            any_follower: any,
        };
        assert_eq!(
            decide(&mp(), known(Some("u"), Some("oOA1"), true)),
            Resolved::Follower(OpenId::parse("oOA1").unwrap())
        );
        let reason = |r: Resolved| match r {
            Resolved::Unreachable(reason, _) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(decide(&mp(), Lookup::default())),
            DeadReason::UnknownMpUser
        );
        assert_eq!(
            reason(decide(&mp(), known(None, None, false))),
            DeadReason::NoUnionid
        );
        assert_eq!(
            reason(decide(&mp(), known(Some("u"), None, true))),
            DeadReason::NotFollowing
        );
        let union = Recipient::Unionid(UnionId::parse("u").unwrap());
        assert_eq!(
            reason(decide(&union, known(Some("u"), None, false))),
            DeadReason::NotFollowing
        );
        let oa = Recipient::OaOpenid(OpenId::parse("oOA9").unwrap());
        assert_eq!(
            decide(&oa, known(None, None, false)),
            Resolved::Follower(OpenId::parse("oOA9").unwrap())
        );
        assert_eq!(
            reason(decide(&oa, known(None, None, true))),
            DeadReason::NotFollowing
        );
    }
}
