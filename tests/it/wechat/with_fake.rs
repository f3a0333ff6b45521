//! The crate's client (and token store) against the project's fake WeChat: every quirk the fake
//! implements is read right and every fault lands in the right class.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::task::JoinSet;
use wxnotify_core::config::{AppConfig, TokenSource};
use wxnotify_core::domain::{
    AppId, AppName, FieldKey, MiniProgramLink, OpenId, TemplateData, TemplateId,
};
use wxnotify_core::wechat::client::{ClientOptions, TemplateMessage};
use wxnotify_core::wechat::{
    AccessToken, ErrClass, PermanentKind, TokenStore, WechatClient, WechatError,
};
use wxnotify_sandbox::mock_wechat::{
    EndOfList, Endpoint, FIRST_MSGID, Fault, FaultRule, MOCK_MP_APPID, MOCK_MP_SECRET,
    MOCK_OA_APPID, MOCK_OA_SECRET, MockConfig, MockWechat, mp_openid, oa_openid, unionid,
};

use crate::support::TestDb;

fn client(fake: &MockWechat) -> WechatClient {
    let options = ClientOptions {
        timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    };
    WechatClient::new(fake.base_url(), &options).unwrap()
}

fn oa() -> (AppId, SecretString) {
    (
        AppId::parse(MOCK_OA_APPID).unwrap(),
        SecretString::from(MOCK_OA_SECRET),
    )
}

fn mp() -> (AppId, SecretString) {
    (
        AppId::parse(MOCK_MP_APPID).unwrap(),
        SecretString::from(MOCK_MP_SECRET),
    )
}

async fn oa_token(client: &WechatClient) -> AccessToken {
    let (appid, secret) = oa();
    client
        .stable_token(&appid, &secret, false)
        .await
        .unwrap()
        .token
}

fn openid(s: impl Into<String>) -> OpenId {
    OpenId::parse(s).unwrap()
}

/// `TPL_ORDER_SHIPPED` with the given fields.
struct Shipped {
    to: OpenId,
    template: TemplateId,
    data: TemplateData,
    link: MiniProgramLink,
}

impl Shipped {
    fn to(person: u64) -> Shipped {
        Self::with(
            person,
            "TPL_ORDER_SHIPPED",
            &[("thing1", "订单已发货"), ("time2", "2024-01-01 12:00")],
        )
    }

    fn with(person: u64, template: &str, fields: &[(&str, &str)]) -> Shipped {
        let fields: BTreeMap<FieldKey, String> = fields
            .iter()
            .map(|(k, v)| (FieldKey::parse(*k).unwrap(), (*v).to_owned()))
            .collect();
        Shipped {
            to: openid(oa_openid(person)),
            template: TemplateId::parse(template).unwrap(),
            data: TemplateData::new(fields).unwrap(),
            link: MiniProgramLink {
                appid: AppId::parse(MOCK_MP_APPID).unwrap(),
                pagepath: "pages/order/detail?id=1".into(),
            },
        }
    }

    fn message<'a>(&'a self, client_msg_id: Option<&'a str>) -> TemplateMessage<'a> {
        TemplateMessage {
            touser: &self.to,
            template_id: &self.template,
            data: &self.data,
            url: None,
            miniprogram: Some(&self.link),
            client_msg_id,
        }
    }
}

async fn send(client: &WechatClient, token: &AccessToken, person: u64) -> Result<i64, WechatError> {
    client
        .send_template(token, &Shipped::to(person).message(None))
        .await
}

/// Polls `check` every 20 ms until it holds, for at most `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sends_return_msgids_above_2_pow_53_exactly() {
    let fake = MockWechat::start(MockConfig::default()).await.unwrap();
    let client = client(&fake);
    let token = oa_token(&client).await;

    let first = send(&client, &token, 0).await.unwrap();
    let second = send(&client, &token, 1).await.unwrap();

    assert_eq!(first, FIRST_MSGID as i64);
    assert_eq!(second, FIRST_MSGID as i64 + 1);
    let recorded: Vec<u64> = fake.sends().iter().map(|s| s.msgid).collect();
    assert_eq!(recorded, [FIRST_MSGID, FIRST_MSGID + 1]);
    let sent = &fake.sends()[0];
    assert_eq!(sent.data["thing1"]["value"], "订单已发货");
    assert_eq!(
        sent.miniprogram.as_ref().unwrap()["pagepath"],
        "pages/order/detail?id=1"
    );
}

#[tokio::test]
async fn a_follower_sync_stops_on_every_end_of_list_form() {
    for end_of_list in [
        EndOfList::EmptyNextOpenid,
        EndOfList::NoData,
        EndOfList::ZeroCount,
    ] {
        let cfg = MockConfig {
            followers: 25,
            unsubscribed_every: 5,
            page_size: 10,
            end_of_list,
            ..MockConfig::default()
        };
        let fake = MockWechat::start(cfg).await.unwrap();
        let client = client(&fake);
        let token = oa_token(&client).await;

        let mut seen = Vec::new();
        let mut next: Option<OpenId> = None;
        let mut pages = 0;
        loop {
            let page = client.user_get(&token, next.as_ref()).await.unwrap();
            pages += 1;
            assert!(pages <= 5, "{end_of_list:?}: the list never ended");
            assert_eq!(page.total, 20, "{end_of_list:?}");
            seen.extend(page.openids);
            match page.next_openid {
                Some(n) => next = Some(n),
                None => break,
            }
        }

        let expected: Vec<OpenId> = (0..25)
            .filter(|i| (i + 1) % 5 != 0)
            .map(|i| openid(oa_openid(i)))
            .collect();
        assert_eq!(seen, expected, "{end_of_list:?}");
        let most = if end_of_list == EndOfList::EmptyNextOpenid {
            2
        } else {
            3
        };
        assert_eq!(pages, most, "{end_of_list:?}");
        assert_eq!(fake.stats().calls_to(Endpoint::UserGet), most);
    }
}

#[tokio::test]
async fn user_info_reads_followers_unfollowers_and_people_without_unionid() {
    let cfg = MockConfig::default(); // every 10th without unionid, every 20th unfollowed
    let fake = MockWechat::start(cfg.clone()).await.unwrap();
    let client = client(&fake);
    let token = oa_token(&client).await;

    let follower = client
        .user_info(&token, &openid(oa_openid(0)))
        .await
        .unwrap();
    assert!(follower.subscribed);
    assert_eq!(
        follower.unionid.as_ref().map(|u| u.to_string()),
        unionid(0, &cfg)
    );
    assert!(follower.subscribe_time.is_some());

    let no_union = client
        .user_info(&token, &openid(oa_openid(9)))
        .await
        .unwrap();
    assert!(no_union.subscribed);
    assert_eq!(no_union.unionid, None);

    let gone = client
        .user_info(&token, &openid(oa_openid(19)))
        .await
        .unwrap();
    assert!(!gone.subscribed);
    assert_eq!(gone.subscribe_time, None);
    assert_eq!(gone.unionid.map(|u| u.to_string()), unionid(19, &cfg));

    let batch: Vec<OpenId> = (0..100).map(|i| openid(oa_openid(i))).collect();
    let infos = client.user_info_batch(&token, &batch).await.unwrap();
    assert_eq!(infos.len(), 100);
    assert_eq!(infos.iter().filter(|i| !i.subscribed).count(), 5);
    assert_eq!(infos.iter().filter(|i| i.unionid.is_none()).count(), 10);

    let err = client
        .user_info(&token, &openid(mp_openid(0)))
        .await
        .unwrap_err();
    assert_eq!(err.errcode(), Some(40003));
    assert_eq!(err.class(), ErrClass::Permanent(PermanentKind::Recipient));
}

#[tokio::test]
async fn private_templates_come_with_their_keys() {
    // Real WeChat lists no category template; the fake does on request, to test the parsing.
    let fake = MockWechat::start(MockConfig {
        list_category_templates: true,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let client = client(&fake);
    let token = oa_token(&client).await;
    let templates = client.private_templates(&token).await.unwrap();
    let keys: BTreeMap<String, Vec<String>> = templates
        .into_iter()
        .map(|t| (t.template_id, t.keys))
        .collect();
    assert_eq!(keys["TPL_ORDER_SHIPPED"], ["thing1", "time2"]);
    assert_eq!(keys["TPL_PAYMENT_OK"], ["amount1", "thing2", "time3"]);
}

#[tokio::test]
async fn a_login_code_works_once() {
    let cfg = MockConfig::default();
    let fake = MockWechat::start(cfg.clone()).await.unwrap();
    let client = client(&fake);
    let (appid, secret) = mp();
    let code = fake.issue_login_code(3);

    let session = client.jscode2session(&appid, &secret, &code).await.unwrap();
    assert_eq!(session.openid, openid(mp_openid(3)));
    assert_eq!(session.unionid.map(|u| u.to_string()), unionid(3, &cfg));

    let again = client
        .jscode2session(&appid, &secret, &code)
        .await
        .unwrap_err();
    assert_eq!(again.errcode(), Some(40163));
    assert_eq!(again.class(), ErrClass::Permanent(PermanentKind::Code));
    let unknown = client
        .jscode2session(&appid, &secret, "no-such-code")
        .await
        .unwrap_err();
    assert_eq!(unknown.errcode(), Some(40029));
    assert_eq!(unknown.class(), ErrClass::Permanent(PermanentKind::Code));

    let fresh = fake.issue_login_code(4);
    let bad_secret = client
        .jscode2session(&appid, &SecretString::from("wrong"), &fresh)
        .await
        .unwrap_err();
    assert_eq!(bad_secret.errcode(), Some(40125));
    assert_eq!(bad_secret.class(), ErrClass::AccountBlocked);
    assert!(bad_secret.rid().is_some(), "{bad_secret}");
    // The refused call did not use the code up.
    client
        .jscode2session(&appid, &secret, &fresh)
        .await
        .unwrap();
}

#[tokio::test]
async fn refused_sends_are_classified_43004_40037_47003_40003() {
    let fake = MockWechat::start(MockConfig::default()).await.unwrap();
    let client = client(&fake);
    let token = oa_token(&client).await;

    fake.unsubscribe(0);
    let unfollowed = send(&client, &token, 0).await.unwrap_err();
    assert_eq!(unfollowed.errcode(), Some(43004));
    assert_eq!(
        unfollowed.class(),
        ErrClass::Permanent(PermanentKind::Recipient)
    );

    let unknown = Shipped::with(1, "TPL_NOPE", &[("thing1", "x")]);
    let err = client
        .send_template(&token, &unknown.message(None))
        .await
        .unwrap_err();
    assert_eq!(err.errcode(), Some(40037));
    assert_eq!(err.class(), ErrClass::Permanent(PermanentKind::Payload));

    let missing = Shipped::with(1, "TPL_ORDER_SHIPPED", &[("thing1", "x")]);
    let err = client
        .send_template(&token, &missing.message(None))
        .await
        .unwrap_err();
    assert_eq!(err.errcode(), Some(47003));
    assert_eq!(err.class(), ErrClass::Permanent(PermanentKind::Payload));
    assert!(err.message().contains("data.time2.value is empty"), "{err}");
    assert!(err.rid().is_some(), "{err}");

    let mut to_mp = Shipped::to(1);
    to_mp.to = openid(mp_openid(1));
    let err = client
        .send_template(&token, &to_mp.message(None))
        .await
        .unwrap_err();
    assert_eq!(err.errcode(), Some(40003));
    assert!(fake.sends().is_empty());
}

#[tokio::test]
async fn faults_of_the_fake_are_classified_right() {
    let fake = MockWechat::start(MockConfig::default()).await.unwrap();
    let client = client(&fake);
    let token = oa_token(&client).await;
    let cases = [
        (Fault::Errcode(45009), ErrClass::QuotaExhausted, Some(45009)),
        (Fault::Errcode(45011), ErrClass::Transient, Some(45011)),
        (Fault::Errcode(43117), ErrClass::Transient, Some(43117)),
        (Fault::Errcode(-1), ErrClass::Transient, Some(-1)),
        (Fault::Errcode(40001), ErrClass::TokenInvalid, Some(40001)),
        (Fault::HttpStatus(500), ErrClass::Transient, None),
        (Fault::HttpStatus(502), ErrClass::Transient, None),
        (Fault::DropConnection, ErrClass::Transient, None),
    ];
    for (fault, class, errcode) in cases {
        fake.set_faults(
            FaultRule::new(fault.clone())
                .on(Endpoint::TemplateSend)
                .times(1)
                .into(),
        );
        let err = send(&client, &token, 0).await.unwrap_err();
        assert_eq!(err.class(), class, "{fault:?}: {err}");
        assert_eq!(err.errcode(), errcode, "{fault:?}");
        // The rule fired once; the next send goes through.
        send(&client, &token, 0).await.unwrap();
    }
    // A fault on the token endpoint is transient too.
    fake.set_faults(
        FaultRule::new(Fault::HttpStatus(503))
            .on(Endpoint::StableToken)
            .times(1)
            .into(),
    );
    let (appid, secret) = oa();
    let err = client
        .stable_token(&appid, &secret, false)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrClass::Transient);
}

#[tokio::test]
async fn a_send_whose_answer_was_lost_is_not_sent_twice_when_retried_with_its_client_msg_id() {
    let fake = MockWechat::start(MockConfig::default()).await.unwrap();
    let client = client(&fake);
    let token = oa_token(&client).await;
    fake.set_faults(
        FaultRule::new(Fault::AcceptThenDrop)
            .on(Endpoint::TemplateSend)
            .times(1)
            .into(),
    );
    let shipped = Shipped::to(0);

    let lost = client
        .send_template(&token, &shipped.message(Some("job-42")))
        .await
        .unwrap_err();
    assert_eq!(lost.class(), ErrClass::Transient, "{lost}");
    let retried = client
        .send_template(&token, &shipped.message(Some("job-42")))
        .await
        .unwrap();

    assert_eq!(retried, fake.sends()[0].msgid as i64);
    assert_eq!(fake.sends().len(), 1);
    assert_eq!(fake.stats().duplicate_sends_dropped, 1);
}

#[tokio::test]
async fn a_slow_fake_is_a_timeout_and_transient() {
    let fake = MockWechat::start(MockConfig::default()).await.unwrap();
    let token = oa_token(&client(&fake)).await;
    let impatient = WechatClient::new(
        fake.base_url(),
        &ClientOptions {
            timeout: Duration::from_millis(200),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    fake.set_faults(
        FaultRule::new(Fault::Latency(Duration::from_secs(2)))
            .on(Endpoint::TemplateSend)
            .into(),
    );
    let err = send(&impatient, &token, 0).await.unwrap_err();
    assert!(matches!(err, WechatError::Transport { .. }), "{err:?}");
    assert_eq!(err.class(), ErrClass::Transient);
}

#[tokio::test]
async fn classic_tokens_overlap_then_the_superseded_one_answers_40001() {
    let fake = MockWechat::start(MockConfig {
        token_overlap: Duration::from_millis(500),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let client = client(&fake);
    let (appid, secret) = oa();
    let old = client.classic_token(&appid, &secret).await.unwrap().token;
    let new = client.classic_token(&appid, &secret).await.unwrap().token;
    assert_ne!(old, new, "every cgi-bin/token call mints a token");

    // Both work during the overlap…
    send(&client, &old, 0).await.unwrap();
    send(&client, &new, 1).await.unwrap();
    // …then the old one is refused as "not latest".
    eventually(
        Duration::from_secs(3),
        "the old classic token dies",
        || async { send(&client, &old, 2).await.is_err() },
    )
    .await;
    let err = send(&client, &old, 2).await.unwrap_err();
    assert_eq!(err.errcode(), Some(40001));
    assert_eq!(err.class(), ErrClass::TokenInvalid);
    send(&client, &new, 2).await.unwrap();
}

#[tokio::test]
async fn stable_tokens_are_shared_and_isolated_from_classic_ones() {
    let fake = MockWechat::start(MockConfig::default()).await.unwrap();
    let client = client(&fake);
    let (appid, secret) = oa();
    let first = client.stable_token(&appid, &secret, false).await.unwrap();
    let second = client.stable_token(&appid, &secret, false).await.unwrap();
    assert_eq!(
        first.token, second.token,
        "normal mode hands out the same token"
    );
    assert!(second.expires_in <= Duration::from_secs(7200));
    assert!(second.expires_in >= Duration::from_secs(7100));

    // Minting classic tokens does not touch the stable one.
    client.classic_token(&appid, &secret).await.unwrap();
    client.classic_token(&appid, &secret).await.unwrap();
    send(&client, &first.token, 0).await.unwrap();
    assert_eq!(fake.stats().tokens_minted_by(Endpoint::StableToken), 1);
}

#[tokio::test]
async fn the_mp_token_is_refused_by_the_oa_send_with_48001() {
    let fake = MockWechat::start(MockConfig::default()).await.unwrap();
    let client = client(&fake);
    let (appid, secret) = mp();
    let mp_token = client
        .stable_token(&appid, &secret, false)
        .await
        .unwrap()
        .token;
    let err = send(&client, &mp_token, 0).await.unwrap_err();
    assert_eq!(err.errcode(), Some(48001));
    assert_eq!(err.class(), ErrClass::AccountBlocked);
}

// ---------------------------------------------------------------------------------------------
// The token store with the fake

async fn store_on(fake: &MockWechat, db: &TestDb, source: TokenSource) -> (TokenStore, AppName) {
    let app = AppConfig {
        name: AppName::parse("mock").unwrap(),
        oa_appid: AppId::parse(MOCK_OA_APPID).unwrap(),
        oa_secret: SecretString::from(MOCK_OA_SECRET),
        mp_appid: Some(AppId::parse(MOCK_MP_APPID).unwrap()),
        mp_secret: Some(SecretString::from(MOCK_MP_SECRET)),
        callback_token: None,
        encoding_aes_key: None,
        encoding_aes_key_previous: None,
        mp_callback_token: None,
        mp_encoding_aes_key: None,
        rate_per_second: 100,
        token_source: source,
    };
    wxnotify_core::db::register_apps(&db.pool, std::slice::from_ref(&app))
        .await
        .unwrap();
    let store = TokenStore::new(
        db.another_pool(3).await,
        client(fake),
        std::slice::from_ref(&app),
    );
    (store, app.name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_token_recovers_with_one_refresh_when_the_fake_invalidates_every_token() {
    for (source, endpoint) in [
        (TokenSource::Stable, Endpoint::StableToken),
        (TokenSource::Classic, Endpoint::Token),
    ] {
        let fake = MockWechat::start(MockConfig::default()).await.unwrap();
        let db = TestDb::new().await;
        let (a, app) = store_on(&fake, &db, source).await;
        let (b, _) = store_on(&fake, &db, source).await;
        let client = client(&fake);
        for store in [&a, &b] {
            store.get(&app).await.unwrap();
        }
        assert_eq!(fake.stats().tokens_minted_by(endpoint), 1, "{source:?}");

        fake.invalidate_tokens();
        let mut tasks = JoinSet::new();
        for (i, store) in [&a, &b].into_iter().cycle().take(40).enumerate() {
            let (store, app, client) = (store.clone(), app.clone(), client.clone());
            tasks.spawn(async move {
                store
                    .with_token(&app, |token| {
                        let client = client.clone();
                        async move { send(&client, &token, i as u64 % 19).await }
                    })
                    .await
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap()
                .expect("every send succeeds after one refresh");
        }

        let stats = fake.stats();
        assert_eq!(
            stats.tokens_minted_by(endpoint),
            2,
            "{source:?}: one refresh"
        );
        assert_eq!(stats.sends_accepted, 40, "{source:?}");
        assert!(stats.answers_with(40001) >= 1, "{source:?}");
        assert_eq!(
            stats.calls_to(Endpoint::StableToken) + stats.calls_to(Endpoint::Token),
            2
        );
    }
}

#[tokio::test]
async fn the_store_moves_to_the_next_stable_token_before_the_current_one_expires() {
    // Tokens live 4 s; stable_token hands out the next one in the last 2 s. The store refreshes
    // a quarter of the life (1 s) before expiry, inside that window.
    let fake = MockWechat::start(MockConfig {
        token_ttl: Duration::from_secs(4),
        token_overlap: Duration::from_secs(2),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let db = TestDb::new().await;
    let (store, app) = store_on(&fake, &db, TokenSource::Stable).await;
    let client = client(&fake);
    let first = store.get(&app).await.unwrap();
    let started = Instant::now();

    let mut person = 0;
    eventually(Duration::from_secs(6), "a new token", || {
        let (store, app) = (store.clone(), app.clone());
        let first = first.clone();
        async move { store.get(&app).await.unwrap() != first }
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "before expiry: {:?}",
        started.elapsed()
    );
    // Every send in between used a working token.
    let current = store.get(&app).await.unwrap();
    for token in [&first, &current] {
        person += 1;
        send(&client, token, person).await.unwrap();
    }
    assert_eq!(fake.stats().tokens_minted_by(Endpoint::StableToken), 2);
}
