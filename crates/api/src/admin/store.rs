//! The SQL of the admin surface beyond dead letters: deliveries, apps, workers, the overview's
//! figures and the audit trail.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::admin::auth::Principal;
use wxnotify_services::app_pause::{self, PauseCause, Suspension};
use wxnotify_services::dlq::DeadLetterQuery;

/// A worker counts as live when it heartbeat within this many seconds.
pub const LIVE_WORKER_SECS: f64 = 10.0;

/// One row of the delivery ledger.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeliveryRow {
    /// The job id.
    pub job_id: String,
    /// The app.
    pub app: String,
    /// `mp_openid`, `unionid`, `oa_openid` or `unknown`.
    pub recipient_kind: String,
    /// The recipient as the job named it.
    pub recipient: String,
    /// The OA openid it resolved to.
    pub oa_openid: Option<String>,
    /// The template.
    pub template_id: String,
    /// The campaign, if any.
    pub campaign_id: Option<uuid::Uuid>,
    /// `sending`, `retrying`, `sent` or `dead`.
    pub state: String,
    /// Attempts made.
    pub attempts: i32,
    /// Times the id arrived again after it was finished.
    pub duplicates: i32,
    /// WeChat's msgid, once sent.
    pub msgid: Option<i64>,
    /// The last errcode WeChat answered.
    pub last_errcode: Option<i64>,
    /// The last message WeChat answered.
    pub last_errmsg: Option<String>,
    /// Why it died, if it did.
    pub dead_reason: Option<String>,
    /// The channel that sent it: `oa_template` or `mp_subscribe` (none before a send).
    pub channel: Option<String>,
    /// The delivery receipt's status (TEMPLATESENDJOBFINISH), when one came.
    pub receipt_status: Option<String>,
    /// When the receipt came.
    pub receipt_at: Option<DateTime<Utc>>,
    /// First seen.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When WeChat accepted it.
    pub sent_at: Option<DateTime<Utc>>,
}

const DELIVERY_COLUMNS: &str = "job_id, app, recipient_kind, recipient, oa_openid, template_id, campaign_id, state, attempts, duplicates, msgid, last_errcode, last_errmsg, dead_reason, channel, receipt_status, receipt_at, created_at, updated_at, sent_at";

/// The ledger rows of a job id: the one of `app`, or of every app that used the id (job ids
/// are per app).
pub async fn deliveries(
    pool: &PgPool,
    app: Option<&str>,
    job_id: &str,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries
         WHERE job_id = $1 AND ($2::text IS NULL OR app = $2) ORDER BY app"
    )))
    .bind(job_id)
    .bind(app)
    .fetch_all(pool)
    .await
}

/// The latest jobs of a recipient (as named in the job, or the OA openid it resolved to).
pub async fn deliveries_of(
    pool: &PgPool,
    recipient: &str,
    limit: u32,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE recipient = $1
         UNION
         SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE oa_openid = $1
         ORDER BY created_at DESC LIMIT $2"
    )))
    .bind(recipient)
    .bind(limit.clamp(1, 500) as i64)
    .fetch_all(pool)
    .await
}

/// The life a job is in (1, then +1 per replay), if the ledger has it.
pub async fn life(pool: &PgPool, app: &str, job_id: &str) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar("SELECT life FROM deliveries WHERE app = $1 AND job_id = $2")
        .bind(app)
        .bind(job_id)
        .fetch_optional(pool)
        .await
}

/// Dead-letter ids of a job id, in `app` or in every app (newest first).
pub async fn dead_letter_ids(
    pool: &PgPool,
    app: Option<&str>,
    job_id: &str,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM dead_letters
         WHERE job_id = $1 AND ($2::text IS NULL OR app = $2) ORDER BY id DESC",
    )
    .bind(job_id)
    .bind(app)
    .fetch_all(pool)
    .await
}

/// One app as ops see it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AppRow {
    /// wxnotify's name of the app.
    pub name: String,
    /// The OA appid.
    pub oa_appid: String,
    /// Whether the app sends nothing now (a timed pause, or WeChat refuses the account).
    pub paused: bool,
    /// A timed pause's end (45009, or by hand); `null` while sending or while suspended.
    pub paused_until: Option<DateTime<Utc>>,
    /// `account` (WeChat refuses the account itself: until WeChat answers normally),
    /// `quota` (45009) or `manual`.
    pub pause_cause: Option<PauseCause>,
    /// Why it is paused, in words (WeChat's errcode and the fix, for a suspension).
    pub pause_reason: Option<String>,
    /// WeChat's answer that suspended the app.
    pub suspension: Option<Suspension>,
    /// Template messages sent since midnight, Beijing time (WeChat's quota day).
    pub sends_today: i64,
    /// Jobs dead-lettered since midnight, Beijing time.
    pub dead_today: i64,
}

/// Every registered app.
pub async fn apps(pool: &PgPool) -> Result<Vec<AppRow>, sqlx::Error> {
    let counts: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "WITH day AS (SELECT date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai' AS start)
         SELECT a.name, a.oa_appid,
                (SELECT count(*) FROM deliveries d, day WHERE d.app = a.name AND d.sent_at >= day.start) AS sends_today,
                (SELECT count(*) FROM dead_letters l, day WHERE l.app = a.name AND l.created_at >= day.start) AS dead_today
         FROM apps a ORDER BY a.name",
    )
    .fetch_all(pool)
    .await?;
    let pauses = app_pause::read_all(pool).await?;
    let now = Utc::now();
    Ok(counts
        .into_iter()
        .map(|(name, oa_appid, sends_today, dead_today)| {
            let pause = pauses.iter().find(|p| p.app == name);
            AppRow {
                paused: pause.is_some_and(|p| p.paused(now)),
                paused_until: pause.and_then(|p| p.paused_until(now)),
                pause_cause: pause.and_then(|p| p.cause_at(now)),
                pause_reason: pause.and_then(|p| p.reason_at(now)),
                suspension: pause.and_then(|p| p.suspension.clone()),
                name,
                oa_appid,
                sends_today,
                dead_today,
            }
        })
        .collect())
}

/// Pauses (`Some(until)`) or resumes (`None`: also lifts a suspension) an app's sending in
/// every worker. `false` when there is no such app.
pub async fn set_pause(
    pool: &PgPool,
    app: &str,
    until: Option<DateTime<Utc>>,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    match until {
        Some(until) => app_pause::pause_until(pool, app, until, PauseCause::Manual, reason).await,
        None => app_pause::resume(pool, app).await,
    }
}

/// A worker process.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WorkerRow {
    /// Its id (new at every start).
    pub id: uuid::Uuid,
    /// Host.
    pub hostname: String,
    /// Process id.
    pub pid: i32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its latest heartbeat.
    pub heartbeat_at: DateTime<Utc>,
}

/// Workers that heartbeat within [`LIVE_WORKER_SECS`].
pub async fn live_workers(pool: &PgPool) -> Result<Vec<WorkerRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, hostname, pid, started_at, heartbeat_at FROM workers
         WHERE heartbeat_at > now() - make_interval(secs => $1) ORDER BY started_at",
    )
    .bind(LIVE_WORKER_SECS)
    .fetch_all(pool)
    .await
}

/// A count at one minute (UTC).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MinuteCount {
    /// The minute.
    pub minute: DateTime<Utc>,
    /// How many.
    pub count: i64,
}

/// Sends and deaths per minute since `since` (minutes without any are absent): what the
/// overview's chart over time draws.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    /// Template messages WeChat accepted, by the minute it accepted them.
    pub sent: Vec<MinuteCount>,
    /// Jobs that died, by the minute they died (replayed or not).
    pub dead: Vec<MinuteCount>,
}

/// Sends and deaths per minute since `since`.
pub async fn activity(pool: &PgPool, since: DateTime<Utc>) -> Result<Activity, sqlx::Error> {
    let sent = sqlx::query_as(
        "SELECT date_trunc('minute', sent_at, 'UTC') AS minute, count(*) AS count FROM deliveries
         WHERE sent_at >= $1 GROUP BY 1 ORDER BY 1",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    let dead = sqlx::query_as(
        "SELECT date_trunc('minute', created_at, 'UTC') AS minute, count(*) AS count FROM dead_letters
         WHERE created_at >= $1 GROUP BY 1 ORDER BY 1",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    Ok(Activity { sent, dead })
}

/// Dead letters matching `q` that died since `since`, by hour (UTC) and reason: `(hour, reason,
/// count)`, oldest hour first.
pub async fn dead_by_hour_and_reason(
    pool: &PgPool,
    q: &DeadLetterQuery,
    since: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, String, i64)>, sqlx::Error> {
    let mut qb = sqlx::QueryBuilder::new(
        "SELECT date_trunc('hour', created_at, 'UTC') AS hour, reason, count(*) FROM dead_letters",
    );
    q.push_where(&mut qb);
    qb.push(" AND created_at >= ")
        .push_bind(since)
        .push(" GROUP BY 1, 2 ORDER BY 1, 2");
    qb.build_query_as().fetch_all(pool).await
}

/// Outcomes over the last `hours`: `sent` and every dead reason, with counts.
pub async fn outcomes(pool: &PgPool, hours: u32) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT 'sent', count(*) FROM deliveries WHERE sent_at > now() - make_interval(hours => $1)
         UNION ALL
         (SELECT reason, count(*) FROM dead_letters WHERE created_at > now() - make_interval(hours => $1)
          GROUP BY reason ORDER BY 2 DESC)",
    )
    .bind(hours as i32)
    .fetch_all(pool)
    .await
}

/// One admin action, for the audit trail.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// `replay`, `purge`, `pause`, `resume`, `login`, `retention`, `admin-user add`, …
    pub action: &'a str,
    /// The filter acted on, if by filter.
    pub filter: Option<&'a DeadLetterQuery>,
    /// The ids acted on, if by ids.
    pub ids: Option<&'a [i64]>,
    /// How many things it touched (or would, in a dry run).
    pub affected: i64,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Anything else worth keeping (the app, the pause's end, skipped ids, …).
    pub detail: serde_json::Value,
}

impl<'a> AuditEntry<'a> {
    /// An action on one thing (a campaign, an admin user …), neither by filter nor by ids.
    pub fn one(action: &'a str, detail: serde_json::Value) -> Self {
        AuditEntry {
            action,
            filter: None,
            ids: None,
            affected: 1,
            dry_run: false,
            detail,
        }
    }
}

/// Writes one audit row for `who` (the person in `actor`).
pub async fn audit(pool: &PgPool, who: &Principal, e: &AuditEntry<'_>) -> Result<(), sqlx::Error> {
    audit_as(pool, &who.who, who.role.as_str(), &who.actor, e).await
}

/// Writes one audit row for a named actor (the retention task is `system`, the commands
/// `cli`).
pub async fn audit_as(
    pool: &PgPool,
    who: &str,
    role: &str,
    actor: &str,
    e: &AuditEntry<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO admin_audit (who, role, actor, action, filter, ids, affected, dry_run, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(who)
    .bind(role)
    .bind(actor)
    .bind(e.action)
    .bind(
        e.filter
            .map(|f| serde_json::to_value(f).unwrap_or_default()),
    )
    .bind(e.ids)
    .bind(e.affected)
    .bind(e.dry_run)
    .bind(&e.detail)
    .execute(pool)
    .await?;
    Ok(())
}

/// One row of the audit trail.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditRow {
    /// Its id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: `api:admin`, `console:admin`, `system`.
    pub who: String,
    /// Their role.
    pub role: String,
    /// The person: an admin user's name, `env:admin` / `env:viewer` (the break-glass tokens),
    /// `system` or `cli`.
    pub actor: Option<String>,
    /// What.
    pub action: String,
    /// On which filter.
    pub filter: Option<serde_json::Value>,
    /// On which ids.
    pub ids: Option<Vec<i64>>,
    /// How many.
    pub affected: i64,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// More.
    pub detail: Option<serde_json::Value>,
}

/// The latest audit rows.
pub async fn audit_log(pool: &PgPool, limit: u32) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, at, who, role, actor, action, filter, ids, affected, dry_run, detail
         FROM admin_audit ORDER BY id DESC LIMIT $1",
    )
    .bind(limit.clamp(1, 1000) as i64)
    .fetch_all(pool)
    .await
}
