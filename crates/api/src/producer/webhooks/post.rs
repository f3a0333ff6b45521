//! One post of one event: the body (the event's payload and its `event_id`), the Standard
//! Webhooks headers, and the receiver's answer as an outcome.

use serde_json::Value;

use crate::producer::webhooks::outbox::Claimed;
use crate::producer::webhooks::signature::{
    EVENT_HEADER, ID_HEADER, LEGACY_DELIVERY_HEADER, LEGACY_SIGNATURE_HEADER, SIGNATURE_HEADER,
    TIMESTAMP_HEADER, sign, sign_legacy,
};

/// The body posted for `event`: its payload with `event_id` (the `webhook-id`) added.
pub(super) fn body(event: &Claimed) -> Result<Vec<u8>, String> {
    let mut payload = event.payload.clone();
    if let Value::Object(fields) = &mut payload {
        fields.insert("event_id".into(), Value::String(event.webhook_id()));
    }
    serde_json::to_vec(&payload).map_err(|e| e.to_string())
}

/// Posts `event` signed with `secret` (opened); `Err` with a reason that never holds the URL.
/// The client's timeout bounds the post: a receiver that does not answer in time is a failed
/// attempt, retried on the schedule.
pub(super) async fn post(
    client: &reqwest::Client,
    event: &Claimed,
    secret: &str,
) -> Result<(), String> {
    let body = body(event)?;
    let id = event.webhook_id();
    let now = chrono::Utc::now().timestamp();
    let response = client
        .post(&event.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(ID_HEADER, &id)
        .header(TIMESTAMP_HEADER, now.to_string())
        .header(SIGNATURE_HEADER, sign(secret, &id, now, &body))
        .header(EVENT_HEADER, &event.event)
        .header(LEGACY_SIGNATURE_HEADER, sign_legacy(secret, now, &body))
        .header(LEGACY_DELIVERY_HEADER, event.id.to_string())
        .body(body)
        .send()
        .await
        // Without the URL: it may hold a token of the receiver's.
        .map_err(|e| {
            if e.is_timeout() {
                "the receiver did not answer in time".to_owned()
            } else {
                format!("request failed: {}", e.without_url())
            }
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered HTTP {}", status.as_u16()))
    }
}
