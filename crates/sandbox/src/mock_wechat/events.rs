//! Pushing events to a callback URL, as WeChat does to an OA's server URL (`docs/wechat.md` §7):
//! `subscribe`, `unsubscribe` and `TEMPLATESENDJOBFINISH` as XML or JSON (the OA console's data
//! format: [`MockConfig::push_format`](super::MockConfig::push_format), or per push with
//! [`deliver_as`](MockWechat::deliver_as)), signed with the callback token, and in safe mode
//! encrypted with the EncodingAESKey and signed again (`msg_signature`), the envelope in the same
//! format as its content (`{"ToUserName": …, "Encrypt": …}` for JSON, as in the official guide).
//!
//! A follow change is applied to the fake's own state before it is pushed (so `user/info` then
//! agrees with the event); a receipt can only be pushed for a send the fake accepted. Build an
//! [`EventPush`] once and [`deliver`](MockWechat::deliver) it several times to play WeChat's
//! retries (each delivery is signed afresh, with a new timestamp and nonce, like a retry).

use std::time::{SystemTime, UNIX_EPOCH};

use url::Url;

use super::identity::oa_openid;
use super::{MOCK_OA_APPID, MockWechat};
use wxnotify_core::domain::OpenId;
use wxnotify_core::wechat::crypto::{AesKey, msg_signature, signature};
use wxnotify_core::wechat::event::{Push, PushFormat, PushKind};

/// How long WeChat waits for the answer to a push before it gives up on that attempt.
pub(super) const PUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The fake OA's original id (`ToUserName` of every push).
pub const MOCK_OA_ORIGINAL_ID: &str = "gh_mockoa0000001";

/// How a push is sent.
#[derive(Debug, Clone)]
pub enum PushMode {
    /// Plaintext, signed with the callback token.
    Plain {
        /// The Token of the OA's server URL page.
        token: String,
    },
    /// Safe mode: the push encrypted with the EncodingAESKey, both signatures.
    Safe {
        /// The Token of the OA's server URL page.
        token: String,
        /// The 43-character EncodingAESKey.
        encoding_aes_key: String,
    },
}

/// An event the fake can push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MockEvent {
    /// Seeded person `person` follows the OA (now).
    Subscribe {
        /// The person.
        person: u64,
    },
    /// Seeded person `person` unfollows the OA.
    Unsubscribe {
        /// The person.
        person: u64,
    },
    /// The delivery result of an accepted send.
    TemplateSendJobFinish {
        /// The msgid the fake answered.
        msgid: u64,
        /// `success`, `failed:user block`, `failed: system failed` …
        status: String,
    },
}

/// One event, ready to be delivered (and re-delivered, as WeChat's retries).
#[derive(Debug, Clone)]
pub struct EventPush {
    /// The plaintext XML.
    pub xml: String,
    /// The same event as plaintext JSON.
    pub json: String,
    /// Its `CreateTime`.
    pub create_time: i64,
    /// The person's OA openid (`FromUserName`).
    pub from: String,
}

/// What the callback answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushAnswer {
    /// HTTP status.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

impl MockWechat {
    /// Builds `event` as WeChat would push it now, applying a follow change to the fake first.
    /// Fails for a receipt of a msgid the fake never accepted (or no longer remembers).
    pub fn event(&self, event: &MockEvent) -> anyhow::Result<EventPush> {
        let create_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let (from, kind) = match event {
            MockEvent::Subscribe { person } => {
                self.subscribe(*person);
                (oa_openid(*person), PushKind::Subscribe { event_key: None })
            }
            MockEvent::Unsubscribe { person } => {
                self.unsubscribe(*person);
                (oa_openid(*person), PushKind::Unsubscribe)
            }
            MockEvent::TemplateSendJobFinish { msgid, status } => {
                let send = self
                    .sends()
                    .into_iter()
                    .find(|s| s.msgid == *msgid)
                    .ok_or_else(|| {
                        anyhow::anyhow!("the fake accepted no send with msgid {msgid}")
                    })?;
                let kind = PushKind::TemplateSendJobFinish {
                    msg_id: i64::try_from(*msgid)?,
                    status: status.clone(),
                };
                (send.touser, kind)
            }
        };
        let push = Push {
            to_user_name: MOCK_OA_ORIGINAL_ID.into(),
            from: OpenId::parse(from.clone())?,
            create_time,
            kind,
        };
        Ok(EventPush {
            xml: push.to_xml(),
            json: push.to_json(),
            create_time,
            from,
        })
    }

    /// Builds `event` and delivers it once, in the fake's [`push_format`](super::MockConfig::push_format).
    pub async fn push_event(
        &self,
        callback: &Url,
        event: &MockEvent,
        mode: &PushMode,
    ) -> anyhow::Result<PushAnswer> {
        let push = self.event(event)?;
        self.deliver(callback, &push, mode).await
    }

    /// POSTs `push` to `callback` in the fake's [`push_format`](super::MockConfig::push_format),
    /// signed (and encrypted in safe mode) as WeChat does.
    pub async fn deliver(
        &self,
        callback: &Url,
        push: &EventPush,
        mode: &PushMode,
    ) -> anyhow::Result<PushAnswer> {
        self.deliver_as(callback, push, mode, self.config().push_format)
            .await
    }

    /// POSTs `push` to `callback` in `format`, whatever the fake's configured format.
    pub async fn deliver_as(
        &self,
        callback: &Url,
        push: &EventPush,
        mode: &PushMode,
        format: PushFormat,
    ) -> anyhow::Result<PushAnswer> {
        deliver_body(callback, push.body(format), &push.from, mode, format).await
    }
}

impl EventPush {
    /// The plaintext push in `format`.
    pub fn body(&self, format: PushFormat) -> &str {
        match format {
            PushFormat::Xml => &self.xml,
            PushFormat::Json => &self.json,
        }
    }
}

/// POSTs any XML to `callback` as a signed push (tests use it for hand-made or tampered bodies).
pub async fn deliver_xml(
    callback: &Url,
    xml: &str,
    from: &str,
    mode: &PushMode,
) -> anyhow::Result<PushAnswer> {
    deliver_body(callback, xml, from, mode, PushFormat::Xml).await
}

/// POSTs any plaintext `body` to `callback` as a signed push; in safe mode the encrypted
/// envelope is written in `format` (tests use it for hand-made or tampered bodies).
pub async fn deliver_body(
    callback: &Url,
    body: &str,
    from: &str,
    mode: &PushMode,
    format: PushFormat,
) -> anyhow::Result<PushAnswer> {
    let sender = Sender {
        appid: MOCK_OA_APPID,
        original_id: MOCK_OA_ORIGINAL_ID,
    };
    deliver_signed(callback, body, from, mode, format, sender).await
}

/// Which fake app a push comes from: the appid sealed inside the encrypted text and the
/// original id of the envelope.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sender {
    pub(super) appid: &'static str,
    pub(super) original_id: &'static str,
}

/// POSTs `body` to `callback`, signed (and in safe mode encrypted) for `sender`.
pub(super) async fn deliver_signed(
    callback: &Url,
    body: &str,
    from: &str,
    mode: &PushMode,
    format: PushFormat,
    sender: Sender,
) -> anyhow::Result<PushAnswer> {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        .to_string();
    let nonce = rand::random::<u32>().to_string();
    let mut url = callback.clone();
    let body = match mode {
        PushMode::Plain { token } => {
            url.query_pairs_mut()
                .append_pair("signature", &signature(token, &timestamp, &nonce))
                .append_pair("timestamp", &timestamp)
                .append_pair("nonce", &nonce)
                .append_pair("openid", from);
            body.to_owned()
        }
        PushMode::Safe {
            token,
            encoding_aes_key,
        } => {
            let key = AesKey::from_encoding_aes_key(encoding_aes_key)?;
            let encrypt = key.encrypt(body.as_bytes(), sender.appid);
            url.query_pairs_mut()
                .append_pair("signature", &signature(token, &timestamp, &nonce))
                .append_pair("timestamp", &timestamp)
                .append_pair("nonce", &nonce)
                .append_pair("openid", from)
                .append_pair("encrypt_type", "aes")
                .append_pair(
                    "msg_signature",
                    &msg_signature(token, &timestamp, &nonce, &encrypt),
                );
            format.envelope(sender.original_id, &encrypt)
        }
    };
    let response = reqwest::Client::new()
        .post(url)
        .timeout(PUSH_TIMEOUT)
        .header("content-type", format.content_type())
        .body(body)
        .send()
        .await?;
    Ok(PushAnswer {
        status: response.status().as_u16(),
        body: response.text().await?,
    })
}
