//! `GET|POST /wechat/mp-callback` (default app) and `/wechat/mp-callback/{app}`: the Mini
//! Program's message push URL, where WeChat pushes what happens to subscribe messages
//! (`docs/wechat.md` §14): `subscribe_msg_popup_event` (the person's choices in the popup),
//! `subscribe_msg_change_event` (a later cancellation in the settings) and
//! `subscribe_msg_sent_event` (the final result of a send).
//!
//! The rules are the OA callback's, by the same code ([`crate::edge::callback`]): the
//! `signature` checked with the Mini Program's own Token (`WXNOTIFY_MP_CALLBACK_TOKEN`), the
//! timestamp window and the nonce cache against replays, the handshake echoing `echostr`, XML or
//! JSON told by the body, safe mode (`encrypt_type=aes`, `msg_signature`, decrypted with
//! `WXNOTIFY_MP_ENCODING_AES_KEY` and the Mini Program's appid checked inside), and a plaintext
//! push refused while a key is configured. Only the body differs: one push names several
//! templates (`List`), see [`wxnotify_core::wechat::mp_event`].
//!
//! Each template of a push is claimed by its key and applied in one transaction, so a WeChat
//! retry changes nothing: choices go to the grant ledger
//! ([`wxnotify_services::subscriptions`]), results to the deliveries ledger
//! ([`wxnotify_services::ledger::receipts`]). The answer is `success` (plaintext) or an empty
//! body (safe mode).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::DateTime;

use crate::edge::callback::{
    CallbackQuery, PushUrl, check_push_signature, decrypt_push, not_replayed, safe_mode,
};
use crate::error::HttpError;
use crate::{AppEntry, AppState};
use wxnotify_core::domain::AppName;
use wxnotify_core::wechat::event::PushFormat;
use wxnotify_core::wechat::mp_event::{
    self, CHANGE_EVENT, MpPush, MpPushKind, POPUP_EVENT, SENT_EVENT,
};
use wxnotify_services::ledger::receipts;
use wxnotify_services::subscriptions::{Choice, Recorded, Source, record_choice};

/// The Mini Program's push URL of `entry`.
fn push_url(entry: &AppEntry) -> PushUrl<'_> {
    PushUrl {
        app: &entry.config.name,
        token: entry.config.mp_callback_token.as_ref(),
        keys: entry.mp_aes_keys.as_ref(),
        appid: entry.config.mp_appid.as_ref().map(|a| a.as_str()),
        token_name: "Mini Program callback token",
        token_variable: "WXNOTIFY_MP_CALLBACK_TOKEN",
    }
}

/// GET `/wechat/mp-callback`: the handshake of the default app.
pub async fn verify_default(
    State(state): State<AppState>,
    Query(query): Query<CallbackQuery>,
) -> Result<String, HttpError> {
    let app = state.app_or_default(None)?;
    handshake(&state, &app, &query).await
}

/// GET `/wechat/mp-callback/{app}`: the handshake.
pub async fn verify(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(query): Query<CallbackQuery>,
) -> Result<String, HttpError> {
    let app = state.app_or_default(Some(&app))?;
    handshake(&state, &app, &query).await
}

/// POST `/wechat/mp-callback`: a push to the default app.
pub async fn push_default(
    State(state): State<AppState>,
    Query(query): Query<CallbackQuery>,
    body: Bytes,
) -> Result<Response, HttpError> {
    let app = state.app_or_default(None)?;
    receive(&state, &app, &query, &body).await
}

/// POST `/wechat/mp-callback/{app}`: a push.
pub async fn push(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(query): Query<CallbackQuery>,
    body: Bytes,
) -> Result<Response, HttpError> {
    let app = state.app_or_default(Some(&app))?;
    receive(&state, &app, &query, &body).await
}

async fn handshake(
    state: &AppState,
    app: &AppName,
    query: &CallbackQuery,
) -> Result<String, HttpError> {
    let entry = state.entry(app)?;
    let ts = check_push_signature(state, push_url(entry), query)?;
    let echostr = query
        .echostr
        .clone()
        .ok_or_else(|| HttpError::BadRequest("echostr is missing".into()))?;
    not_replayed(state, app, ts, query, "GET", echostr.as_bytes()).await?;
    tracing::info!(app = %app, "Mini Program push URL handshake verified");
    Ok(echostr)
}

#[tracing::instrument(skip_all, fields(app = %app, event, format))]
async fn receive(
    state: &AppState,
    app: &AppName,
    query: &CallbackQuery,
    raw: &[u8],
) -> Result<Response, HttpError> {
    let entry = state.entry(app)?;
    let url = push_url(entry);
    let ts = check_push_signature(state, url, query)?;
    let body = std::str::from_utf8(raw)
        .map_err(|_| HttpError::BadRequest("the body is not UTF-8".into()))?;
    let safe = safe_mode(state, url, query)?;
    let format = PushFormat::detect(body).map_err(|e| HttpError::BadRequest(e.to_string()))?;
    tracing::Span::current().record("format", format.as_str());
    let push = if safe {
        let message = decrypt_push(url, query, body)?;
        mp_event::parse_mp_push(&message)
    } else {
        mp_event::parse_mp_push(body)
    }
    .map_err(|e| HttpError::BadRequest(e.to_string()))?;
    not_replayed(state, app, ts, query, "POST", raw).await?;
    tracing::Span::current().record("event", push.kind.event());
    let applied = apply(state, app, &push).await?;
    metrics::counter!("wxnotify_mp_callback_events_total", "app" => app.to_string(), "format" => format.as_str(), "event" => event_label(&push.kind), "outcome" => if applied { "applied" } else { "duplicate" }).increment(1);
    Ok(if safe {
        StatusCode::OK.into_response()
    } else {
        (StatusCode::OK, "success").into_response()
    })
}

fn event_label(kind: &MpPushKind) -> &'static str {
    match kind {
        MpPushKind::Popup(_) => POPUP_EVENT,
        MpPushKind::Change(_) => CHANGE_EVENT,
        MpPushKind::Sent(_) => SENT_EVENT,
        MpPushKind::Other { .. } => "other",
    }
}

/// Applies every template of the push in one transaction; `false` = all of it was a retry.
async fn apply(state: &AppState, app: &AppName, push: &MpPush) -> Result<bool, HttpError> {
    let openid = push.from.as_str();
    let mut tx = state.pool().begin().await?;
    let mut applied = false;
    match &push.kind {
        MpPushKind::Popup(choices) | MpPushKind::Change(choices) => {
            let event = event_label(&push.kind);
            // In template order, as the Mini Program's reports are, so that two transactions
            // never take the same people's rows in opposite orders.
            let mut choices: Vec<_> = choices.iter().collect();
            choices.sort_by(|a, b| a.template_id.cmp(&b.template_id));
            for choice in choices {
                let Some(parsed) = Choice::parse(&choice.status) else {
                    tracing::warn!(template_id = %choice.template_id, status = %choice.status, "unknown subscribe status; ignored");
                    continue;
                };
                // Only cancellations are pushed as changes; a change never adds a grant.
                if event == CHANGE_EVENT && parsed == Choice::Accept {
                    tracing::info!(template_id = %choice.template_id, "a change event that accepts; ignored (a change adds no grant)");
                    continue;
                }
                let source = Source::Event {
                    create_time: push.create_time,
                    event,
                };
                let recorded =
                    record_choice(&mut tx, app, openid, &choice.template_id, parsed, source)
                        .await?;
                applied |= recorded != Recorded::Retry;
                tracing::info!(mp_openid = %openid, template_id = %choice.template_id, status = %choice.status, recorded = ?recorded, "subscribe choice from WeChat");
            }
        }
        MpPushKind::Sent(results) => {
            let at = DateTime::from_timestamp(push.create_time, 0).unwrap_or_else(chrono::Utc::now);
            for result in results {
                let receipt = receipts::SubscribeReceipt {
                    mp_openid: openid,
                    template_id: &result.template_id,
                    msg_id: result.msg_id,
                    create_time: push.create_time,
                    error_code: result.error_code,
                    status: &result.error_status,
                    at,
                };
                let outcome = receipts::record_subscribe_receipt(&mut tx, app, &receipt).await?;
                applied |= outcome != receipts::SubscribeReceiptOutcome::Retry;
                tracing::info!(mp_openid = %openid, template_id = %result.template_id, msg_id = ?result.msg_id, error_code = result.error_code, outcome = ?outcome, "subscribe message receipt");
            }
        }
        MpPushKind::Other { name } => {
            tracing::debug!(event = %name, "a Mini Program push wxnotify does not act on");
        }
    }
    tx.commit().await?;
    Ok(applied)
}
