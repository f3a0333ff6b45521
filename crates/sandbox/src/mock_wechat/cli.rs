//! `wxnotify-sandbox mock-wechat`: the fake WeChat as a process, for the demo, scripts and benchmarks.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use super::config::{EndOfList, MockConfig};
use super::faults::FaultPlan;
use super::{MOCK_MP_APPID, MOCK_MP_SECRET, MOCK_OA_APPID, MOCK_OA_SECRET, MockWechat};

fn defaults() -> MockConfig {
    MockConfig::default()
}

const ABOUT: &str = "\
Examples:
  wxnotify-sandbox mock-wechat
  wxnotify-sandbox mock-wechat --listen 127.0.0.1:0 --followers 1000000
  curl -s localhost:8088/mock/stats

Serves cgi-bin/token, stable_token, user/get, user/info, user/info/batchget,
sns/jscode2session, message/template/send, template/get_all_private_template,
message/subscribe/send and wxaapi/newtmpl/gettemplate for one fake
Official Account and one fake Mini Program, byte for byte like api.weixin.qq.com (see
docs/wechat.md). Like WeChat, get_all_private_template lists historical templates only, not
category ones (thing1, time2 …), unless --list-category-templates. On start it prints the base URL and the (fake, public) credentials to put in
WECHAT_API_BASE and WXNOTIFY_OA_APPID/SECRET, WXNOTIFY_MP_APPID/SECRET.

Person i (0-based) has OA openid oMockOA<i as 21 digits>, MP openid oMockMP<...> and unionid
oMockUN<...>.

Scripts drive it over HTTP (JSON bodies):
  GET    /mock/stats              counters: calls, errcodes, sends, duplicates, tokens minted
  GET    /mock/sends              the accepted template sends
  POST   /mock/reset              forget what happened (tokens stay valid)
  POST   /mock/faults             {\"rules\":[{\"endpoint\":\"template_send\",\"fault\":{\"errcode\":-1},\"probability\":0.1}]}
                                  faults: {\"latency\":MS} {\"errcode\":N} {\"http_status\":N}
                                  \"drop_connection\" \"accept_then_drop\"; optional \"remaining\":N
  DELETE /mock/faults             no more faults
  POST   /mock/tokens/invalidate  every issued token answers 40001
  POST   /mock/tokens/expire      every issued token answers 42001
  POST   /mock/login_code         {\"person\":7} -> {\"code\":\"...\"}, a wx.login() code
  POST   /mock/unsubscribe        {\"person\":7} (and /mock/subscribe)

The Mini Program's subscribe messages (subscribe/send, wxaapi/newtmpl/gettemplate):
  POST   /mock/mp/callback        {\"url\":\"http://127.0.0.1:8080/wechat/mp-callback\",\"token\":\"…\",
                                   \"encoding_aes_key\":\"…\" (safe mode, optional),\"format\":\"json\"}
  POST   /mock/mp/popup           {\"person\":7,\"results\":{\"MP_ORDER_SHIPPED\":\"accept\"}}: person 7
                                  accepts in the popup; the event is pushed (with retries)
  POST   /mock/mp/cancel          {\"person\":7,\"template_id\":\"MP_ORDER_SHIPPED\"}: a later cancellation
  GET    /mock/mp/grants?person=7 what the fake holds per person and template
  GET    /mock/mp/sends           the accepted subscribe messages (GET /mock/mp/counts: per person)";

/// Arguments of `wxnotify-sandbox mock-wechat`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = ABOUT)]
pub struct MockArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "WXNOTIFY_MOCK_LISTEN", default_value = "127.0.0.1:8088")]
    pub listen: SocketAddr,
    /// How many people to seed (persons 0..N); a million costs nothing up front.
    #[arg(long, default_value_t = defaults().followers)]
    pub followers: u64,
    /// Openids per user/get page (the real API: 10000).
    #[arg(long, default_value_t = defaults().page_size)]
    pub page_size: u64,
    /// Every k-th person has no unionid (0 = everyone has one).
    #[arg(long, default_value_t = defaults().no_unionid_every)]
    pub no_unionid_every: u64,
    /// Every k-th person has unfollowed the OA (0 = everyone follows).
    #[arg(long, default_value_t = defaults().unsubscribed_every)]
    pub unsubscribed_every: u64,
    /// How user/get marks the end of the list.
    #[arg(long, value_enum, default_value_t = EndOfList::NoData)]
    pub end_of_list: EndOfList,
    /// Access token lifetime in seconds (expires_in).
    #[arg(long, default_value_t = defaults().token_ttl.as_secs())]
    pub token_ttl: u64,
    /// Seconds an old token keeps working after a new one (and the stable token's hand-over).
    #[arg(long, default_value_t = defaults().token_overlap.as_secs())]
    pub token_overlap: u64,
    /// Latency added to every WeChat API answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// How many accepted sends GET /mock/sends keeps (the counters stay exact).
    #[arg(long, default_value_t = defaults().max_recorded_sends)]
    pub max_recorded_sends: usize,
    /// Fault rules to start with, as the JSON of POST /mock/faults.
    #[arg(long, value_name = "JSON", value_parser = parse_plan)]
    pub faults: Option<FaultPlan>,
    /// A word that makes a send answer 40249 (content blocked); repeatable.
    #[arg(long = "blocked-word", value_name = "WORD")]
    pub blocked_words: Vec<String>,
    /// A word that makes a send held for review (40252), then delivered after the review;
    /// repeatable.
    #[arg(long = "review-word", value_name = "WORD")]
    pub review_words: Vec<String>,
    /// A word that makes a send held for review (40252), then blocked by it (listed by
    /// queryblocktmplmsg); repeatable.
    #[arg(long = "review-blocked-word", value_name = "WORD")]
    pub review_blocked_words: Vec<String>,
    /// How long the review of a held message takes, in seconds.
    #[arg(long, default_value_t = defaults().review_delay.as_secs())]
    pub review_delay_secs: u64,
    /// Answer 40241 to a send identical to one accepted within this many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    pub repeat_window_secs: u64,
    /// Template sends accepted before 45009; also quota/get's daily_limit.
    #[arg(long, default_value_t = defaults().daily_quota)]
    pub daily_quota: u64,
    /// List category templates (keys thing1, time2 …) in get_all_private_template too (real
    /// WeChat lists historical templates only).
    #[arg(long)]
    pub list_category_templates: bool,
    /// Every k-th accepted subscribe message is answered without a msgid (0: never).
    #[arg(long, default_value_t = defaults().subscribe_msgid_omit_every)]
    pub subscribe_msgid_omit_every: u64,
    /// Push no subscribe_msg_sent_event after subscribe messages.
    #[arg(long)]
    pub no_mp_sent_receipts: bool,
}

fn parse_plan(s: &str) -> Result<FaultPlan, String> {
    serde_json::from_str(s).map_err(|e| format!("not a fault plan: {e}"))
}

impl MockArgs {
    /// The configuration these flags describe.
    pub fn config(&self) -> MockConfig {
        MockConfig {
            followers: self.followers,
            page_size: self.page_size,
            no_unionid_every: self.no_unionid_every,
            unsubscribed_every: self.unsubscribed_every,
            end_of_list: self.end_of_list,
            token_ttl: Duration::from_secs(self.token_ttl),
            token_overlap: Duration::from_secs(self.token_overlap),
            latency: Duration::from_millis(self.latency_ms),
            max_recorded_sends: self.max_recorded_sends,
            blocked_words: self.blocked_words.clone(),
            review_words: self.review_words.clone(),
            review_blocked_words: self.review_blocked_words.clone(),
            review_delay: Duration::from_secs(self.review_delay_secs),
            repeat_window: Duration::from_secs(self.repeat_window_secs),
            daily_quota: self.daily_quota,
            list_category_templates: self.list_category_templates,
            subscribe_msgid_omit_every: self.subscribe_msgid_omit_every,
            mp_sent_receipts: !self.no_mp_sent_receipts,
            ..MockConfig::default()
        }
    }
}

/// Runs `wxnotify-sandbox mock-wechat` until Ctrl-C or SIGTERM, then shuts down gracefully.
pub async fn run(args: MockArgs) -> anyhow::Result<ExitCode> {
    let mock = MockWechat::start_on(args.config(), args.listen).await?;
    if let Some(plan) = args.faults.clone() {
        mock.set_faults(plan);
    }
    let base = mock.base_url();
    println!(
        "mock-wechat listening: WECHAT_API_BASE={} WXNOTIFY_OA_APPID={MOCK_OA_APPID} \
         WXNOTIFY_OA_SECRET={MOCK_OA_SECRET} WXNOTIFY_MP_APPID={MOCK_MP_APPID} \
         WXNOTIFY_MP_SECRET={MOCK_MP_SECRET} (fake credentials of the mock, not real secrets)",
        base.as_str().trim_end_matches('/')
    );
    wait_for_signal().await?;
    tracing::info!("mock-wechat: shutting down");
    mock.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        res = tokio::signal::ctrl_c() => res?,
        _ = term.recv() => {}
    }
    Ok(())
}
