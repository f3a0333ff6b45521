//! The Mini Program's side of subscribe messages in the fake WeChat (`docs/wechat.md` §14): a
//! person choosing in the `wx.requestSubscribeMessage` popup, cancelling later in the
//! settings, and the `subscribe_msg_sent_event` after a send. Each changes the fake's grants
//! first, then is pushed to the Mini Program's message push URL
//! ([`MockConfig::mp_callback`](super::MockConfig::mp_callback), or
//! [`MockWechat::set_mp_callback`]) signed, and in safe mode encrypted, exactly like the OA's
//! pushes (with the Mini Program's appid and original id), in its XML or JSON format. A push that
//! got no answer (an error, a timeout after 5 s, or an HTTP 5xx) is sent again, up to
//! `mp_push_retries` times, as WeChat does; each attempt is signed afresh.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::config::MpCallback;
use super::events::{PushAnswer, Sender, deliver_signed};
use super::grants::MockGrant;
use super::identity::mp_openid;
use super::state::Mock;
use super::subscribe::AcceptedSubscribe;
use super::{MOCK_MP_APPID, MockWechat};
use wxnotify_core::domain::OpenId;
use wxnotify_core::wechat::mp_event::{MpPush, MpPushKind, SentResult, SubscribeChoice};

/// The fake Mini Program's original id (`ToUserName` of its pushes).
pub const MOCK_MP_ORIGINAL_ID: &str = "gh_mockmp0000001";

const SENDER: Sender = Sender {
    appid: MOCK_MP_APPID,
    original_id: MOCK_MP_ORIGINAL_ID,
};

/// One Mini Program push, ready to be delivered (and re-delivered, as WeChat's retries).
#[derive(Debug, Clone)]
pub struct MpEventPush {
    /// The event.
    pub push: MpPush,
}

/// What became of a push and its retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MpPushReport {
    /// Whether an MP callback was configured (nothing was pushed otherwise).
    pub pushed: bool,
    /// Deliveries made (1 + retries).
    pub attempts: u32,
    /// The last answer, if any came.
    pub status: Option<u16>,
    /// The last answer's body, or the last error.
    pub body: String,
    /// Whether WeChat would count the push as answered (`success` or an empty body, HTTP 2xx).
    pub answered: bool,
}

/// A person's choices in one popup, template id → `accept`, `reject`, `ban`, `filter`,
/// `acceptWithAudio` (the object `wx.requestSubscribeMessage` resolves with).
pub type PopupResults = BTreeMap<String, String>;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

impl Mock {
    /// The popup: applies each choice to the grants (unknown templates and statuses are
    /// refused before anything changes) and builds the popup event.
    pub(super) fn popup(&self, person: u64, results: &PopupResults) -> anyhow::Result<MpEventPush> {
        let mut list = Vec::new();
        for (template_id, status) in results {
            let template = self.mp_templates.find(template_id).ok_or_else(|| {
                anyhow::anyhow!("the fake Mini Program has no subscribe template {template_id}")
            })?;
            if !matches!(
                status.as_str(),
                "accept" | "acceptWithAudio" | "reject" | "ban" | "filter"
            ) {
                anyhow::bail!(
                    "{status} is not a popup result (accept, reject, ban, filter, acceptWithAudio)"
                );
            }
            list.push((template, status.clone()));
        }
        anyhow::ensure!(!list.is_empty(), "a popup names at least one template");
        let choices = list
            .into_iter()
            .map(|(template, status)| {
                self.grants
                    .choose(person, &template.id, &status, template.long_term);
                SubscribeChoice {
                    template_id: template.id,
                    status,
                    popup_scene: Some("0".into()),
                }
            })
            .collect();
        self.mp_push(person, MpPushKind::Popup(choices))
    }

    /// A later cancellation in the settings: the template's state becomes `reject`.
    pub(super) fn cancel(&self, person: u64, template_id: &str) -> anyhow::Result<MpEventPush> {
        let template = self.mp_templates.find(template_id).ok_or_else(|| {
            anyhow::anyhow!("the fake Mini Program has no subscribe template {template_id}")
        })?;
        self.grants
            .choose(person, &template.id, "reject", template.long_term);
        let choice = SubscribeChoice {
            template_id: template.id,
            status: "reject".into(),
            popup_scene: None,
        };
        self.mp_push(person, MpPushKind::Change(vec![choice]))
    }

    fn mp_push(&self, person: u64, kind: MpPushKind) -> anyhow::Result<MpEventPush> {
        Ok(MpEventPush {
            push: MpPush {
                to_user_name: MOCK_MP_ORIGINAL_ID.into(),
                from: OpenId::parse(mp_openid(person))?,
                create_time: now(),
                kind,
            },
        })
    }

    /// The configured push URL, if any.
    pub(super) fn mp_callback(&self) -> Option<MpCallback> {
        self.mp_callback.read().clone()
    }

    /// Pushes `subscribe_msg_sent_event` for an accepted send, `mp_receipt_delay` later, in the
    /// background (when a callback is configured and receipts are on).
    pub(super) fn schedule_sent_receipt(&self, send: &AcceptedSubscribe) {
        let Some(callback) = self.mp_callback().filter(|_| self.cfg.mp_sent_receipts) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(from) = OpenId::parse(send.touser.clone()) else {
            return;
        };
        let push = MpPush {
            to_user_name: MOCK_MP_ORIGINAL_ID.into(),
            from,
            create_time: now(),
            kind: MpPushKind::Sent(vec![SentResult {
                template_id: send.template_id.clone(),
                msg_id: send.msgid.and_then(|id| i64::try_from(id).ok()),
                error_code: 0,
                error_status: "success".into(),
            }]),
        };
        let (delay, retries, spacing) = (
            self.cfg.mp_receipt_delay,
            self.cfg.mp_push_retries,
            self.cfg.mp_push_retry_delay,
        );
        runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            let report = push_with_retries(&callback, &push, retries, spacing).await;
            if !report.answered {
                tracing::warn!(body = %report.body, "mock-wechat: a subscribe_msg_sent_event push went unanswered");
            }
        });
    }

    /// Pushes `push` to the MP callback, retried while unanswered (nothing without a callback).
    pub(super) async fn push_mp(&self, push: &MpEventPush) -> MpPushReport {
        match self.mp_callback() {
            Some(callback) => {
                push_with_retries(
                    &callback,
                    &push.push,
                    self.cfg.mp_push_retries,
                    self.cfg.mp_push_retry_delay,
                )
                .await
            }
            None => MpPushReport {
                pushed: false,
                attempts: 0,
                status: None,
                body: String::new(),
                answered: false,
            },
        }
    }
}

/// Delivers `push` once to `callback`.
async fn deliver_once(callback: &MpCallback, push: &MpPush) -> anyhow::Result<PushAnswer> {
    let body = push.render(callback.format);
    deliver_signed(
        &callback.url,
        &body,
        push.from.as_str(),
        &callback.mode,
        callback.format,
        SENDER,
    )
    .await
}

/// Delivers `push`, then again while it goes unanswered, up to `retries` more times.
async fn push_with_retries(
    callback: &MpCallback,
    push: &MpPush,
    retries: u32,
    spacing: std::time::Duration,
) -> MpPushReport {
    let mut report = MpPushReport {
        pushed: true,
        attempts: 0,
        status: None,
        body: String::new(),
        answered: false,
    };
    for attempt in 0..=retries {
        if attempt > 0 {
            tokio::time::sleep(spacing).await;
        }
        report.attempts += 1;
        match deliver_once(callback, push).await {
            Ok(answer) => {
                let retry = answer.status >= 500;
                report.answered = (200..300).contains(&answer.status)
                    && matches!(answer.body.trim(), "" | "success");
                report.status = Some(answer.status);
                report.body = answer.body;
                if !retry {
                    break;
                }
            }
            Err(e) => {
                report.status = None;
                report.body = format!("{e:#}");
            }
        }
    }
    report
}

impl MockWechat {
    /// Sets (or, with `None`, removes) the Mini Program's message push URL.
    pub fn set_mp_callback(&self, callback: Option<MpCallback>) {
        *self.mock.mp_callback.write() = callback;
    }

    /// Person `person` answers the subscribe popup with `results`: the fake's grants change at
    /// once, then `subscribe_msg_popup_event` is pushed to the MP callback, retried while
    /// unanswered. Fails for an unknown template or status (nothing changes then).
    pub async fn subscribe_popup(
        &self,
        person: u64,
        results: &PopupResults,
    ) -> anyhow::Result<MpPushReport> {
        let push = self.mock.popup(person, results)?;
        Ok(self.mock.push_mp(&push).await)
    }

    /// Like [`subscribe_popup`](Self::subscribe_popup) but only builds the event (the grants
    /// change): deliver it with [`deliver_mp`](Self::deliver_mp), as often as WeChat's retries.
    pub fn subscribe_popup_event(
        &self,
        person: u64,
        results: &PopupResults,
    ) -> anyhow::Result<MpEventPush> {
        self.mock.popup(person, results)
    }

    /// Person `person` cancels `template_id` in the settings: the fake's grant is refused from
    /// now on and `subscribe_msg_change_event` is pushed, retried while unanswered.
    pub async fn cancel_subscription(
        &self,
        person: u64,
        template_id: &str,
    ) -> anyhow::Result<MpPushReport> {
        let push = self.mock.cancel(person, template_id)?;
        Ok(self.mock.push_mp(&push).await)
    }

    /// Like [`cancel_subscription`](Self::cancel_subscription) but only builds the event.
    pub fn cancel_subscription_event(
        &self,
        person: u64,
        template_id: &str,
    ) -> anyhow::Result<MpEventPush> {
        self.mock.cancel(person, template_id)
    }

    /// Delivers `push` once to the MP callback (no retry): a test plays WeChat's retries by
    /// calling it again. Fails when no MP callback is configured.
    pub async fn deliver_mp(&self, push: &MpEventPush) -> anyhow::Result<PushAnswer> {
        let callback = self
            .mock
            .mp_callback()
            .ok_or_else(|| anyhow::anyhow!("no Mini Program callback is configured"))?;
        deliver_once(&callback, &push.push).await
    }

    /// Pushes the `subscribe_msg_sent_event` of `send` (one of [`subscribe_sends`](Self::subscribe_sends))
    /// now, with `error_code` / `error_status` (`0` / `success` for a delivery), retried while
    /// unanswered.
    pub async fn push_sent_receipt(
        &self,
        send: &AcceptedSubscribe,
        error_code: i64,
        error_status: &str,
    ) -> anyhow::Result<MpPushReport> {
        let push = MpEventPush {
            push: MpPush {
                to_user_name: MOCK_MP_ORIGINAL_ID.into(),
                from: OpenId::parse(send.touser.clone())?,
                create_time: now(),
                kind: MpPushKind::Sent(vec![SentResult {
                    template_id: send.template_id.clone(),
                    msg_id: send.msgid.map(i64::try_from).transpose()?,
                    error_code,
                    error_status: error_status.into(),
                }]),
            },
        };
        Ok(self.mock.push_mp(&push).await)
    }

    /// What every person holds (or only `person`), as the fake counts it.
    pub fn grants(&self, person: Option<u64>) -> Vec<MockGrant> {
        self.mock.grants.list(person)
    }

    /// The accepted subscribe messages, oldest first (at most `max_recorded_sends`).
    pub fn subscribe_sends(&self) -> Vec<AcceptedSubscribe> {
        self.mock.subscribes.sends()
    }

    /// Subscribe messages accepted per person (exact, whatever `max_recorded_sends`).
    pub fn subscribe_sends_per_person(&self) -> BTreeMap<u64, u64> {
        self.mock.subscribes.per_person()
    }

    /// Adds (or replaces) a subscribe template of the Mini Program.
    pub fn add_mp_template(&self, template: super::MockMpTemplate) {
        self.mock.mp_templates.add(template);
    }

    /// Deletes a subscribe template (sends with it answer 40037); true if it existed.
    pub fn delete_mp_template(&self, id: &str) -> bool {
        self.mock.mp_templates.delete(id)
    }
}
