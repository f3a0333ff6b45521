//! `/mock/…`: the control and inspection API, so scripts can drive a `wxnotify-sandbox mock-wechat`
//! process the way tests drive a [`MockWechat`](super::MockWechat). Answers are plain JSON
//! (`application/json`); request bodies are read as JSON whatever their `Content-Type` (so
//! `curl -d` works), a bad one is 400 with the reason. No faults, latency or counting here.
//!
//! | call | effect |
//! |---|---|
//! | `GET /mock/stats` | the counters ([`MockStats`](super::MockStats)) |
//! | `GET /mock/sends` | the accepted sends ([`AcceptedSend`](super::AcceptedSend)s) |
//! | `POST /mock/reset` | forget what happened (see [`MockWechat::reset`](super::MockWechat::reset)) |
//! | `POST /mock/faults` `{"rules":[…]}` | replace the fault rules ([`FaultPlan`](super::FaultPlan)) |
//! | `DELETE /mock/faults` | no more faults |
//! | `POST /mock/tokens/invalidate` | every issued token answers 40001 |
//! | `POST /mock/tokens/expire` | every issued token answers 42001 |
//! | `POST /mock/login_code` `{"person":i}` | `{"code":"…"}`, a `wx.login()` code of person i |
//! | `POST /mock/unsubscribe` / `POST /mock/subscribe` `{"person":i}` | change who follows |
//! | `POST /mock/templates` `{"id","title","keys":[…]}` | add (or replace) a template |
//! | `DELETE /mock/templates/{id}` | delete a template (sends with it answer 40037); 404 if absent |
//! | `GET /mock/held` | messages held for review, with their verdicts ([`HeldMessage`](super::HeldMessage)s) |
//! | `POST /mock/mp/callback` `{"url","token","encoding_aes_key"?,"format"?}` | set the Mini Program's push URL (`format`: `xml` or `json`; with a key, safe mode) |
//! | `DELETE /mock/mp/callback` | no more Mini Program pushes |
//! | `POST /mock/mp/popup` `{"person":i,"results":{"TPL":"accept",…}}` | person i answers the subscribe popup: grants change, the popup event is pushed (with retries); answers a [`MpPushReport`](super::MpPushReport) |
//! | `POST /mock/mp/cancel` `{"person":i,"template_id":"TPL"}` | person i cancels the template in the settings: the change event is pushed |
//! | `GET /mock/mp/grants[?person=i]` | what each person holds per template ([`MockGrant`](super::MockGrant)s) |
//! | `GET /mock/mp/sends` | the accepted subscribe messages ([`AcceptedSubscribe`](super::AcceptedSubscribe)s) |
//! | `GET /mock/mp/counts` | subscribe messages accepted per person, `{"7":2,…}` |
//! | `POST /mock/mp/templates` `{"id","title","keys":[…],"long_term"?,"enums"?}` | add (or replace) a subscribe template |
//! | `DELETE /mock/mp/templates/{id}` | delete a subscribe template; 404 if absent |

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use axum::extract::Query;
use wxnotify_core::wechat::event::PushFormat;

use super::config::{MockMpTemplate, MpCallback};
use super::events::PushMode;
use super::faults::FaultPlan;
use super::grants::MockGrant;
use super::mp_events::{MpPushReport, PopupResults};
use super::sends::AcceptedSend;
use super::state::Mock;
use super::stats::MockStats;
use super::subscribe::AcceptedSubscribe;

type Shared = State<Arc<Mock>>;

/// The router of `/mock/…`.
pub(super) fn control() -> Router<Arc<Mock>> {
    Router::new()
        .route("/mock/stats", get(stats))
        .route("/mock/sends", get(sends))
        .route("/mock/reset", post(reset))
        .route("/mock/faults", post(set_faults).delete(clear_faults))
        .route("/mock/tokens/invalidate", post(invalidate))
        .route("/mock/tokens/expire", post(expire))
        .route("/mock/login_code", post(login_code))
        .route("/mock/unsubscribe", post(unsubscribe))
        .route("/mock/subscribe", post(subscribe))
        .route("/mock/templates", post(add_template))
        .route(
            "/mock/templates/{id}",
            axum::routing::delete(delete_template),
        )
        .route("/mock/held", get(held))
        .route(
            "/mock/mp/callback",
            post(set_mp_callback).delete(clear_mp_callback),
        )
        .route("/mock/mp/popup", post(popup))
        .route("/mock/mp/cancel", post(cancel))
        .route("/mock/mp/grants", get(grants))
        .route("/mock/mp/sends", get(subscribe_sends))
        .route("/mock/mp/counts", get(subscribe_counts))
        .route("/mock/mp/templates", post(add_mp_template))
        .route(
            "/mock/mp/templates/{id}",
            axum::routing::delete(delete_mp_template),
        )
}

async fn add_template(State(mock): Shared, body: Bytes) -> Result<StatusCode, BadBody> {
    mock.templates
        .add(parse::<super::config::MockTemplate>(&body)?);
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_template(
    State(mock): Shared,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> StatusCode {
    if mock.templates.delete(&id) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn held(State(mock): Shared) -> Json<Vec<super::rules::HeldMessage>> {
    Json(mock.content.all())
}

async fn stats(State(mock): Shared) -> Json<MockStats> {
    Json(mock.stats())
}

async fn sends(State(mock): Shared) -> Json<Vec<AcceptedSend>> {
    Json(mock.sends.sends())
}

async fn reset(State(mock): Shared) -> StatusCode {
    mock.reset();
    StatusCode::NO_CONTENT
}

/// Reads a JSON request body, whatever its `Content-Type`.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, BadBody> {
    serde_json::from_slice(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad JSON body: {e}\n")))
}

/// A 400 answer saying what was wrong with the body.
type BadBody = (StatusCode, String);

async fn set_faults(State(mock): Shared, body: Bytes) -> Result<StatusCode, BadBody> {
    mock.faults.set(parse::<FaultPlan>(&body)?);
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_faults(State(mock): Shared) -> StatusCode {
    mock.faults.clear();
    StatusCode::NO_CONTENT
}

async fn invalidate(State(mock): Shared) -> StatusCode {
    mock.tokens.invalidate_all(40001);
    StatusCode::NO_CONTENT
}

async fn expire(State(mock): Shared) -> StatusCode {
    mock.tokens.invalidate_all(42001);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Person {
    person: u64,
}

#[derive(Serialize)]
struct Code {
    code: String,
}

async fn login_code(State(mock): Shared, body: Bytes) -> Result<Json<Code>, BadBody> {
    let p: Person = parse(&body)?;
    Ok(Json(Code {
        code: mock.logins.issue(p.person),
    }))
}

async fn unsubscribe(State(mock): Shared, body: Bytes) -> Result<StatusCode, BadBody> {
    mock.followers.set(parse::<Person>(&body)?.person, false);
    Ok(StatusCode::NO_CONTENT)
}

async fn subscribe(State(mock): Shared, body: Bytes) -> Result<StatusCode, BadBody> {
    mock.followers.set(parse::<Person>(&body)?.person, true);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct CallbackBody {
    url: url::Url,
    token: String,
    #[serde(default)]
    encoding_aes_key: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

async fn set_mp_callback(State(mock): Shared, body: Bytes) -> Result<StatusCode, BadBody> {
    let b: CallbackBody = parse(&body)?;
    let format = match b.format.as_deref() {
        None | Some("xml") => PushFormat::Xml,
        Some("json") => PushFormat::Json,
        Some(other) => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("format must be xml or json, not {other}\n"),
            ));
        }
    };
    let mode = match b.encoding_aes_key {
        Some(encoding_aes_key) => PushMode::Safe {
            token: b.token,
            encoding_aes_key,
        },
        None => PushMode::Plain { token: b.token },
    };
    *mock.mp_callback.write() = Some(MpCallback {
        url: b.url,
        mode,
        format,
    });
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_mp_callback(State(mock): Shared) -> StatusCode {
    *mock.mp_callback.write() = None;
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct PopupBody {
    person: u64,
    results: PopupResults,
}

async fn popup(State(mock): Shared, body: Bytes) -> Result<Json<MpPushReport>, BadBody> {
    let b: PopupBody = parse(&body)?;
    let push = mock
        .popup(b.person, &b.results)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e:#}\n")))?;
    Ok(Json(mock.push_mp(&push).await))
}

#[derive(Deserialize)]
struct CancelBody {
    person: u64,
    template_id: String,
}

async fn cancel(State(mock): Shared, body: Bytes) -> Result<Json<MpPushReport>, BadBody> {
    let b: CancelBody = parse(&body)?;
    let push = mock
        .cancel(b.person, &b.template_id)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e:#}\n")))?;
    Ok(Json(mock.push_mp(&push).await))
}

#[derive(Deserialize)]
struct GrantQuery {
    person: Option<u64>,
}

async fn grants(State(mock): Shared, Query(q): Query<GrantQuery>) -> Json<Vec<MockGrant>> {
    Json(mock.grants.list(q.person))
}

async fn subscribe_sends(State(mock): Shared) -> Json<Vec<AcceptedSubscribe>> {
    Json(mock.subscribes.sends())
}

async fn subscribe_counts(State(mock): Shared) -> Json<BTreeMap<u64, u64>> {
    Json(mock.subscribes.per_person())
}

async fn add_mp_template(State(mock): Shared, body: Bytes) -> Result<StatusCode, BadBody> {
    mock.mp_templates.add(parse::<MockMpTemplate>(&body)?);
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_mp_template(
    State(mock): Shared,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> StatusCode {
    if mock.mp_templates.delete(&id) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}
