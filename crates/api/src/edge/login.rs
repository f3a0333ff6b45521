//! `POST /v1/miniprogram/login` `{"code": "..."}` (app: `?app=NAME`, an `"app"` field, or the
//! default app): exchanges a `wx.login()` code with `jscode2session`, upserts the Mini Program
//! user, and answers `{"openid", "unionid", "notifiable", "session", "session_expires_at"}`.
//! `notifiable` says a subscribed OA follower with that unionid is known, i.e. template messages
//! can reach this person now. `session` is an opaque, expiring token for this person with which
//! the Mini Program reports subscribe choices ([`crate::edge::mp_sessions`]; only its hash is
//! stored).
//! The session key stays in Postgres; it is never in an answer or a log line.
//! Before WeChat is called, [`crate::edge::login_limits`] checks the per-client and global limits
//! (429 with `Retry-After` past them).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::edge::login_codes::Exchanged;
use crate::edge::login_limits::{Peer, Refused, client_ip};
use crate::edge::store;
use crate::error::HttpError;
use wxnotify_core::domain::AppName;
use wxnotify_core::wechat::errcode::{CODE_BLOCKED, MINUTE_QUOTA};
use wxnotify_core::wechat::{ErrClass, PermanentKind, WechatError};

/// The longest code accepted (WeChat's are 32 characters).
const MAX_CODE_LEN: usize = 128;

/// The request body.
#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    /// The code `wx.login()` returned.
    pub code: String,
    /// The app, if not in the query string.
    #[serde(default)]
    pub app: Option<String>,
}

/// The query string.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    /// The app.
    pub app: Option<String>,
}

/// The answer. Its `Debug` leaves the session token out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    /// The Mini Program openid.
    pub openid: String,
    /// The unionid, when the Mini Program is bound to an Open Platform account.
    pub unionid: Option<String>,
    /// A subscribed OA follower with this unionid is known.
    pub notifiable: bool,
    /// The session token for `POST /v1/miniprogram/subscriptions` (`Authorization: Bearer …`).
    pub session: String,
    /// When the session stops working (log in again for a new one).
    pub session_expires_at: chrono::DateTime<chrono::Utc>,
}

impl std::fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResponse")
            .field("openid", &self.openid)
            .field("unionid", &self.unionid)
            .field("notifiable", &self.notifiable)
            .field("session", &"[redacted]")
            .field("session_expires_at", &self.session_expires_at)
            .finish()
    }
}

/// Why an exchange failed, as shared between the requests that joined it. The cause was
/// logged once by the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginFailure {
    /// WeChat refused the code (40029 invalid, 40163 used, 40226 blocked).
    CodeRefused {
        /// The errcode.
        errcode: i64,
    },
    /// 45011: the per-minute quota is used up.
    RateLimited,
    /// -1 or a transport failure.
    WechatUnavailable,
    /// Configuration or database trouble.
    Internal,
}

/// The handler.
pub async fn login(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
    body: Bytes,
) -> Result<Json<LoginResponse>, HttpError> {
    let limiter = state.login_limiter();
    let client = client_ip(limiter.limits().client_ip_header.as_ref(), &headers, peer);
    if let Err(refused) = limiter.check(client) {
        let (scope, message) = match refused {
            Refused::Client(_) => ("client", "too many logins from this client; retry later"),
            Refused::Global(_) => ("global", "too many logins right now; retry later"),
        };
        metrics::counter!("wxnotify_login_limited_total", "scope" => scope).increment(1);
        return Err(HttpError::TooManyRequests {
            message: message.into(),
            retry_after: refused.retry_after_secs(),
        });
    }
    let request: LoginRequest = serde_json::from_slice(&body).map_err(|_| {
        HttpError::BadRequest(
            "the body must be JSON like {\"code\": \"<the code wx.login() returned>\"}".into(),
        )
    })?;
    let code = check_code(&request.code)?;
    let app = state.app_or_default(query.app.as_deref().or(request.app.as_deref()))?;
    let entry = state.entry(&app)?;
    if entry.config.mp_appid.is_none() || entry.config.mp_secret.is_none() {
        return Err(HttpError::NotFound(format!(
            "app {app} has no Mini Program configured (WXNOTIFY_MP_APPID / WXNOTIFY_MP_SECRET)"
        )));
    }
    let work = exchange(state.clone(), app.clone(), code.to_owned());
    let outcome = state
        .logins()
        .exchange(&app, code, work, LoginFailure::Internal)
        .await;
    let result = match outcome {
        Exchanged::Done(result) => result,
        Exchanged::AlreadyUsed => {
            metrics::counter!("wxnotify_logins_total", "app" => app.to_string(), "outcome" => "code_reused").increment(1);
            return Err(HttpError::BadRequest(
                "this login code was already used; call wx.login() again for a fresh code".into(),
            ));
        }
    };
    result.map(Json).map_err(failure_to_http)
}

fn check_code(code: &str) -> Result<&str, HttpError> {
    let code = code.trim();
    if code.is_empty() || code.len() > MAX_CODE_LEN || !code.chars().all(|c| c.is_ascii_graphic()) {
        return Err(HttpError::BadRequest(
            "code must be the string wx.login() returned; call wx.login() again for a fresh code"
                .into(),
        ));
    }
    Ok(code)
}

/// The exchange itself, run once per code in a task of its own.
async fn exchange(
    state: AppState,
    app: AppName,
    code: String,
) -> Result<LoginResponse, LoginFailure> {
    let outcome = run_exchange(&state, &app, &code).await;
    let label = match &outcome {
        Ok(_) => "ok",
        Err(LoginFailure::CodeRefused { .. }) => "code_refused",
        Err(LoginFailure::RateLimited) => "rate_limited",
        Err(LoginFailure::WechatUnavailable) => "wechat_unavailable",
        Err(LoginFailure::Internal) => "internal",
    };
    metrics::counter!("wxnotify_logins_total", "app" => app.to_string(), "outcome" => label)
        .increment(1);
    outcome
}

#[tracing::instrument(skip_all, fields(app = %app))]
async fn run_exchange(
    state: &AppState,
    app: &AppName,
    code: &str,
) -> Result<LoginResponse, LoginFailure> {
    let entry = state.entry(app).map_err(|_| LoginFailure::Internal)?;
    let (Some(appid), Some(secret)) = (&entry.config.mp_appid, &entry.config.mp_secret) else {
        return Err(LoginFailure::Internal);
    };
    let session = state
        .client()
        .jscode2session(appid, secret, code)
        .await
        .map_err(classify_failure)?;
    let db_failed = |e: sqlx::Error| {
        tracing::error!(error = %e, "storing the Mini Program user failed");
        LoginFailure::Internal
    };
    store::upsert_mp_user(state.pool(), app, &session)
        .await
        .map_err(db_failed)?;
    let notifiable = match &session.unionid {
        Some(unionid) => {
            wxnotify_services::followers::store::is_notifiable(state.pool(), app, unionid)
                .await
                .map_err(db_failed)?
        }
        None => false,
    };
    let minted = crate::edge::mp_sessions::create(state.pool(), app, session.openid.as_str())
        .await
        .map_err(db_failed)?;
    tracing::info!(mp_openid = %session.openid, has_unionid = session.unionid.is_some(), notifiable, "Mini Program login");
    Ok(LoginResponse {
        openid: session.openid.to_string(),
        unionid: session.unionid.map(String::from),
        notifiable,
        session: minted.token,
        session_expires_at: minted.expires_at,
    })
}

/// Logs the cause once and turns it into a failure every joined request can share.
fn classify_failure(e: WechatError) -> LoginFailure {
    let failure = match e.class() {
        ErrClass::Permanent(PermanentKind::Code) => LoginFailure::CodeRefused {
            errcode: e.errcode().unwrap_or_default(),
        },
        ErrClass::Transient if e.errcode() == Some(MINUTE_QUOTA) => LoginFailure::RateLimited,
        ErrClass::Transient => LoginFailure::WechatUnavailable,
        _ => LoginFailure::Internal,
    };
    let level_error = matches!(
        failure,
        LoginFailure::Internal | LoginFailure::WechatUnavailable
    );
    if level_error {
        tracing::error!(errcode = e.errcode(), rid = e.rid(), error = %e, "jscode2session failed");
    } else {
        tracing::info!(
            errcode = e.errcode(),
            rid = e.rid(),
            "jscode2session refused the code"
        );
    }
    failure
}

fn failure_to_http(failure: LoginFailure) -> HttpError {
    match failure {
        LoginFailure::CodeRefused { errcode } if errcode == CODE_BLOCKED => HttpError::BadRequest(
            "WeChat blocked this login (high-risk user, errcode 40226)".into(),
        ),
        LoginFailure::CodeRefused { errcode } => HttpError::BadRequest(format!(
            "WeChat refused this login code (errcode {errcode}: invalid, expired or already used); call wx.login() again for a fresh code"
        )),
        LoginFailure::RateLimited => HttpError::TooManyRequests {
            message: "too many logins this minute; wait a minute, then call wx.login() again for a fresh code".into(),
            retry_after: 60,
        },
        LoginFailure::WechatUnavailable => HttpError::Unavailable(None),
        LoginFailure::Internal => HttpError::Internal(None),
    }
}
