//! The demo's small campaign: a few hundred subscribed followers get one announcement on the
//! bulk lane while the transactional jobs run, paced by the campaign dispatcher.

use std::sync::Arc;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::scratch::Scratch;
use wxnotify_core::domain::{AppName, OpenId, Recipient, TemplateData, TemplateId};
use wxnotify_services::campaigns::audience::{ListEntry, list_items};
use wxnotify_services::campaigns::pacing::QuotaSettings;
use wxnotify_services::campaigns::store::{self, AudienceSource, NewCampaign};
use wxnotify_services::campaigns::{
    Action, CampaignState, Dispatcher, DispatcherOptions, Pacing, Status,
};

/// A running demo campaign.
pub struct DemoCampaign {
    /// Its id.
    pub id: Uuid,
    /// Reachable recipients (each ends sent or dead: the demo expects that many outcomes more).
    pub reachable: u64,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Creates a campaign for `n` subscribed followers at `rate`/s, starts it and its dispatcher.
pub async fn start(scratch: &Scratch, n: u64, rate: u32) -> anyhow::Result<DemoCampaign> {
    let openids: Vec<String> = sqlx::query_scalar(
        "SELECT oa_openid FROM oa_followers WHERE subscribed ORDER BY oa_openid LIMIT $1",
    )
    .bind(n as i64)
    .fetch_all(&scratch.pool)
    .await?;
    let list = openids
        .into_iter()
        .map(|o| {
            Ok(ListEntry {
                to: Recipient::OaOpenid(OpenId::parse(o)?),
                data: None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let new = NewCampaign {
        app: AppName::default_app(),
        template_id: TemplateId::parse("TPL_ORDER_SHIPPED")?,
        data: TemplateData::from_pairs(&[("thing1", "Winter sale starts"), ("time2", "12-12")])
            .map_err(anyhow::Error::msg)?,
        url: None,
        miniprogram: None,
        not_after: None,
        pacing: Pacing {
            rate_per_second: rate,
            window: None,
            time_zone: chrono_tz::UTC,
            start_at: None,
            daily_cap: None,
        },
        created_by: "demo".into(),
        name: None,
        truncate: false,
        mp_subscribe: None,
    };
    let report = store::create(
        &scratch.pool,
        &new,
        u32::MAX,
        AudienceSource::List(Box::new(list_items(list))),
    )
    .await?;
    store::apply(&scratch.pool, report.id, Action::Start, "demo").await?;
    let connection = Arc::new(
        wxnotify_core::queue::connect(&scratch.settings.amqp_url, "wxnotify-demo-dispatcher")
            .await?,
    );
    let dispatcher = Dispatcher::new(
        scratch.pool.clone(),
        connection,
        scratch.topology.clone(),
        QuotaSettings::default(),
        DispatcherOptions::default(),
    )
    .await?;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            if let Err(e) = dispatcher.run(shutdown).await {
                tracing::warn!(error = %e, "demo dispatcher stopped");
            }
        }
    });
    Ok(DemoCampaign {
        id: report.id,
        reachable: report.reachable,
        shutdown,
        task,
    })
}

impl DemoCampaign {
    /// Waits (up to 10 s) for the dispatcher to mark the campaign completed, stops the
    /// dispatcher, and returns the campaign's status.
    pub async fn finish(self, pool: &PgPool) -> anyhow::Result<Status> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while store::get(pool, self.id).await?.state != CampaignState::Completed
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.shutdown.cancel();
        let _ = self.task.await;
        Ok(wxnotify_services::campaigns::status(pool, self.id).await?)
    }
}
