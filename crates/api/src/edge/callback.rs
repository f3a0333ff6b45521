//! `GET|POST /wechat/callback` (default app) and `/wechat/callback/{app}`: the OA server URL.
//!
//! Every request's `signature` is checked against the app's callback token first. A GET with a
//! good signature is the URL handshake: `echostr` is echoed verbatim (plaintext even in safe
//! mode). A POST is a push, XML or JSON (the OA console's data format, told apart by the body:
//! [`PushFormat::detect`]), plaintext or safe mode (`encrypt_type=aes`: `msg_signature` checked,
//! `Encrypt` decrypted with the EncodingAESKey, or with the previous one during a key change, and
//! the appid inside checked). Both formats go through the same checks and the same handling. The
//! event is then claimed and applied in one transaction (a WeChat retry finds its key claimed and
//! changes nothing) and the answer is `success` (plaintext) or an empty body (safe mode), well
//! within WeChat's 5 seconds: the slow part, `user/info` for a new follower's unionid, runs in a
//! background task after the answer. A bad signature, a bad AES payload or a malformed body is
//! refused with a 4xx and stores nothing; an event wxnotify does not act on is acknowledged.
//!
//! The answer has no format to match: the official message-encryption guide says that where an
//! event asks for no particular reply, `success` or an empty string is the answer, and needs no
//! encryption; only other content would have to be encrypted (with the key that opened the push,
//! [`AesKeys::get`](wxnotify_core::wechat::crypto::AesKeys::get)). wxnotify sends no passive replies, so
//! its answers are the same for XML and JSON, whichever key opened the push.
//!
//! Replays are refused by [`crate::edge::replay`]: a `timestamp` outside the window, or a
//! `(timestamp, nonce)` already used for another request, gets 403. With an EncodingAESKey
//! configured, a POST without `encrypt_type=aes` (a downgrade to plaintext, whose signature does
//! not cover the body) gets 403 unless plaintext is explicitly allowed
//! (`--callback-allow-plaintext`, for WeChat's compatible mode while switching).
//!
//! `wxnotify_callback_decrypted_total{key="current"|"previous"}` counts the safe-mode pushes each
//! key opened (a push opened with the previous key is also logged at info): once `previous`
//! stops moving, the previous key can be removed.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::edge::replay::{self, ReplayError};
use crate::edge::store;
use crate::error::HttpError;
use crate::{AppEntry, AppState};
use wxnotify_core::domain::{AppName, OpenId};
use wxnotify_core::wechat::crypto::{KeySlot, msg_signature, signature, signatures_match};
use wxnotify_core::wechat::event::{self, Push, PushFormat, PushKind};
use wxnotify_core::wechat::{ErrClass, TokenError};
use wxnotify_services::followers::store as followers;

/// The query string WeChat sends.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    /// `sha1(sort(token, timestamp, nonce))`.
    pub signature: Option<String>,
    /// Unix seconds.
    pub timestamp: Option<String>,
    /// Random.
    pub nonce: Option<String>,
    /// The handshake's challenge.
    pub echostr: Option<String>,
    /// `aes` in safe (and compatible) mode.
    pub encrypt_type: Option<String>,
    /// Safe mode's signature over the `Encrypt` text too.
    pub msg_signature: Option<String>,
}

/// GET `/wechat/callback`: the handshake of the default app.
pub async fn verify_default(
    State(state): State<AppState>,
    Query(query): Query<CallbackQuery>,
) -> Result<String, HttpError> {
    let app = state.app_or_default(None)?;
    handshake(&state, &app, &query).await
}

/// GET `/wechat/callback/{app}`: the handshake.
pub async fn verify(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(query): Query<CallbackQuery>,
) -> Result<String, HttpError> {
    let app = state.app_or_default(Some(&app))?;
    handshake(&state, &app, &query).await
}

/// POST `/wechat/callback`: a push to the default app.
pub async fn push_default(
    State(state): State<AppState>,
    Query(query): Query<CallbackQuery>,
    body: Bytes,
) -> Result<Response, HttpError> {
    let app = state.app_or_default(None)?;
    receive(&state, &app, &query, &body).await
}

/// POST `/wechat/callback/{app}`: a push.
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
    let ts = check_signature(state, entry, query)?;
    let echostr = query
        .echostr
        .clone()
        .ok_or_else(|| HttpError::BadRequest("echostr is missing".into()))?;
    not_replayed(state, app, ts, query, "GET", echostr.as_bytes()).await?;
    tracing::info!(app = %app, "callback URL handshake verified");
    Ok(echostr)
}

#[tracing::instrument(skip_all, fields(app = %app, event, format))]
async fn receive(
    state: &AppState,
    app: &AppName,
    query: &CallbackQuery,
    body: &[u8],
) -> Result<Response, HttpError> {
    let entry = state.entry(app)?;
    let ts = check_signature(state, entry, query)?;
    let raw = body;
    let body = std::str::from_utf8(body)
        .map_err(|_| HttpError::BadRequest("the body is not UTF-8".into()))?;
    let safe = safe_mode(state, PushUrl::oa(entry), query)?;
    // Told by the body, not by `Content-Type` (which WeChat does not document for pushes).
    let format = PushFormat::detect(body).map_err(|e| HttpError::BadRequest(e.to_string()))?;
    tracing::Span::current().record("format", format.as_str());
    let push = if safe {
        decrypt(entry, query, body)?
    } else {
        event::parse_push(body).map_err(|e| HttpError::BadRequest(e.to_string()))?
    };
    not_replayed(state, app, ts, query, "POST", raw).await?;
    let key = push.dedupe_key();
    tracing::Span::current().record("event", key.as_str());
    let applied = apply(state, app, &push).await?;
    let outcome = if applied { "applied" } else { "duplicate" };
    metrics::counter!("wxnotify_callback_events_total", "app" => app.to_string(), "format" => format.as_str(), "outcome" => outcome).increment(1);
    tracing::info!(from = %push.from, create_time = push.create_time, outcome, "callback push");
    if applied && matches!(push.kind, PushKind::Subscribe { .. }) {
        fetch_unionid(state, app.clone(), push.from.clone());
    }
    Ok(if safe {
        // Safe mode: an empty body needs no encryption, in either format (see the module doc).
        StatusCode::OK.into_response()
    } else {
        (StatusCode::OK, "success").into_response()
    })
}

/// Whose push URL a request came to: the OA's server URL or the Mini Program's message push
/// URL. Each has its own Token, EncodingAESKey and appid; the rules are the same.
#[derive(Clone, Copy)]
pub(crate) struct PushUrl<'a> {
    /// The app.
    pub(crate) app: &'a AppName,
    /// The Token, if configured.
    pub(crate) token: Option<&'a secrecy::SecretString>,
    /// The safe-mode keys, if an EncodingAESKey is configured.
    pub(crate) keys: Option<&'a wxnotify_core::wechat::crypto::AesKeys>,
    /// The appid sealed inside an encrypted push (OA or Mini Program).
    pub(crate) appid: Option<&'a str>,
    /// What to call it in errors: `callback token`, `Mini Program callback token`.
    pub(crate) token_name: &'static str,
    /// The variable that configures the token (`WXNOTIFY_CALLBACK_TOKEN` …), for the errors.
    pub(crate) token_variable: &'static str,
}

impl<'a> PushUrl<'a> {
    /// The OA's server URL of `entry`.
    pub(crate) fn oa(entry: &'a AppEntry) -> PushUrl<'a> {
        PushUrl {
            app: &entry.config.name,
            token: entry.config.callback_token.as_ref(),
            keys: entry.aes_keys.as_ref(),
            appid: Some(entry.config.oa_appid.as_str()),
            token_name: "callback token",
            token_variable: "WXNOTIFY_CALLBACK_TOKEN",
        }
    }
}

/// Checks the signature, then the timestamp window; returns the timestamp.
fn check_signature(
    state: &AppState,
    entry: &AppEntry,
    query: &CallbackQuery,
) -> Result<i64, HttpError> {
    check_push_signature(state, PushUrl::oa(entry), query)
}

/// Checks a request's `signature` with the push URL's token, then the timestamp window;
/// returns the timestamp.
pub(crate) fn check_push_signature(
    state: &AppState,
    url: PushUrl<'_>,
    query: &CallbackQuery,
) -> Result<i64, HttpError> {
    let token = push_token(url)?;
    let (Some(sig), Some(ts), Some(nonce)) = (&query.signature, &query.timestamp, &query.nonce)
    else {
        return Err(HttpError::BadRequest(
            "signature, timestamp and nonce are required".into(),
        ));
    };
    if !signatures_match(&signature(token, ts, nonce), sig) {
        return Err(HttpError::Forbidden("the signature does not match".into()));
    }
    replay::check_window(ts, Utc::now().timestamp(), state.edge().callback_max_skew)
        .map_err(|e| refused(url.app, &e))
}

/// Refuses a plaintext push to a push URL in safe mode (unless plaintext is allowed); returns
/// whether the push is encrypted.
pub(crate) fn safe_mode(
    state: &AppState,
    url: PushUrl<'_>,
    query: &CallbackQuery,
) -> Result<bool, HttpError> {
    let safe = query.encrypt_type.as_deref() == Some("aes");
    if !safe && url.keys.is_some() && !state.edge().callback_allow_plaintext {
        metrics::counter!("wxnotify_callback_refused_total", "app" => url.app.to_string(), "reason" => "plaintext_in_safe_mode").increment(1);
        return Err(HttpError::Forbidden(
            "this push URL is in safe mode (an EncodingAESKey is configured): plaintext pushes are refused"
                .into(),
        ));
    }
    Ok(safe)
}

/// Refuses a `(timestamp, nonce)` pair already used for another request.
pub(crate) async fn not_replayed(
    state: &AppState,
    app: &AppName,
    ts: i64,
    query: &CallbackQuery,
    method: &str,
    carried: &[u8],
) -> Result<(), HttpError> {
    let nonce = query.nonce.as_deref().unwrap_or_default();
    if nonce.len() > 128 {
        return Err(HttpError::BadRequest("nonce is too long".into()));
    }
    let digest = replay::request_digest(method, carried);
    replay::remember(state.pool(), app, ts, nonce, &digest)
        .await?
        .map_err(|e| refused(app, &e))
}

fn refused(app: &AppName, e: &ReplayError) -> HttpError {
    let reason = match e {
        ReplayError::BadTimestamp => "bad_timestamp",
        ReplayError::OutsideWindow { .. } => "outside_window",
        ReplayError::Replayed => "replayed",
    };
    metrics::counter!("wxnotify_callback_refused_total", "app" => app.to_string(), "reason" => reason).increment(1);
    tracing::warn!(app = %app, reason, "callback request refused");
    HttpError::Forbidden(e.to_string())
}

fn push_token(url: PushUrl<'_>) -> Result<&str, HttpError> {
    url.token.map(|t| t.expose_secret()).ok_or_else(|| {
        HttpError::NotFound(format!(
            "no {} is configured for app {} (set {})",
            url.token_name, url.app, url.token_variable
        ))
    })
}

fn decrypt(entry: &AppEntry, query: &CallbackQuery, body: &str) -> Result<Push, HttpError> {
    let message = decrypt_push(PushUrl::oa(entry), query, body)?;
    event::parse_push(&message).map_err(|e| HttpError::BadRequest(e.to_string()))
}

/// Opens a safe-mode push: checks `msg_signature` over the `Encrypt` text, decrypts it with the
/// push URL's key (or the previous one during a key change) and checks the appid inside;
/// returns the plaintext push.
pub(crate) fn decrypt_push(
    url: PushUrl<'_>,
    query: &CallbackQuery,
    body: &str,
) -> Result<String, HttpError> {
    let app = url.app;
    let token = push_token(url)?;
    let keys = url.keys.ok_or_else(|| {
        HttpError::NotFound(format!(
            "safe mode is not configured for this push URL of app {app} (no EncodingAESKey)"
        ))
    })?;
    let appid = url
        .appid
        .ok_or_else(|| HttpError::NotFound(format!("app {app} has no appid for this push URL")))?;
    let encrypt = event::parse_encrypted(body).map_err(|e| HttpError::BadRequest(e.to_string()))?;
    let (Some(ts), Some(nonce)) = (&query.timestamp, &query.nonce) else {
        return Err(HttpError::BadRequest(
            "timestamp and nonce are required".into(),
        ));
    };
    // Signed with the Token over the ciphertext: checked before any key is tried, and never a
    // reason to try the previous key.
    let expected = msg_signature(token, ts, nonce, &encrypt);
    if !query
        .msg_signature
        .as_deref()
        .is_some_and(|got| signatures_match(&expected, got))
    {
        return Err(HttpError::Forbidden(
            "the msg_signature does not match".into(),
        ));
    }
    let (message, slot) = keys.decrypt(&encrypt, appid).map_err(|e| {
        metrics::counter!("wxnotify_callback_refused_total", "app" => app.to_string(), "reason" => "undecryptable").increment(1);
        tracing::warn!(app = %app, error = %e, "a signed safe-mode push that no configured EncodingAESKey decrypts for this appid");
        HttpError::BadRequest(e.to_string())
    })?;
    metrics::counter!("wxnotify_callback_decrypted_total", "app" => app.to_string(), "key" => slot.as_str()).increment(1);
    if slot == KeySlot::Previous {
        tracing::info!(
            app = %app,
            key = slot.as_str(),
            "a push opened with the previous EncodingAESKey: WeChat still uses it, keep it until these stop"
        );
    }
    String::from_utf8(message)
        .map_err(|_| HttpError::BadRequest("the decrypted message is not UTF-8".into()))
}

/// Claims the event and applies it in one transaction; `false` = a retry, nothing changed.
async fn apply(state: &AppState, app: &AppName, push: &Push) -> Result<bool, HttpError> {
    let mut tx = state.pool().begin().await?;
    if !store::claim_event(&mut tx, app, push).await? {
        return Ok(false);
    }
    let at = DateTime::from_timestamp(push.create_time, 0).unwrap_or_else(Utc::now);
    match &push.kind {
        PushKind::Subscribe { .. } => {
            followers::mark_subscribed(&mut tx, app, &push.from, at).await?
        }
        PushKind::Unsubscribe => followers::mark_unsubscribed(&mut tx, app, &push.from).await?,
        PushKind::TemplateSendJobFinish { msg_id, status } => {
            if !wxnotify_services::ledger::receipts::record_receipt(
                &mut tx, app, *msg_id, status, at,
            )
            .await?
            {
                tracing::info!(
                    msg_id,
                    status,
                    "delivery receipt before its msgid is recorded; kept in delivery_receipts"
                );
            }
        }
        PushKind::OtherEvent { .. } | PushKind::Message { .. } => {}
    }
    tx.commit().await?;
    Ok(true)
}

/// After a `subscribe`: `user/info` for the unionid, with retries, in the background.
fn fetch_unionid(state: &AppState, app: AppName, openid: OpenId) {
    let state = state.clone();
    let tracker = state.background().clone();
    tracker.spawn(async move {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(200))
            .with_max_times(5)
            .with_jitter();
        let call = || {
            state.tokens().with_token(&app, |token| {
                let (client, openid) = (state.client(), &openid);
                async move { client.user_info(&token, openid).await }
            })
        };
        let fetched = call
            .retry(backoff)
            .when(|e: &TokenError| e.class() == ErrClass::Transient)
            .await;
        match fetched {
            Ok(info) => {
                if let Err(e) = followers::store_unionid(state.pool(), &app, &info).await {
                    tracing::error!(app = %app, openid = %openid, error = %e, "storing a new follower's unionid failed");
                }
            }
            Err(e) => {
                tracing::warn!(app = %app, openid = %openid, error = %e, "user/info for a new follower failed; the next sync fills the unionid");
            }
        }
    });
}
