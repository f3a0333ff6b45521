//! Signing in and out of the console: the login form (CSRF cookie), the token check behind the
//! limit on failed tries ([`crate::failures`]), and the session cookie.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::admin::AdminState;
use crate::admin::console::session::{self, Session};
use crate::admin::console::{PageError, PageResult, audit_simple, error_page, pages, value};
use crate::admin::error::AdminError;
use crate::failures::{TryKeys, retry_after_secs};

/// `GET /admin/login`: the form (or the overview for a signed-in session).
pub(super) async fn login_page(session: Option<Session>, headers: HeaderMap) -> Response {
    if session.is_some() {
        return Redirect::to("/admin").into_response();
    }
    login_form(&headers, None)
}

/// The login form with a fresh CSRF cookie, and `error` when a login failed (401).
fn login_form(headers: &HeaderMap, error: Option<&str>) -> Response {
    let csrf = session::random_token();
    let cookie = session::set_cookie(headers, session::LOGIN_COOKIE, &csrf, 900);
    let status = if error.is_some() {
        axum::http::StatusCode::UNAUTHORIZED
    } else {
        axum::http::StatusCode::OK
    };
    (
        status,
        [(header::SET_COOKIE, cookie)],
        pages::login(&csrf, error),
    )
        .into_response()
}

/// `POST /admin/login`: checks the CSRF token, then the token behind the shared limit on failed
/// tries (per client address, named by `--client-ip-header` behind a proxy, and per token
/// prefix); a session cookie on success (audited).
pub(super) async fn login(
    State(state): State<AdminState>,
    peer: crate::edge::login_limits::Peer,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let sent = value(&form, "csrf");
    let expected = session::cookie(&headers, session::LOGIN_COOKIE);
    match (sent, expected) {
        (Some(a), Some(b)) if session::same_secret(a, b) => {}
        _ => {
            return Err(PageError::from(pages::refused(
                "The login form expired or did not come from the console (CSRF token missing or wrong). Reload the login page.",
            )));
        }
    }
    let token = value(&form, "token").unwrap_or("").trim();
    let failures = state.auth().failures();
    let keys = TryKeys::new(failures.client_from(&headers, peer), Some(token));
    let credential = match state.auth().check(token, &keys).await {
        Ok(credential) => credential,
        Err(AdminError::TooManyTries(wait)) => {
            let secs = retry_after_secs(wait);
            let mut r = login_form(
                &headers,
                Some(&format!(
                    "Too many failed logins from your address: try again in {secs} s."
                )),
            );
            *r.status_mut() = axum::http::StatusCode::TOO_MANY_REQUESTS;
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return Ok(r);
        }
        Err(AdminError::Unauthorized) => {
            return Ok(login_form(
                &headers,
                Some("That is not an admin or viewer token (a personal token starts with wxa_)."),
            ));
        }
        Err(e) => return Err(error_page(e).into()),
    };
    let ttl = state.options().session_ttl.unwrap_or(session::DEFAULT_TTL);
    let cookie = session::create(state.pool(), &credential, state.auth().env(), ttl)
        .await
        .map_err(|e| error_page(e.into()))?;
    let principal = credential.principal("console");
    audit_simple(&state, &principal, "login", serde_json::json!({})).await?;
    let mut response = Redirect::to("/admin").into_response();
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::set_cookie(
            &headers,
            session::SESSION_COOKIE,
            &cookie,
            ttl.as_secs(),
        ))
        .expect("a hex cookie is a valid header"),
    );
    h.append(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::set_cookie(&headers, session::LOGIN_COOKIE, "", 0))
            .expect("valid header"),
    );
    Ok(response)
}

/// `POST /admin/logout`: ends the session and clears its cookie.
pub(super) async fn logout(
    State(state): State<AdminState>,
    s: Session,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    s.check_csrf(value(&form, "csrf"))?;
    session::destroy(state.pool(), &s)
        .await
        .map_err(|e| error_page(e.into()))?;
    let cookie = session::set_cookie(&headers, session::SESSION_COOKIE, "", 0);
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/admin/login")).into_response())
}
