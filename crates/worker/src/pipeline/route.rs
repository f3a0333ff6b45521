//! Choosing a claimed job's channel: the one place that decides whether a job goes by the OA's
//! template message, by the Mini Program's subscribe message, or nowhere.
//!
//! The OA's template message when the job has one and the recipient leads to a subscribed
//! follower; otherwise the subscribe message when the job has one and its claim reserved a
//! grant; otherwise the job dies: `no_channel` when it had a subscribe message, else the reason
//! the OA could not reach the person (`not_following`, `no_unionid` …). A subscribe send that a
//! lapsed claim may have made is never made again.

use chrono::{DateTime, Utc};
use wxnotify_core::domain::{Job, OpenId};
use wxnotify_services::ledger::Grant;
use wxnotify_services::ledger::outcome::{DeadReason, Failure, Outcome};
use wxnotify_services::ledger::resolve::{Lookup, Resolved, decide, needs_grant};

/// Where a claimed job goes.
#[derive(Debug)]
pub(super) enum Route {
    /// The OA's template message to this OA openid.
    Oa(OpenId),
    /// The Mini Program's subscribe message to this Mini Program openid (a grant is reserved).
    Mp(OpenId),
    /// Nowhere: the job ends with this outcome.
    Dead(Outcome),
}

/// The job's channel from the claim's look-up and grant. `uncertain_since`: an earlier send of
/// the job may have reached the person.
pub(super) fn route(
    job: &Job,
    lookup: Lookup,
    grant: Grant,
    uncertain_since: Option<DateTime<Utc>>,
) -> Route {
    let resolved = decide(&job.to, lookup);
    let Some(sub) = &job.mp_subscribe else {
        return match resolved {
            Resolved::Follower(openid) => Route::Oa(openid),
            Resolved::Unreachable(reason, why) => {
                Route::Dead(Outcome::dead(reason, Failure::local(why)))
            }
        };
    };
    let has_oa = job.oa_message().is_some();
    match (needs_grant(has_oa, &resolved), resolved, grant) {
        (false, Resolved::Follower(openid), _) => Route::Oa(openid),
        (_, _, Grant::Inherited) => Route::Dead(subscribe_outcome_unknown(
            uncertain_since.unwrap_or_else(Utc::now),
        )),
        (_, _, Grant::Reserved(mp_openid)) => Route::Mp(mp_openid),
        // No grant was reserved because an earlier (OA) send may have reached the person.
        (_, _, Grant::None) if uncertain_since.is_some() => Route::Dead(subscribe_outcome_unknown(
            uncertain_since.unwrap_or_else(Utc::now),
        )),
        (_, resolved, Grant::None) => {
            let oa = match (has_oa, resolved) {
                (false, _) => "the job has no OA template message".to_owned(),
                (true, Resolved::Unreachable(_, why)) => why,
                (true, Resolved::Follower(_)) => "the OA reaches the person".to_owned(),
            };
            Route::Dead(Outcome::dead(
                DeadReason::NoChannel,
                Failure::local(format!(
                    "{oa}, and the person holds no grant for subscribe template {}: the Mini \
                     Program must ask for one (wx.requestSubscribeMessage) before a subscribe \
                     message can be sent",
                    sub.template_id
                )),
            ))
        }
    }
}

/// The dead outcome of a subscribe send that may have reached the person: WeChat does not
/// de-duplicate subscribe messages, so it is never sent again; its grant stays used.
pub(super) fn subscribe_outcome_unknown(since: DateTime<Utc>) -> Outcome {
    Outcome::dead(
        DeadReason::OutcomeUnknown,
        Failure::local(format!(
            "a subscribe message sent since {since} may have reached the person (no answer \
             came); WeChat does not de-duplicate subscribe messages, so it is not sent again and \
             its grant stays used; check before replaying"
        )),
    )
}

/// The dead outcome of a subscribe send WeChat answered 43101: it holds no grant for the
/// person and template (the ledger writes the person's count off).
pub(super) fn no_grant_at_wechat(failure: Failure) -> Outcome {
    let message = format!(
        "{} — WeChat holds no subscribe grant for this person and template: the count is \
         written off; the Mini Program must ask again (wx.requestSubscribeMessage)",
        failure.message
    );
    Outcome::dead(
        DeadReason::NoChannel,
        Failure {
            errcode: failure.errcode,
            message,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use wxnotify_core::domain::job::MpSubscribe;
    use wxnotify_core::domain::{Recipient, TemplateData, TemplateId};

    fn job(oa: bool, mp: bool) -> Job {
        let data: TemplateData = serde_json::from_str(r#"{"thing1":"v"}"#).unwrap();
        let mut job = Job::new(
            Recipient::MpOpenid(OpenId::parse("oMP1").unwrap()),
            TemplateId::parse("tOA").unwrap(),
            data.clone(),
        );
        if !oa {
            job.template_id = None;
            job.data = None;
        }
        if mp {
            job.mp_subscribe = Some(MpSubscribe {
                template_id: TemplateId::parse("tMP").unwrap(),
                data,
                page: None,
                miniprogram_state: None,
            });
        }
        job
    }

    fn follower() -> Lookup {
        Lookup {
            mp_known: true,
            unionid: Some("u".into()),
            subscribed_openid: Some("oOA1".into()),
            any_follower: true,
        }
    }

    fn stranger() -> Lookup {
        Lookup {
            mp_known: true,
            unionid: Some("u".into()),
            subscribed_openid: None,
            any_follower: false,
        }
    }

    fn mp() -> OpenId {
        OpenId::parse("oMP1").unwrap()
    }

    fn reason(r: Route) -> DeadReason {
        match r {
            Route::Dead(Outcome::Dead { reason, .. }) => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_follower_gets_the_oa_message_even_with_a_grant() {
        let r = route(&job(true, true), follower(), Grant::Reserved(mp()), None);
        assert!(matches!(r, Route::Oa(o) if o.as_str() == "oOA1"));
    }

    #[test]
    fn a_stranger_with_a_grant_gets_the_subscribe_message() {
        let r = route(&job(true, true), stranger(), Grant::Reserved(mp()), None);
        assert!(matches!(r, Route::Mp(o) if o == mp()));
        // A job with only the subscribe message goes that way even to a follower.
        let r = route(&job(false, true), follower(), Grant::Reserved(mp()), None);
        assert!(matches!(r, Route::Mp(_)));
    }

    #[test]
    fn without_a_grant_the_job_has_no_channel_and_without_mp_subscribe_the_old_reason() {
        let r = route(&job(true, true), stranger(), Grant::None, None);
        assert_eq!(reason(r), DeadReason::NoChannel);
        let r = route(&job(false, true), follower(), Grant::None, None);
        assert_eq!(reason(r), DeadReason::NoChannel);
        let r = route(&job(true, false), stranger(), Grant::None, None);
        assert_eq!(reason(r), DeadReason::NotFollowing);
    }

    #[test]
    fn a_subscribe_send_that_may_have_happened_is_never_made_again() {
        let r = route(
            &job(true, true),
            stranger(),
            Grant::Inherited,
            Some(Utc::now()),
        );
        assert_eq!(reason(r), DeadReason::OutcomeUnknown);
        let r = route(&job(true, true), stranger(), Grant::None, Some(Utc::now()));
        assert_eq!(reason(r), DeadReason::OutcomeUnknown);
    }
}
