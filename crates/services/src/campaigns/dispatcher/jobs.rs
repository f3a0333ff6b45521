//! The jobs of a campaign's recipients: a stable id per recipient, and the job built from the
//! campaign's shared fields with the recipient's own over them.

use chrono::Utc;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::campaigns::store::Campaign;
use wxnotify_core::domain::{AppName, Job, JobId, OpenId, Recipient, TemplateData, TemplateId};

/// The job id of a campaign's recipient: UUID v5 of the recipient's OA openid in the
/// campaign's namespace. The same on every dispatch of the same recipient.
pub fn job_id(campaign: Uuid, oa_openid: &str) -> JobId {
    JobId::parse(Uuid::new_v5(&campaign, oa_openid.as_bytes()).to_string())
        .expect("a UUID is a valid job id")
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
        })
    }

    /// The job for one recipient: the shared data with the recipient's own fields over it.
    pub(super) fn job(
        &self,
        campaign: Uuid,
        oa_openid: &str,
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
        let mut job = Job::new(
            Recipient::OaOpenid(OpenId::parse(oa_openid.to_owned())?),
            self.template_id.clone(),
            data,
        );
        job.id = job_id(campaign, oa_openid);
        job.app = self.app.clone();
        job.url = self.url.clone();
        job.miniprogram = self.miniprogram.clone();
        job.not_after = self.not_after;
        job.truncate = self.truncate;
        job.campaign_id = Some(campaign);
        Ok(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipients_job_id_is_the_same_on_every_dispatch() {
        let c = Uuid::new_v4();
        assert_eq!(job_id(c, "oOA1"), job_id(c, "oOA1"));
        assert_ne!(job_id(c, "oOA1"), job_id(c, "oOA2"));
        assert_ne!(job_id(c, "oOA1"), job_id(Uuid::new_v4(), "oOA1"));
    }
}
