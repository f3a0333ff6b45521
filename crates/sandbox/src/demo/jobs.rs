//! The demo's job mix: mostly good jobs, and some of every kind of trouble. The people who left
//! the OA before the sync get jobs with the Mini Program's subscribe message as well: those who
//! granted its template get it, the others' jobs die `no_channel`.

use indicatif::MultiProgress;

use super::bar;
use crate::mock_wechat::{self, MockConfig};
use wxnotify_core::domain::{Job, MpSubscribe, OpenId, Recipient, TemplateData, UnionId};
use wxnotify_core::queue::{Lane, Publisher, Topology};

/// One message to publish.
pub enum Planned {
    /// A job (published with the library publisher).
    Job(Box<Job>),
    /// Bytes that are not a valid job.
    Raw(Vec<u8>),
}

/// What the demo publishes, and what must become of each job.
pub struct Plan {
    /// In publish order.
    pub messages: Vec<Planned>,
    /// Each job id's final state on the ledger: `sent`, or the dead reason (`a|b`: either, when
    /// it depends on which of two sends WeChat answered first).
    pub expected: std::collections::HashMap<String, &'static str>,
    /// Messages that are not jobs at all (each one dead letter, `malformed`).
    pub malformed: u64,
    /// The one-time grants of [`SUBSCRIBE_TEMPLATE`] each person gives before the jobs: as
    /// many as their subscribe messages, so each of them is sent.
    pub grants: std::collections::BTreeMap<u64, u64>,
}

/// The Mini Program subscribe template of the demo's second channel (the fake's one-time
/// template).
pub const SUBSCRIBE_TEMPLATE: &str = "MP_ORDER_SHIPPED";

/// Whether a person who does not follow the OA granted the subscribe template (every other one).
fn grant_holder(person: u64, cfg: &MockConfig) -> bool {
    (person / cfg.unsubscribed_every.max(1)).is_multiple_of(2)
}

impl Plan {
    /// Every published message ends in one outcome (sent, duplicate or dead).
    pub fn expected_outcomes(&self) -> u64 {
        self.messages.len() as u64
    }
}

/// What must become of `job`, worked out from the fake WeChat's people (not from what the
/// worker did): `sent`, or the reason it dies.
fn expected_outcome(job: &Job, cfg: &MockConfig, unfollowed: &[(u64, bool)]) -> &'static str {
    let who = match &job.to {
        Recipient::MpOpenid(o) | Recipient::OaOpenid(o) => mock_wechat::person_of(o.as_ref()),
        Recipient::Unionid(_) => None,
    };
    if let Some(i) = who {
        let no_unionid =
            matches!(job.to, Recipient::MpOpenid(_)) && mock_wechat::unionid(i, cfg).is_none();
        let follows = mock_wechat::seeded_follower(i, cfg);
        // The OA cannot reach them: the subscribe message can, with a grant.
        match (&job.mp_subscribe, no_unionid, follows) {
            (Some(_), true, _) | (Some(_), _, false) if grant_holder(i, cfg) => return "sent",
            (Some(_), true, _) | (Some(_), _, false) => return "no_channel",
            (None, true, _) => return "no_unionid",
            (None, _, false) => return "not_following",
            _ => {}
        }
        match unfollowed.iter().find(|(p, _)| *p == i) {
            Some((_, true)) => return "not_following",
            // WeChat answers 43004 to a send to someone who left without wxnotify knowing; once
            // one send (this job's twin, or the demo's campaign) has heard it, the follower is
            // marked unsubscribed and the next job to them dies not_following before a send.
            Some((_, false)) => return "recipient_rejected|not_following",
            None => {}
        }
    }
    if job.not_after.is_some_and(|t| t < chrono::Utc::now()) {
        return "expired";
    }
    let Some((template_id, data)) = job.oa_message() else {
        return "payload_rejected";
    };
    let complete = data.get("thing1").is_some() && data.get("time2").is_some();
    if template_id.as_ref() != "TPL_ORDER_SHIPPED" || !complete {
        return "payload_rejected";
    }
    "sent"
}

/// `n` messages over `people` people of the fake WeChat; `unfollowed` are the people who left
/// after the sync (with whether wxnotify was told).
pub fn plan(n: u64, people: u64, cfg: &MockConfig, unfollowed: &[(u64, bool)]) -> Plan {
    let good: Vec<u64> = (0..people)
        .filter(|i| {
            mock_wechat::unionid(*i, cfg).is_some() && mock_wechat::seeded_follower(*i, cfg)
        })
        .filter(|i| !unfollowed.iter().any(|(p, _)| p == i))
        .collect();
    let left: Vec<u64> = unfollowed.iter().map(|(p, _)| *p).collect();
    let mut messages = Vec::with_capacity(n as usize);
    for k in 0..n {
        let person = good[(k as usize * 7919) % good.len()];
        let planned = match k % 100 {
            6 => Planned::Raw(format!("{{\"id\":\"broken-{k}\",\"to\":").into_bytes()),
            k100 => Planned::Job(Box::new(troubled_or_good(
                k, k100, person, people, cfg, &left,
            ))),
        };
        messages.push(planned);
    }
    // Duplicates: 1% of the jobs are published a second time with the same id.
    let dups: Vec<Planned> = messages
        .iter()
        .step_by(100)
        .filter_map(|m| match m {
            Planned::Job(j) => Some(Planned::Job(j.clone())),
            Planned::Raw(_) => None,
        })
        .collect();
    messages.extend(dups);
    let mut expected = std::collections::HashMap::new();
    let mut malformed = 0;
    let mut grants = std::collections::BTreeMap::new();
    for m in &messages {
        match m {
            Planned::Job(j) => {
                let outcome = expected_outcome(j, cfg, unfollowed);
                expected.insert(j.id.to_string(), outcome);
                if let (Some(_), "sent", Recipient::MpOpenid(o)) = (&j.mp_subscribe, outcome, &j.to)
                    && let Some(person) = mock_wechat::person_of(o.as_ref())
                {
                    *grants.entry(person).or_default() += 1;
                }
            }
            Planned::Raw(_) => malformed += 1,
        }
    }
    Plan {
        messages,
        expected,
        malformed,
        grants,
    }
}

fn no_unionid_person(k: u64, people: u64, cfg: &MockConfig) -> u64 {
    let kth = cfg.no_unionid_every.max(1);
    ((k * 31) % (people / kth).max(1) + 1) * kth - 1
}

/// Job `k`: one of the troubled kinds for some values of `k % 100`, a good job otherwise.
fn troubled_or_good(
    k: u64,
    k100: u64,
    person: u64,
    people: u64,
    cfg: &MockConfig,
    left: &[u64],
) -> Job {
    match k100 {
        0 | 1 => shipped(mp(no_unionid_person(k, people, cfg))),
        // People who left before the sync: one in two holds a grant for the subscribe message.
        2 => with_subscribe(shipped(mp(unfollowed_person(k / 100, people, cfg)))),
        16 => shipped(mp(unfollowed_person(k, people, cfg))),
        3 if !left.is_empty() => shipped(mp(left[k as usize % left.len()])),
        4 => with(mp(person), "TPL_RETIRED", &[("thing1", "x")]),
        5 => with(
            mp(person),
            "TPL_ORDER_SHIPPED",
            &[("thing1", "no time given")],
        ),
        7 => {
            let mut j = shipped(mp(person));
            j.not_after = Some(chrono::Utc::now() - chrono::Duration::minutes(1));
            j
        }
        8..=11 => {
            let unionid = mock_wechat::unionid(person, cfg).expect("good people have one");
            shipped(Recipient::Unionid(UnionId::parse(unionid).expect("valid")))
        }
        12..=15 => shipped(Recipient::OaOpenid(
            OpenId::parse(mock_wechat::oa_openid(person)).expect("valid"),
        )),
        _ => shipped(mp(person)),
    }
}

/// Someone who had unfollowed before the sync (the sync never saw them follow).
fn unfollowed_person(k: u64, people: u64, cfg: &MockConfig) -> u64 {
    let kth = cfg.unsubscribed_every.max(1);
    ((k * 17) % (people / kth).max(1) + 1) * kth - 1
}

fn mp(i: u64) -> Recipient {
    Recipient::MpOpenid(OpenId::parse(mock_wechat::mp_openid(i)).expect("valid"))
}

fn shipped(to: Recipient) -> Job {
    with(
        to,
        "TPL_ORDER_SHIPPED",
        &[("thing1", "订单已发货"), ("time2", "2026-11-25 10:00")],
    )
}

/// `job` with the subscribe message of [`SUBSCRIBE_TEMPLATE`] beside its OA message.
pub(crate) fn with_subscribe(mut job: Job) -> Job {
    let data = [
        ("thing1", "订单已发货"),
        ("time2", "2026-11-25 10:00"),
        ("phrase3", "已发货"),
    ];
    job.mp_subscribe = Some(MpSubscribe {
        template_id: SUBSCRIBE_TEMPLATE.parse().expect("valid template id"),
        data: TemplateData::from_pairs(&data).expect("valid data"),
        page: Some("pages/order/detail?id=1".into()),
        miniprogram_state: None,
    });
    job
}

fn with(to: Recipient, template: &str, data: &[(&str, &str)]) -> Job {
    let data = TemplateData::from_pairs(data).expect("valid data");
    Job::new(to, template.parse().expect("valid template id"), data)
}

/// Publishes the plan in batches with confirms; returns how many messages were published.
pub async fn publish(
    publisher: &Publisher,
    topology: &Topology,
    plan: &Plan,
    bars: &MultiProgress,
) -> anyhow::Result<u64> {
    let progress = bars.add(bar(plan.messages.len() as u64, "published"));
    let mut batch: Vec<Job> = Vec::new();
    for m in &plan.messages {
        match m {
            Planned::Job(j) => batch.push((**j).clone()),
            Planned::Raw(bytes) => {
                publisher
                    .publish_raw(
                        &topology.exchange(),
                        Lane::Jobs.routing_key(),
                        bytes,
                        Default::default(),
                        None,
                    )
                    .await?;
                progress.inc(1);
            }
        }
        if batch.len() == 500 {
            flush(publisher, &mut batch, &progress).await?;
        }
    }
    flush(publisher, &mut batch, &progress).await?;
    progress.finish_and_clear();
    Ok(plan.messages.len() as u64)
}

async fn flush(
    publisher: &Publisher,
    batch: &mut Vec<Job>,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    for result in publisher.publish_batch(batch, Lane::Jobs).await {
        result?;
    }
    progress.inc(batch.len() as u64);
    batch.clear();
    Ok(())
}
