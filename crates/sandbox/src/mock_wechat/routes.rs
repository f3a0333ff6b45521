//! The WeChat API routes and what every call goes through: count it, add the configured
//! latency, draw the fault rules, run the endpoint (a plain function of the state), count the
//! errcode, answer `text/plain`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};

use super::endpoint::Endpoint;
use super::faults::Action;
use super::request::Params;
use super::state::Mock;
use super::wire::{Answer, text_plain};
use super::{credentials, followers, login, mp_templates, rules, sends, subscribe, templates};

/// Marks a response the server must not send: the connection is closed instead.
#[derive(Debug, Clone, Copy)]
pub(super) struct DropConnection;

/// An endpoint's work: the state, the query, the body (empty for GET) → the answer, or an
/// errcode.
type Work = fn(&Mock, &Params, &[u8]) -> Result<Answer, i64>;

/// The router of the WeChat APIs.
pub(super) fn api() -> Router<Arc<Mock>> {
    let work: [(Endpoint, Work); 12] = [
        (Endpoint::Token, |m, p, _| credentials::token(m, p)),
        (Endpoint::StableToken, |m, _, b| {
            credentials::stable_token(m, b)
        }),
        (Endpoint::UserGet, |m, p, _| followers::user_get(m, p)),
        (Endpoint::UserInfo, |m, p, _| followers::user_info(m, p)),
        (Endpoint::UserInfoBatch, followers::user_info_batch),
        (Endpoint::JsCode2Session, |m, p, _| {
            login::jscode2session(m, p)
        }),
        (Endpoint::TemplateSend, sends::template_send),
        (Endpoint::PrivateTemplates, |m, p, _| {
            templates::private_templates(m, p)
        }),
        (Endpoint::QuotaGet, rules::quota_get),
        (Endpoint::QueryBlocked, rules::query_blocked),
        (Endpoint::SubscribeSend, subscribe::subscribe_send),
        (Endpoint::MpTemplates, |m, p, _| {
            mp_templates::get_templates(m, p)
        }),
    ];
    work.into_iter()
        .fold(Router::new(), |router, (endpoint, work)| {
            router.route(endpoint.path(), route(endpoint, work))
        })
}

fn route(endpoint: Endpoint, work: Work) -> MethodRouter<Arc<Mock>> {
    let handler = move |State(mock): State<Arc<Mock>>, RawQuery(query): RawQuery, body: Bytes| async move {
        serve(&mock, endpoint, query.as_deref(), &body, work).await
    };
    if endpoint.is_post() {
        post(handler)
    } else {
        get(handler)
    }
}

/// One API call, start to finish.
async fn serve(
    mock: &Mock,
    endpoint: Endpoint,
    query: Option<&str>,
    body: &[u8],
    work: Work,
) -> Response {
    mock.stats.call(endpoint);
    let drawn = mock.faults.draw(endpoint);
    mock.stats.faults(drawn.fired);
    let delay = mock.cfg.latency + drawn.latency;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let run = || Answer::from(work(mock, &Params::parse(query), body));
    let answer = match drawn.action {
        None => run(),
        Some(Action::Errcode(code)) => Answer::err(code),
        Some(Action::HttpStatus(status)) => return http_error(status),
        Some(Action::DropConnection) => return dropped(),
        Some(Action::AcceptThenDrop) => {
            run();
            return dropped();
        }
    };
    mock.stats.answered(answer.errcode());
    answer.into_response()
}

/// What a failing proxy in front of WeChat would answer.
fn http_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = format!("<html><body><h1>{status}</h1></body></html>");
    let mut resp = text_plain(status, body.into_bytes());
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/html"),
    );
    resp
}

/// A response the server turns into a closed connection.
fn dropped() -> Response {
    let mut resp = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    resp.extensions_mut().insert(DropConnection);
    resp
}
