//! What the fake WeChat is seeded with: the people, the templates, the token lifetimes and the
//! few wire choices the real API leaves open (how `user/get` ends its list).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use wxnotify_core::wechat::event::PushFormat;

/// How the seeded world and the wire behaviour of a [`MockWechat`](super::MockWechat) look.
///
/// `Default` gives 1000 people, every 10th without unionid, every 20th unfollowed, real token
/// lifetimes (7200 s, 300 s overlap) and the two default templates. Build one with
/// `MockConfig { followers: 5, ..MockConfig::default() }`.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// How many people are seeded (persons `0..followers`). Nothing is allocated per person:
    /// identities are computed from the index, so 1,000,000 is as cheap as 10.
    pub followers: u64,
    /// Every k-th person (persons `k-1`, `2k-1`, …) has no unionid (their OA and MP are not
    /// joined for them). 0 = everyone has one.
    pub no_unionid_every: u64,
    /// Every k-th person (persons `k-1`, `2k-1`, …) has unfollowed the OA: absent from
    /// `user/get`, `subscribe:0` in `user/info`, 43004 on send. 0 = everyone follows.
    pub unsubscribed_every: u64,
    /// How many openids one `user/get` page holds (the real API: 10,000).
    pub page_size: u64,
    /// Which of the three end-of-list forms `user/get` uses.
    pub end_of_list: EndOfList,
    /// Lifetime of a new access token (`expires_in`).
    pub token_ttl: Duration,
    /// How long an old `cgi-bin/token` token keeps working after a newer one is minted; also
    /// the last part of a stable token's life in which `stable_token` hands out the next token.
    pub token_overlap: Duration,
    /// `stable_token` with `force_refresh:true` refreshes at most once per this interval; a call
    /// sooner returns the current token (the real API: 30 s). Zero = always refresh.
    pub force_refresh_spacing: Duration,
    /// How long a `wx.login()` code from [`MockWechat::issue_login_code`](super::MockWechat::issue_login_code)
    /// stays usable (the real API: 5 minutes).
    pub login_code_ttl: Duration,
    /// How long `(touser, client_msg_id)` is remembered for de-duplication (the real API: 10
    /// minutes).
    pub client_msg_id_window: Duration,
    /// How many accepted sends [`MockWechat::sends`](super::MockWechat::sends) keeps (the
    /// oldest are forgotten first; the counters stay exact). Bounds memory in benchmarks.
    pub max_recorded_sends: usize,
    /// Added to every WeChat API answer (not to `/mock/…` control calls), before faults.
    pub latency: Duration,
    /// The OA's private templates: historical ones (keys `keyword1` …) and category ones (keys
    /// `thing1`, `time2` …). Sends know both.
    pub templates: Vec<MockTemplate>,
    /// Whether `get_all_private_template` lists category templates too. Real WeChat does not
    /// (it lists historical templates only), hence the default `false`; tests that need a
    /// catalog holding category templates (tombstones, the 40037 retry) turn it on.
    pub list_category_templates: bool,
    /// A send whose `data` holds one of these words is refused with 40249 (content blocked).
    pub blocked_words: Vec<String>,
    /// A send whose `data` holds one of these words is held for review: answered 40252 (no
    /// msgid); after `review_delay` the review lets it through (WeChat delivers it; nothing
    /// lists it).
    pub review_words: Vec<String>,
    /// A send whose `data` holds one of these words is held for review (40252) and, after
    /// `review_delay`, blocked: listed by `queryblocktmplmsg`.
    pub review_blocked_words: Vec<String>,
    /// How long the review of a held message takes (the real one: up to about 30 minutes).
    pub review_delay: Duration,
    /// A send identical to one accepted within this window (same recipient, template and
    /// data, another `client_msg_id`) is answered 40241 ("The message is duplicate in 60
    /// seconds"). Zero (the default) turns it off: WeChat's exact rule is not documented.
    pub repeat_window: Duration,
    /// Template sends accepted before 45009 (counted since start or the last reset); also
    /// `daily_limit` of `openapi/quota/get`. The default is generous so benchmarks never reach
    /// it; WeChat's base figure is 100,000.
    pub daily_quota: u64,
    /// The data format of the fake OA's server URL configuration (the console's XML / JSON
    /// choice): the format of every push [`MockWechat::deliver`](super::MockWechat::deliver)
    /// sends. XML by default; [`MockWechat::deliver_as`](super::MockWechat::deliver_as) picks
    /// the format of one push.
    pub push_format: PushFormat,
    /// The Mini Program's subscribe templates (`wxaapi/newtmpl/gettemplate`, `subscribe/send`).
    pub mp_templates: Vec<MockMpTemplate>,
    /// The Mini Program pages a subscribe message may open (`page`, compared without its query);
    /// any other page answers 41030.
    pub mp_pages: Vec<String>,
    /// Every k-th accepted subscribe send (the k-th, 2k-th …) answers without a `msgid`, as
    /// WeChat sometimes does; 0 = every answer has one.
    pub subscribe_msgid_omit_every: u64,
    /// Where the Mini Program's message push URL is and how pushes to it are signed; `None`
    /// = no pushes (grants still change). Also set at run time
    /// ([`MockWechat::set_mp_callback`](super::MockWechat::set_mp_callback)).
    pub mp_callback: Option<MpCallback>,
    /// How many times a Mini Program push that got no `success` (or empty) answer is sent again
    /// (WeChat: three).
    pub mp_push_retries: u32,
    /// The wait before each such retry.
    pub mp_push_retry_delay: Duration,
    /// How long after an accepted subscribe send its `subscribe_msg_sent_event` is pushed (only
    /// with an MP callback and [`mp_sent_receipts`](MockConfig::mp_sent_receipts)).
    pub mp_receipt_delay: Duration,
    /// Whether accepted subscribe sends are followed by a `subscribe_msg_sent_event` push.
    pub mp_sent_receipts: bool,
}

/// The Mini Program's message push configuration (its console's "消息推送" page).
#[derive(Debug, Clone)]
pub struct MpCallback {
    /// The push URL, e.g. `http://127.0.0.1:8080/wechat/mp-callback`.
    pub url: url::Url,
    /// Plaintext or safe mode, with the Token (and EncodingAESKey).
    pub mode: super::events::PushMode,
    /// XML or JSON.
    pub format: PushFormat,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            followers: 1000,
            no_unionid_every: 10,
            unsubscribed_every: 20,
            page_size: 10_000,
            end_of_list: EndOfList::NoData,
            token_ttl: Duration::from_secs(7200),
            token_overlap: Duration::from_secs(300),
            force_refresh_spacing: Duration::from_secs(30),
            login_code_ttl: Duration::from_secs(300),
            client_msg_id_window: Duration::from_secs(600),
            max_recorded_sends: 100_000,
            latency: Duration::ZERO,
            templates: MockTemplate::defaults(),
            list_category_templates: false,
            blocked_words: Vec::new(),
            review_words: Vec::new(),
            review_blocked_words: Vec::new(),
            review_delay: Duration::from_secs(60),
            repeat_window: Duration::ZERO,
            daily_quota: 100_000_000,
            push_format: PushFormat::Xml,
            mp_templates: MockMpTemplate::defaults(),
            mp_pages: vec!["pages/index/index".into(), "pages/order/detail".into()],
            subscribe_msgid_omit_every: 0,
            mp_callback: None,
            mp_push_retries: 3,
            mp_push_retry_delay: Duration::from_millis(200),
            mp_receipt_delay: Duration::from_millis(200),
            mp_sent_receipts: true,
        }
    }
}

/// How `user/get` tells the caller that the follower list is complete. The real API has been
/// seen doing each; a robust client stops on any of them (`docs/wechat.md` §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum EndOfList {
    /// The last page that holds openids has `"next_openid":""`.
    EmptyNextOpenid,
    /// The last page with openids still names a `next_openid`; the call after it answers
    /// `{"total":T,"count":0,"next_openid":""}` with no `data` key (what the real API does).
    #[default]
    NoData,
    /// The last page with openids still names a `next_openid`; the call after it answers
    /// `count:0`, `"data":{"openid":[]}` and the same `next_openid` it was given.
    ZeroCount,
}

/// One private template of the OA: its id, title and the `data` keys its content uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockTemplate {
    /// The `template_id`.
    pub id: String,
    /// The title shown in `get_all_private_template`.
    pub title: String,
    /// The `{{key.DATA}}` placeholders, e.g. `thing1`, `time2`. The part before the digits is
    /// the field type, which decides the value rules (`thing` ≤ 20 characters …).
    pub keys: Vec<String>,
}

impl MockTemplate {
    /// A template with the given id, title and keys.
    pub fn new(id: &str, title: &str, keys: &[&str]) -> MockTemplate {
        MockTemplate {
            id: id.into(),
            title: title.into(),
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    /// Whether it is a category template (类目模板): a key is typed (`thing1`, `time2` …)
    /// rather than `keywordN` (or the retired `first` / `remark`). WeChat's
    /// `get_all_private_template` does not list these.
    pub fn is_category(&self) -> bool {
        self.keys.iter().any(|k| {
            let kind = k.trim_end_matches(|c: char| c.is_ascii_digit());
            !matches!(kind, "keyword" | "first" | "remark")
        })
    }

    /// `TPL_ORDER_SHIPPED` (`thing1`, `time2`) and `TPL_PAYMENT_OK` (`amount1`, `thing2`,
    /// `time3`): category templates, so not listed unless
    /// [`MockConfig::list_category_templates`].
    pub fn defaults() -> Vec<MockTemplate> {
        vec![
            MockTemplate::new("TPL_ORDER_SHIPPED", "订单发货提醒", &["thing1", "time2"]),
            MockTemplate::new(
                "TPL_PAYMENT_OK",
                "支付成功通知",
                &["amount1", "thing2", "time3"],
            ),
        ]
    }
}

/// One subscribe template of the Mini Program (`wxaapi/newtmpl/gettemplate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockMpTemplate {
    /// The `priTmplId`.
    pub id: String,
    /// The title.
    pub title: String,
    /// The `{{key.DATA}}` placeholders (`thing1`, `time2`, `phrase3` …), typed as for OA
    /// category templates.
    pub keys: Vec<String>,
    /// Long-term (type 3: one accept allows many messages) rather than one-time (type 2).
    #[serde(default)]
    pub long_term: bool,
    /// `keywordEnumValueList`: the only values a key may take.
    #[serde(default)]
    pub enums: std::collections::BTreeMap<String, Vec<String>>,
}

impl MockMpTemplate {
    /// A one-time template with the given id, title and keys.
    pub fn one_time(id: &str, title: &str, keys: &[&str]) -> MockMpTemplate {
        MockMpTemplate {
            id: id.into(),
            title: title.into(),
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            long_term: false,
            enums: Default::default(),
        }
    }

    /// A long-term template with the given id, title and keys.
    pub fn long_term(id: &str, title: &str, keys: &[&str]) -> MockMpTemplate {
        MockMpTemplate {
            long_term: true,
            ..MockMpTemplate::one_time(id, title, keys)
        }
    }

    /// Restricts `key` to `values`.
    pub fn with_enum(mut self, key: &str, values: &[&str]) -> MockMpTemplate {
        self.enums
            .insert(key.into(), values.iter().map(|v| (*v).to_owned()).collect());
        self
    }

    /// `MP_ORDER_SHIPPED` (one-time: `thing1`, `time2`, `phrase3` ∈ {已发货, 已签收}) and
    /// `MP_SERVICE_NOTICE` (long-term: `thing1`, `time2`).
    pub fn defaults() -> Vec<MockMpTemplate> {
        vec![
            MockMpTemplate::one_time(
                "MP_ORDER_SHIPPED",
                "订单发货通知",
                &["thing1", "time2", "phrase3"],
            )
            .with_enum("phrase3", &["已发货", "已签收"]),
            MockMpTemplate::long_term("MP_SERVICE_NOTICE", "服务进度提醒", &["thing1", "time2"]),
        ]
    }
}
