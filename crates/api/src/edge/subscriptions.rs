//! `POST /v1/miniprogram/subscriptions`: the Mini Program reports what its person chose in
//! `wx.requestSubscribeMessage`, with the object that call resolved with:
//! `{"results": {"TEMPLATE_ID": "accept", …}}` (`errMsg`, which the object also carries, is
//! ignored; the values are `accept`, `reject`, `ban`, `filter`, `acceptWithAudio`).
//!
//! Two ways to say who the person is:
//!
//! - `Authorization: Bearer wxs_…`, the session `POST /v1/miniprogram/login` answered: the
//!   report is for that app and person only (an `mp_openid` in the body must be theirs);
//! - `Authorization: Bearer wxn_…`, a producer API key (a backend relaying the report): the
//!   body names the person, `"mp_openid"`, and the app is the key's.
//!
//! Every choice is recorded in one transaction by the grant ledger, which pairs the report
//! with WeChat's popup event of the same tap ([`wxnotify_services::subscriptions`]); the answer
//! says what each did: `counted`, `paired`, `refused` or `ignored`.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AppState;
use crate::edge::mp_sessions::{self, SESSION_PREFIX};
use crate::error::HttpError;
use crate::producer::api_keys::{self, KEY_PREFIX};
use wxnotify_core::domain::{AppName, OpenId};
use wxnotify_services::subscriptions::{Choice, Recorded, Source, record_choice};

/// The most templates one report may name (`wx.requestSubscribeMessage` takes at most 5).
pub const MAX_TEMPLATES: usize = 20;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// What `wx.requestSubscribeMessage` resolved with: template id → choice (`errMsg` is
    /// ignored).
    pub results: serde_json::Map<String, Value>,
    /// The person (required with an API key; with a session it must be the session's person).
    #[serde(default)]
    pub mp_openid: Option<String>,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReportResponse {
    /// The app.
    pub app: String,
    /// The person.
    pub mp_openid: String,
    /// Per template, what the report did: `counted` (a new grant), `paired` (WeChat's event
    /// had already counted this tap), `refused` (state `reject` or `ban`), `ignored` (`filter`).
    pub recorded: BTreeMap<String, String>,
}

/// Who a report is for.
struct Reporter {
    app: AppName,
    /// The session's person; `None` for an API key.
    person: Option<String>,
}

async fn reporter(state: &AppState, headers: &HeaderMap) -> Result<Reporter, HttpError> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            HttpError::Unauthorized(
                "send `Authorization: Bearer <session>` with the session POST /v1/miniprogram/login answered (or a producer API key)".into(),
            )
        })?;
    if bearer.starts_with(SESSION_PREFIX) {
        let (app, openid) = mp_sessions::find(state.pool(), bearer).await?.ok_or_else(|| {
            HttpError::Unauthorized(
                "unknown or expired session: log in again (POST /v1/miniprogram/login) for a new one".into(),
            )
        })?;
        return Ok(Reporter {
            app,
            person: Some(openid),
        });
    }
    if bearer.starts_with(KEY_PREFIX) {
        return match api_keys::find_key(state.pool(), bearer).await? {
            Some((_, app, false)) => Ok(Reporter {
                app: AppName::parse(app).map_err(HttpError::internal)?,
                person: None,
            }),
            Some((_, _, true)) => Err(HttpError::Unauthorized(
                "this API key was revoked: use another key (`wxnotify api-key list`)".into(),
            )),
            None => Err(HttpError::Unauthorized(
                "unknown API key: create one with `wxnotify api-key create --app NAME`".into(),
            )),
        };
    }
    Err(HttpError::Unauthorized(
        "the bearer token must be a session (wxs_…) from POST /v1/miniprogram/login or an API key (wxn_…)".into(),
    ))
}

/// Reads the results into (template id, choice), refusing anything but WeChat's words.
fn choices(results: &serde_json::Map<String, Value>) -> Result<Vec<(String, Choice)>, HttpError> {
    let mut out = Vec::new();
    for (template_id, value) in results {
        if template_id == "errMsg" {
            continue;
        }
        let choice = value.as_str().and_then(Choice::parse).ok_or_else(|| {
            HttpError::BadRequest(format!(
                "results.{template_id} must be accept, reject, ban, filter or acceptWithAudio"
            ))
        })?;
        if template_id.is_empty() || template_id.len() > 128 {
            return Err(HttpError::BadRequest(
                "a template id in results is empty or longer than 128 characters".into(),
            ));
        }
        out.push((template_id.clone(), choice));
    }
    if out.is_empty() {
        return Err(HttpError::BadRequest(
            "results names no template: send the object wx.requestSubscribeMessage resolved with"
                .into(),
        ));
    }
    if out.len() > MAX_TEMPLATES {
        return Err(HttpError::BadRequest(format!(
            "results names {} templates; at most {MAX_TEMPLATES}",
            out.len()
        )));
    }
    Ok(out)
}

/// The handler.
pub async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ReportResponse>, HttpError> {
    let who = reporter(&state, &headers).await?;
    let request: ReportRequest = serde_json::from_slice(&body).map_err(|e| {
        HttpError::BadRequest(format!(
            "the body must be JSON like {{\"results\": {{\"TEMPLATE_ID\": \"accept\"}}}}: {e}"
        ))
    })?;
    let openid = match (who.person, request.mp_openid) {
        (Some(session), Some(named)) if session != named => {
            return Err(HttpError::Forbidden(
                "this session is another person's: a session reports only its own person's choices"
                    .into(),
            ));
        }
        (Some(session), _) => session,
        (None, Some(named)) => OpenId::parse(named.trim())
            .map_err(|e| HttpError::BadRequest(format!("mp_openid: {e}")))?
            .to_string(),
        (None, None) => {
            return Err(HttpError::BadRequest(
                "with an API key, name the person: \"mp_openid\" in the body".into(),
            ));
        }
    };
    let list = choices(&request.results)?;
    let mut tx = state.pool().begin().await?;
    let mut recorded = BTreeMap::new();
    for (template_id, choice) in list {
        let did = record_choice(
            &mut tx,
            &who.app,
            &openid,
            &template_id,
            choice,
            Source::Report,
        )
        .await?;
        let word = match did {
            Recorded::Counted => "counted",
            Recorded::Paired => "paired",
            Recorded::Refused => "refused",
            Recorded::Ignored | Recorded::Retry => "ignored",
        };
        recorded.insert(template_id, word.to_owned());
    }
    tx.commit().await?;
    tracing::info!(app = %who.app, mp_openid = %openid, recorded = ?recorded, "subscribe choices reported by the Mini Program");
    Ok(Json(ReportResponse {
        app: who.app.to_string(),
        mp_openid: openid,
        recorded,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn err_msg_is_skipped_and_unknown_words_are_refused() {
        let results =
            json!({"errMsg": "requestSubscribeMessage:ok", "T1": "accept", "T2": "filter"});
        let got = choices(results.as_object().unwrap()).unwrap();
        assert_eq!(
            got,
            vec![("T1".into(), Choice::Accept), ("T2".into(), Choice::Filter)]
        );
        let bad = json!({"T1": "yes"});
        assert!(choices(bad.as_object().unwrap()).is_err());
        let none = json!({"errMsg": "requestSubscribeMessage:ok"});
        assert!(choices(none.as_object().unwrap()).is_err());
    }
}
