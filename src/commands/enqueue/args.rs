//! The arguments of `wxnotify enqueue`, and the single job they describe.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use wxnotify_core::config::Settings;
use wxnotify_core::domain::Lane;
use wxnotify_core::domain::{AppName, Job};
use wxnotify_core::queue::ndjson::DEFAULT_BATCH_SIZE;

const AFTER_HELP: &str = "\
Examples:
  # One job to a Mini Program user (mapped to the OA follower through the unionid):
  wxnotify enqueue --to-mp-openid oMP123 --template ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY \\
      --data thing1=Shipped --data time2='2026-11-24 10:00' --page 'pages/order?id=1'

  # The same job as JSON (the contract of `wxnotify schema`):
  wxnotify enqueue --job '{\"to\":{\"mp_openid\":\"oMP123\"},\"template_id\":\"ngq...\",\"data\":{\"thing1\":\"Shipped\"}}'

  # A campaign file, one job per line, on the bulk lane, with a machine-readable summary:
  wxnotify enqueue --file jobs.ndjson --lane bulk --json
  producer | wxnotify enqueue --file -

Every job is checked against its app's template catalog (`wxnotify templates sync`) when
Postgres (DATABASE_URL) can be reached: unknown template, missing or unknown data keys, and the
confirmed value rules of WeChat's table (the length limits such as thing ≤ 20 characters and
amount ≤ 10 digits, no Chinese in character_string, only Chinese in phrase) refuse the job with
the key named; add --truncate (or \"truncate\": true) to shorten over-long thing,
character_string and phrase values instead. Format rules (time and date forms …) only warn.

Give jobs an `id` (an idempotency key, e.g. order-1-shipped): a job id already sent is never
sent twice, so re-running an interrupted enqueue is safe. Jobs without one get a fresh id.

Exit codes: 0 all jobs accepted; 1 some lines rejected (listed with their line numbers and the
reason); 2 bad settings or arguments (including an invalid single job); 3 RabbitMQ unreachable.
Settings: AMQP_URL, WXNOTIFY_QUEUE_PREFIX (run `wxnotify migrate` once to declare the queues).";

/// Arguments of `wxnotify enqueue`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = AFTER_HELP)]
#[command(group = clap::ArgGroup::new("source").required(true).multiple(false)
    .args(["to_mp_openid", "to_unionid", "to_oa_openid", "job", "file"]))]
pub struct EnqueueArgs {
    /// Send to the person with this Mini Program openid.
    #[arg(long, value_name = "OPENID", help_heading = "One job from flags")]
    pub to_mp_openid: Option<String>,
    /// Send to the person with this unionid.
    #[arg(long, value_name = "UNIONID", help_heading = "One job from flags")]
    pub to_unionid: Option<String>,
    /// Send to this OA openid as is.
    #[arg(long, value_name = "OPENID", help_heading = "One job from flags")]
    pub to_oa_openid: Option<String>,
    /// The OA template id.
    #[arg(long, value_name = "ID", help_heading = "One job from flags",
        required_unless_present_any = ["job", "file"], conflicts_with_all = ["job", "file"])]
    pub template: Option<String>,
    /// A template field, `key=value` (repeat for each field: --data thing1=Shipped --data time2=…).
    #[arg(long = "data", value_name = "KEY=VALUE", value_parser = parse_field,
        help_heading = "One job from flags",
        required_unless_present_any = ["job", "file"], conflicts_with_all = ["job", "file"])]
    pub data: Vec<(String, String)>,
    /// A web page opened when the message is tapped (http or https).
    #[arg(long, help_heading = "One job from flags", conflicts_with_all = ["job", "file"])]
    pub url: Option<String>,
    /// A Mini Program page opened when the message is tapped, e.g. `pages/order?id=1`.
    #[arg(long, value_name = "PAGEPATH", help_heading = "One job from flags",
        conflicts_with_all = ["job", "file"])]
    pub page: Option<String>,
    /// The Mini Program of --page (default: the app's WXNOTIFY_MP_APPID).
    #[arg(
        long,
        value_name = "APPID",
        requires = "page",
        help_heading = "One job from flags"
    )]
    pub page_appid: Option<String>,
    /// Which configured app sends it (default: `default`).
    #[arg(long, help_heading = "One job from flags", conflicts_with_all = ["job", "file"])]
    pub app: Option<String>,
    /// The job id (idempotency key); generated when left out.
    #[arg(long, help_heading = "One job from flags", conflicts_with_all = ["job", "file"])]
    pub id: Option<String>,
    /// Do not send after this instant (RFC 3339, e.g. 2026-11-24T12:00:00Z).
    #[arg(long, value_name = "TIME", help_heading = "One job from flags",
        conflicts_with_all = ["job", "file"])]
    pub not_after: Option<DateTime<Utc>>,
    /// Shorten values that break their field type's length rule (`thing` over 20 characters
    /// …) instead of refusing the job; the worker records what it cut on the ledger.
    #[arg(long, help_heading = "One job from flags", conflicts_with_all = ["job", "file"])]
    pub truncate: bool,

    /// One job as JSON (see `wxnotify schema`).
    #[arg(long, value_name = "JSON")]
    pub job: Option<String>,
    /// A file of jobs, one JSON object per line (NDJSON); `-` reads standard input.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,

    /// The lane: `jobs` (transactional, sent first) or `bulk` (campaigns).
    #[arg(long, value_parser = super::super::lane_parser(), default_value_t = Lane::Jobs)]
    pub lane: Lane,
    /// Jobs published per confirm round trip.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub batch_size: usize,
    /// Print a machine-readable summary (JSON) on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_field(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    Ok((key.to_owned(), value.to_owned()))
}

/// The single job of the flags or `--job`, `None` for `--file`, or why the flags do not make
/// a valid job.
pub(super) fn single_job(args: &EnqueueArgs, settings: &Settings) -> Result<Option<Job>, String> {
    if args.file.is_some() {
        return Ok(None);
    }
    match &args.job {
        Some(json) => Job::from_json(json.as_bytes())
            .map(Some)
            .map_err(|e| e.to_string()),
        None => job_from_flags(args, settings).map(Some),
    }
}

fn job_from_flags(args: &EnqueueArgs, settings: &Settings) -> Result<Job, String> {
    let to = match (&args.to_mp_openid, &args.to_unionid, &args.to_oa_openid) {
        (Some(id), _, _) => serde_json::json!({ "mp_openid": id }),
        (_, Some(id), _) => serde_json::json!({ "unionid": id }),
        (_, _, Some(id)) => serde_json::json!({ "oa_openid": id }),
        _ => return Err("give a recipient: --to-mp-openid, --to-unionid or --to-oa-openid".into()),
    };
    let data: serde_json::Map<String, serde_json::Value> = args
        .data
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    let mut job = serde_json::json!({ "to": to, "template_id": args.template, "data": data });
    let fields = [
        ("url", args.url.clone()),
        ("app", args.app.clone()),
        ("id", args.id.clone()),
        ("not_after", args.not_after.map(|t| t.to_rfc3339())),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            job[name] = value.into();
        }
    }
    if args.truncate {
        job["truncate"] = true.into();
    }
    if let Some(page) = &args.page {
        let appid = page_appid(args, settings)?;
        job["miniprogram"] = serde_json::json!({ "appid": appid, "pagepath": page });
    }
    Job::from_json(job.to_string().as_bytes()).map_err(|e| e.to_string())
}

/// `--page-appid`, else the Mini Program appid configured for the job's app.
fn page_appid(args: &EnqueueArgs, settings: &Settings) -> Result<String, String> {
    if let Some(appid) = &args.page_appid {
        return Ok(appid.clone());
    }
    let name = match &args.app {
        Some(app) => AppName::parse(app.clone()).map_err(|e| e.to_string())?,
        None => AppName::default_app(),
    };
    settings
        .app(&name)
        .ok()
        .and_then(|app| app.mp_appid.as_ref())
        .map(|appid| appid.to_string())
        .ok_or_else(|| {
            format!(
                "--page needs --page-appid (no Mini Program appid is configured for app {name})"
            )
        })
}
