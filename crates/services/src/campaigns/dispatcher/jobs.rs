//! The jobs of a campaign's recipients: a stable id per recipient, and the job built from the
//! campaign's shared fields with the recipient's own over them. A follower's job goes to its OA
//! openid, a grant holder's to its Mini Program openid; both carry the campaign's subscribe
//! message, so the worker chooses the channel per person as for any job.

use chrono::Utc;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::campaigns::store::Campaign;
use wxnotify_core::domain::{
    AppName, Job, JobId, MpSubscribe, OpenId, Recipient, TemplateData, TemplateId,
};

/// The job id of a campaign's recipient: UUID v5 of the recipient's OA openid (a follower) or
/// `mp_openid:` and its Mini Program openid (a grant holder) in the campaign's namespace. The
/// same on every dispatch of the same recipient.
pub fn job_id(campaign: Uuid, to: &Address) -> JobId {
    let key = match to {
        Address::Follower(oa_openid) => oa_openid.clone(),
        Address::GrantHolder(mp_openid) => format!("mp_openid:{mp_openid}"),
    };
    JobId::parse(Uuid::new_v5(&campaign, key.as_bytes()).to_string())
        .expect("a UUID is a valid job id")
}

/// Where a reachable recipient of the snapshot is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A subscribed OA follower, by OA openid.
    Follower(String),
    /// A Mini Program user holding a grant, by Mini Program openid.
    GrantHolder(String),
}

impl Address {
    /// The address of a snapshot row (`oa_openid` or `mp_openid`, one of them set).
    pub fn of(oa_openid: Option<String>, mp_openid: Option<String>) -> anyhow::Result<Self> {
        match (oa_openid, mp_openid) {
            (Some(oa), None) => Ok(Address::Follower(oa)),
            (None, Some(mp)) => Ok(Address::GrantHolder(mp)),
            _ => anyhow::bail!("a reachable recipient has exactly one of oa_openid and mp_openid"),
        }
    }

    fn recipient(&self) -> anyhow::Result<Recipient> {
        Ok(match self {
            Address::Follower(oa) => Recipient::OaOpenid(OpenId::parse(oa.clone())?),
            Address::GrantHolder(mp) => Recipient::MpOpenid(OpenId::parse(mp.clone())?),
        })
    }
}

/// The parts of a campaign's jobs that every recipient shares.
pub(super) struct JobTemplate {
    app: AppName,
    template_id: TemplateId,
    data: Map<String, Value>,
    url: Option<url::Url>,
    miniprogram: Option<wxnotify_core::domain::MiniProgramLink>,
    not_after: Option<chrono::DateTime<Utc>>,
    truncate: bool,
    mp_subscribe: Option<MpSubscribe>,
}

impl JobTemplate {
    /// The shared parts of campaign `c`'s jobs.
    pub(super) fn of(c: &Campaign) -> anyhow::Result<Self> {
        Ok(JobTemplate {
            app: AppName::parse(c.app.clone())?,
            template_id: TemplateId::parse(c.template_id.clone())?,
            data: match &c.data {
                Value::Object(m) => m.clone(),
                _ => Map::new(),
            },
            url: c.url.as_deref().map(url::Url::parse).transpose()?,
            miniprogram: c
                .miniprogram
                .clone()
                .map(serde_json::from_value)
                .transpose()?,
            not_after: c.not_after,
            truncate: c.truncate,
            mp_subscribe: c
                .mp_subscribe
                .clone()
                .map(serde_json::from_value)
                .transpose()?,
        })
    }

    /// The job for one recipient: the shared data with the recipient's own fields over it (the
    /// subscribe message's data is the campaign's, shared by all).
    pub(super) fn job(
        &self,
        campaign: Uuid,
        to: &Address,
        own: Option<&Value>,
    ) -> anyhow::Result<Job> {
        let data = match own {
            Some(Value::Object(own)) => {
                let mut merged = self.data.clone();
                merged.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
                serde_json::from_value::<TemplateData>(Value::Object(merged))?
            }
            _ => serde_json::from_value::<TemplateData>(Value::Object(self.data.clone()))?,
        };
        let mut job = Job::new(to.recipient()?, self.template_id.clone(), data);
        job.id = job_id(campaign, to);
        job.app = self.app.clone();
        job.url = self.url.clone();
        job.miniprogram = self.miniprogram.clone();
        job.not_after = self.not_after;
        job.truncate = self.truncate;
        job.campaign_id = Some(campaign);
        job.mp_subscribe = self.mp_subscribe.clone();
        Ok(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipients_job_id_is_the_same_on_every_dispatch() {
        let c = Uuid::new_v4();
        let oa = |s: &str| Address::Follower(s.into());
        assert_eq!(job_id(c, &oa("oOA1")), job_id(c, &oa("oOA1")));
        assert_ne!(job_id(c, &oa("oOA1")), job_id(c, &oa("oOA2")));
        assert_ne!(job_id(c, &oa("oOA1")), job_id(Uuid::new_v4(), &oa("oOA1")));
        // The same text as an OA and as a Mini Program openid names two recipients.
        let mp = Address::GrantHolder("oOA1".into());
        assert_eq!(job_id(c, &mp), job_id(c, &mp));
        assert_ne!(job_id(c, &mp), job_id(c, &oa("oOA1")));
    }
}
