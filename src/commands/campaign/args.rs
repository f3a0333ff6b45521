//! The arguments of `wxnotify campaign` and its subcommands.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use uuid::Uuid;

/// Arguments of `wxnotify campaign`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  wxnotify campaign create --app default --template-id T --data '{\"thing1\":\"Sale\"}' --followers --json\n  wxnotify campaign create --app default --template-id T --data '{\"thing1\":\"Sale\"}' --recipients people.csv --window 09:00-21:00 --time-zone Asia/Shanghai\n  wxnotify campaign start 0193…\n  wxnotify campaign status 0193…\n  wxnotify campaign list --json\n\nThe dispatcher runs inside `wxnotify worker` (or alone: `wxnotify campaign dispatch`)."
)]
pub struct CampaignArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CampaignCommand,
}

/// The campaign subcommands.
#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign (draft) and snapshot its audience.
    #[command(after_help = "Examples:
  wxnotify campaign create --name 'December sale' --template-id T --data '{\"thing1\":\"Sale\",\"time2\":\"12-12\"}' --followers
  wxnotify campaign create --app default --template-id T --data '{\"thing1\":\"Shipped\"}' \\
      --recipients orders.csv --rate 200 --window 09:00-21:00 --time-zone Asia/Shanghai --daily-cap 100000 --json
  wxnotify campaign create --template-id T --data '{\"thing1\":\"Sale\"}' --followers \\
      --mp-subscribe-template-id S --mp-subscribe-data '{\"thing1\":\"Sale\"}' --mp-subscribe-page pages/sale

With --mp-subscribe-template-id, Mini Program users who do not follow the OA but hold a grant for
that subscribe template are in the audience too (by their Mini Program openid), and every job
carries the subscribe message: a follower gets the OA message, a grant holder the subscribe
message (spending a grant). Preview and status count the audience by channel.

A recipients file is NDJSON ({\"mp_openid\":\"o…\",\"data\":{\"order\":\"42\"}} a line; or unionid / oa_openid)
or CSV with a header naming one of mp_openid, unionid, oa_openid; its other columns are template
fields of that recipient. Bad lines are reported with their line numbers and skipped, and so are
recipients whose data breaks the template (a value too long for its key type; --truncate shortens
such values instead).")]
    Create(Box<CreateArgs>),
    /// Show the snapshot: recipients by channel (followers, grant holders, unreachable) and
    /// unreachable ones by reason.
    #[command(after_help = "Example:\n  wxnotify campaign preview 0193… --json")]
    Preview(IdArgs),
    /// Start a draft campaign (it waits for its start time and window).
    #[command(after_help = "Example:\n  wxnotify campaign start 0193…")]
    Start(IdArgs),
    /// Pause a campaign: no new sends within about a second; jobs already queued wait.
    #[command(after_help = "Example:\n  wxnotify campaign pause 0193…")]
    Pause(IdArgs),
    /// Resume a paused campaign where it stopped.
    #[command(after_help = "Example:\n  wxnotify campaign resume 0193…")]
    Resume(IdArgs),
    /// Cancel a campaign for good: queued jobs are recorded `cancelled`, not sent.
    #[command(after_help = "Example:\n  wxnotify campaign cancel 0193…")]
    Cancel(IdArgs),
    /// Progress from the ledger; on a terminal a live progress bar until the campaign ends.
    #[command(
        after_help = "Examples:\n  wxnotify campaign status 0193…\n  wxnotify campaign status 0193… --json\n  wxnotify campaign status 0193… --once"
    )]
    Status(StatusArgs),
    /// The newest campaigns.
    #[command(after_help = "Example:\n  wxnotify campaign list --json")]
    List(ListArgs),
    /// Run only the campaign dispatcher (`wxnotify worker` runs one too) until SIGTERM.
    #[command(after_help = "Example:\n  wxnotify campaign dispatch")]
    Dispatch,
}

/// `campaign create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A name for people, shown in lists, status and the console (the id stays the key).
    #[arg(long)]
    pub name: Option<String>,
    /// Shorten values too long for their key type instead of refusing those recipients.
    #[arg(long)]
    pub truncate: bool,
    /// The app (default: the default app).
    #[arg(long)]
    pub app: Option<String>,
    /// The OA template id.
    #[arg(long)]
    pub template_id: String,
    /// Template fields shared by every recipient, as a JSON object.
    #[arg(long)]
    pub data: String,
    /// Web page opened on tap.
    #[arg(long)]
    pub url: Option<url::Url>,
    /// Mini Program opened on tap (with --pagepath).
    #[arg(long, requires = "pagepath")]
    pub miniprogram_appid: Option<String>,
    /// The Mini Program page (with --miniprogram-appid).
    #[arg(long, requires = "miniprogram_appid")]
    pub pagepath: Option<String>,
    /// The Mini Program subscribe template (with --mp-subscribe-data): people who do not follow
    /// the OA but hold a grant for it join the audience and get the subscribe message.
    #[arg(long, requires = "mp_subscribe_data")]
    pub mp_subscribe_template_id: Option<String>,
    /// The subscribe message's fields, as a JSON object (with --mp-subscribe-template-id).
    #[arg(long, requires = "mp_subscribe_template_id")]
    pub mp_subscribe_data: Option<String>,
    /// The Mini Program page a tap on the subscribe message opens.
    #[arg(long, requires = "mp_subscribe_template_id")]
    pub mp_subscribe_page: Option<String>,
    /// Which version of the Mini Program that tap opens: developer, trial or formal.
    #[arg(long, requires = "mp_subscribe_template_id")]
    pub mp_subscribe_miniprogram_state: Option<String>,
    /// Every subscribed follower of the app's OA.
    #[arg(
        long,
        conflicts_with = "recipients",
        required_unless_present = "recipients"
    )]
    pub followers: bool,
    /// A recipients file, `.ndjson` or `.csv`.
    #[arg(long)]
    pub recipients: Option<PathBuf>,
    /// Sends per second at most (default and ceiling: the app's rate).
    #[arg(long)]
    pub rate: Option<u32>,
    /// Daily send window, local time `HH:MM-HH:MM`.
    #[arg(long)]
    pub window: Option<String>,
    /// Time zone of the window and the daily cap (IANA name).
    #[arg(long, default_value = "UTC")]
    pub time_zone: String,
    /// Not before this instant (RFC 3339).
    #[arg(long)]
    pub start_at: Option<DateTime<Utc>>,
    /// At most this many dispatched a day (1 to 100000000).
    #[arg(long)]
    pub daily_cap: Option<u64>,
    /// Not sent after this instant (RFC 3339).
    #[arg(long)]
    pub not_after: Option<DateTime<Utc>>,
    /// Who creates it (recorded in its history; default $USER).
    #[arg(long)]
    pub by: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of commands on one campaign.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// The campaign id.
    pub id: Uuid,
    /// Who does it (recorded in the history; default $USER).
    #[arg(long)]
    pub by: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `campaign status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The campaign id.
    pub id: Uuid,
    /// Print JSON (once).
    #[arg(long)]
    pub json: bool,
    /// Print one line and exit, also on a terminal.
    #[arg(long)]
    pub once: bool,
}

/// `campaign list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// How many (newest first).
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
