//! The demo's job mix: mostly good jobs, and some of every kind of trouble.

use indicatif::MultiProgress;

use super::bar;
use crate::domain::{AppName, Job, JobId, OpenId, Recipient, TemplateData, UnionId};
use crate::queue::{Lane, Publisher, Topology};
use crate::wechat::mock::{self, MockConfig};

/// One message to publish.
pub enum Planned {
    /// A job (published with the library publisher).
    Job(Job),
    /// Bytes that are not a valid job.
    Raw(Vec<u8>),
}

/// What the demo publishes.
pub struct Plan {
    /// In publish order.
    pub messages: Vec<Planned>,
}

impl Plan {
    /// Every published message ends in one outcome (sent, duplicate or dead).
    pub fn expected_outcomes(&self) -> u64 {
        self.messages.len() as u64
    }
}

fn every(i: u64, k: u64) -> bool {
    k != 0 && (i + 1) % k == 0
}

/// `n` messages over `people` people of the fake WeChat.
pub fn plan(n: u64, people: u64, cfg: &MockConfig) -> Plan {
    let good: Vec<u64> = (0..people)
        .filter(|i| !every(*i, cfg.no_unionid_every) && !every(*i, cfg.unsubscribed_every))
        .collect();
    let mut messages = Vec::with_capacity(n as usize);
    for k in 0..n {
        let person = good[(k as usize * 7919) % good.len()];
        let planned = match k % 100 {
            0 | 1 => Planned::Job(shipped(mp(no_unionid_person(k, people, cfg)))),
            2 | 3 => Planned::Job(shipped(mp(unfollowed_person(k, people, cfg)))),
            4 => Planned::Job(with(mp(person), "TPL_RETIRED", &[("thing1", "x")])),
            5 => Planned::Job(with(mp(person), "TPL_ORDER_SHIPPED", &[("thing1", "no time given")])),
            6 => Planned::Raw(format!("{{\"id\":\"broken-{k}\",\"to\":").into_bytes()),
            7 => {
                let mut j = shipped(mp(person));
                j.not_after = Some(chrono::Utc::now() - chrono::Duration::minutes(1));
                Planned::Job(j)
            }
            8..=11 => Planned::Job(shipped(Recipient::Unionid(
                UnionId::parse(mock::unionid(person, cfg).expect("good people have one")).expect("valid"),
            ))),
            12..=15 => Planned::Job(shipped(Recipient::OaOpenid(OpenId::parse(mock::oa_openid(person)).expect("valid")))),
            _ => Planned::Job(shipped(mp(person))),
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
    Plan { messages }
}

fn no_unionid_person(k: u64, people: u64, cfg: &MockConfig) -> u64 {
    let kth = cfg.no_unionid_every.max(1);
    ((k * 31) % (people / kth).max(1) + 1) * kth - 1
}

fn unfollowed_person(k: u64, people: u64, cfg: &MockConfig) -> u64 {
    let kth = cfg.unsubscribed_every.max(1);
    ((k * 17) % (people / kth).max(1) + 1) * kth - 1
}

fn mp(i: u64) -> Recipient {
    Recipient::MpOpenid(OpenId::parse(mock::mp_openid(i)).expect("valid"))
}

fn shipped(to: Recipient) -> Job {
    with(to, "TPL_ORDER_SHIPPED", &[("thing1", "订单已发货"), ("time2", "2026-11-25 10:00")])
}

fn with(to: Recipient, template: &str, data: &[(&str, &str)]) -> Job {
    let data = data.iter().map(|(k, v)| (k.parse().expect("valid key"), (*v).to_owned())).collect();
    Job {
        id: JobId::generate(),
        app: AppName::default_app(),
        to,
        template_id: template.parse().expect("valid template id"),
        data: TemplateData::new(data).expect("valid data"),
        url: None,
        miniprogram: None,
        not_after: None,
        campaign_id: None,
    }
}

/// Publishes the plan in batches with confirms; returns how many messages were published.
pub async fn publish(publisher: &Publisher, topology: &Topology, plan: &Plan, bars: &MultiProgress) -> anyhow::Result<u64> {
    let progress = bars.add(bar(plan.messages.len() as u64, "published"));
    let mut batch: Vec<Job> = Vec::new();
    for m in &plan.messages {
        match m {
            Planned::Job(j) => batch.push(j.clone()),
            Planned::Raw(bytes) => {
                publisher
                    .publish_raw(&topology.exchange(), Lane::Jobs.routing_key(), bytes, Default::default(), None)
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

async fn flush(publisher: &Publisher, batch: &mut Vec<Job>, progress: &indicatif::ProgressBar) -> anyhow::Result<()> {
    for result in publisher.publish_batch(batch, Lane::Jobs).await {
        result?;
    }
    progress.inc(batch.len() as u64);
    batch.clear();
    Ok(())
}
