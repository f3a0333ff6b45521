//! The mixed-channel workload of `--mix`: one job per person, every job carrying both the OA
//! template message and the Mini Program's subscribe message, and the people split so that
//! half of the jobs go by the OA, a third by subscribe message and the rest nowhere:
//!
//! - persons `6k`, `6k+1`, `6k+2` follow the OA: the OA template message;
//! - persons `6k+3`, `6k+4` do not follow and hold exactly one one-time grant of the subscribe
//!   template, both in the fake WeChat (its popup) and in wxnotify's grant ledger (`mp_grants`):
//!   the subscribe message;
//! - persons `6k+5` neither follow nor hold a grant: `no_channel`.
//!
//! The checks of the crash scenario under the mix ([`grant_checks`]) compare the ledger's grants
//! with the subscribe messages the fake WeChat accepted per person.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use sqlx::PgPool;

use crate::demo::jobs::{SUBSCRIBE_TEMPLATE, with_subscribe};
use crate::demo::populate;
use crate::mock_wechat::{self, MockWechat};
use crate::scratch::Scratch;
use wxnotify_core::domain::Job;
use wxnotify_core::queue::Lane;

use super::bench_job;

/// How person `i` can be reached in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Follows the OA.
    Oa,
    /// Does not follow; holds one grant.
    Subscribe,
    /// Neither.
    Neither,
}

/// How person `i` can be reached.
pub(crate) fn reach(i: u64) -> Reach {
    match i % 6 {
        0..=2 => Reach::Oa,
        3 | 4 => Reach::Subscribe,
        _ => Reach::Neither,
    }
}

/// What the mix of `n` people must give.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct MixCounts {
    /// Jobs to followers: OA template messages.
    pub oa: u64,
    /// Jobs to grant holders: subscribe messages.
    pub subscribe: u64,
    /// Jobs to people with neither: `no_channel`.
    pub no_channel: u64,
}

impl MixCounts {
    /// The counts for persons `0..n`.
    pub(crate) fn of(n: u64) -> MixCounts {
        let mut c = MixCounts::default();
        for i in 0..n {
            match reach(i) {
                Reach::Oa => c.oa += 1,
                Reach::Subscribe => c.subscribe += 1,
                Reach::Neither => c.no_channel += 1,
            }
        }
        c
    }

    /// Messages the fake WeChat must accept.
    pub(crate) fn sends(&self) -> u64 {
        self.oa + self.subscribe
    }
}

/// The job of person `i` in the mix: the bench's OA message with the demo's subscribe message.
pub(crate) fn job(i: u64) -> Job {
    with_subscribe(bench_job(i))
}

/// Makes persons `0..n` (already seeded as followers) what [`reach`] says: the non-followers
/// leave the OA in wxnotify's mapping, and the grant holders accept the subscribe template once
/// in the fake WeChat's popup and in `mp_grants`. Returns the counts.
pub(crate) async fn prepare(
    scratch: &Scratch,
    mock: &MockWechat,
    n: u64,
) -> anyhow::Result<MixCounts> {
    let away: Vec<String> = (0..n)
        .filter(|i| reach(*i) != Reach::Oa)
        .map(mock_wechat::oa_openid)
        .collect();
    sqlx::query("UPDATE oa_followers SET subscribed = false WHERE oa_openid = ANY($1)")
        .bind(&away)
        .execute(&scratch.pool)
        .await?;
    let holders: BTreeMap<u64, u64> = (0..n)
        .filter(|i| reach(*i) == Reach::Subscribe)
        .map(|i| (i, 1))
        .collect();
    populate::grants(&scratch.settings, mock, &scratch.pool, &holders).await?;
    sqlx::query("ANALYZE oa_followers, mp_grants")
        .execute(&scratch.pool)
        .await?;
    Ok(MixCounts::of(n))
}

/// Publishes one [`job`] to each of persons `0..n`, in batches of 1,000 with confirms.
pub(crate) async fn publish(scratch: &Scratch, n: u64) -> anyhow::Result<()> {
    let mut batch = Vec::with_capacity(1000);
    for i in 0..n {
        batch.push(job(i));
        if batch.len() == 1000 || i + 1 == n {
            for r in scratch.publisher.publish_batch(&batch, Lane::Jobs).await {
                r?;
            }
            batch.clear();
        }
    }
    Ok(())
}

/// Jobs in a final state (sent or dead) and the time the last one ended, in milliseconds since
/// the Unix epoch.
pub(crate) async fn finished(pool: &PgPool) -> anyhow::Result<(i64, u64)> {
    let (n, last): (i64, Option<f64>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM deliveries WHERE state IN ('sent', 'dead')),
                (extract(epoch FROM greatest((SELECT max(sent_at) FROM deliveries),
                                             (SELECT max(created_at) FROM dead_letters))) * 1000)::float8",
    )
    .fetch_one(pool)
    .await?;
    Ok((n, last.unwrap_or(0.0) as u64))
}

/// What the grant ledger and the fake WeChat say about the subscribe side of a mixed run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GrantChecks {
    /// Grants given (one per grant holder).
    pub granted: i64,
    /// Grants the ledger counts used.
    pub used: i64,
    /// Ledger rows with more used than granted (a grant spent twice).
    pub overspent: i64,
    /// Subscribe messages the fake WeChat accepted.
    pub subscribe_messages: u64,
    /// People the fake WeChat sent more than one subscribe message.
    pub people_messaged_twice: u64,
    /// Grants used without a subscribe message at the fake WeChat (a send that never arrived,
    /// or a claim of a killed worker).
    pub lost_grants: u64,
    /// Of those, the ones whose job did not end `outcome_unknown` (a broken promise).
    pub lost_not_outcome_unknown: u64,
    /// Jobs that ended `outcome_unknown`, by the channel the ledger recorded.
    pub outcome_unknown_by_channel: HashMap<String, i64>,
}

/// Compares `mp_grants` with the fake WeChat's subscribe messages per person (one job per
/// person in the mix, so a person's lost grant is their job's).
pub(crate) async fn grant_checks(pool: &PgPool, mock: &MockWechat) -> anyhow::Result<GrantChecks> {
    let counts: HashMap<String, u64> = reqwest::get(mock.base_url().join("mock/mp/counts")?)
        .await?
        .error_for_status()?
        .json()
        .await
        .context("the fake WeChat's subscribe messages per person")?;
    let per_person: HashMap<u64, u64> = counts
        .into_iter()
        .filter_map(|(p, n)| Some((p.parse().ok()?, n)))
        .collect();
    let (granted, used, overspent): (i64, i64, i64) = sqlx::query_as(
        "SELECT COALESCE(sum(granted), 0)::bigint, COALESCE(sum(used), 0)::bigint,
                count(*) FILTER (WHERE used > granted)
         FROM mp_grants WHERE template_id = $1",
    )
    .bind(SUBSCRIBE_TEMPLATE)
    .fetch_one(pool)
    .await?;
    let spent: Vec<(String, bool)> = sqlx::query_as(
        "SELECT g.mp_openid,
                EXISTS (SELECT 1 FROM dead_letters l JOIN deliveries d
                          ON d.app = l.app AND d.job_id = l.job_id
                        WHERE d.recipient = g.mp_openid AND l.reason = 'outcome_unknown')
         FROM mp_grants g WHERE g.template_id = $1 AND g.used > 0",
    )
    .bind(SUBSCRIBE_TEMPLATE)
    .fetch_all(pool)
    .await?;
    let mut checks = GrantChecks {
        granted,
        used,
        overspent,
        subscribe_messages: per_person.values().sum(),
        people_messaged_twice: per_person.values().filter(|n| **n > 1).count() as u64,
        ..GrantChecks::default()
    };
    for (openid, outcome_unknown) in spent {
        let person = mock_wechat::person_of(&openid).context("a seeded person")?;
        if per_person.get(&person).copied().unwrap_or(0) == 0 {
            checks.lost_grants += 1;
            if !outcome_unknown {
                checks.lost_not_outcome_unknown += 1;
            }
        }
    }
    checks.outcome_unknown_by_channel = sqlx::query_as::<_, (Option<String>, i64)>(
        "SELECT d.channel, count(*) FROM dead_letters l JOIN deliveries d
           ON d.app = l.app AND d.job_id = l.job_id
         WHERE l.reason = 'outcome_unknown' GROUP BY d.channel",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(c, n)| (c.unwrap_or_else(|| "none".into()), n))
    .collect();
    Ok(checks)
}

impl GrantChecks {
    /// The promises broken (empty: all kept).
    pub(crate) fn broken(&self) -> Vec<String> {
        let mut broken = Vec::new();
        if self.overspent > 0 {
            broken.push(format!("{} grants spent twice", self.overspent));
        }
        if self.people_messaged_twice > 0 {
            broken.push(format!(
                "{} people got two subscribe messages",
                self.people_messaged_twice
            ));
        }
        if self.lost_not_outcome_unknown > 0 {
            broken.push(format!(
                "{} lost grants whose job did not end outcome_unknown",
                self.lost_not_outcome_unknown
            ));
        }
        broken
    }
}

#[cfg(test)]
mod tests {
    use super::MixCounts;

    #[test]
    fn the_mix_is_half_oa_a_third_subscribe_and_the_rest_no_channel() {
        let c = MixCounts::of(50_000);
        assert_eq!((c.oa, c.subscribe, c.no_channel), (25_001, 16_666, 8_333));
    }
}
