//! `GET /cgi-bin/token` and `POST /cgi-bin/stable_token`: checking the app's credentials and
//! handing out tokens (the minting rules are in [`tokens`](super::tokens)).

use serde::{Deserialize, Serialize};

use super::request::{Params, json_body};
use super::state::Mock;
use super::tokens::{App, Issued};
use super::wire::Answer;
use super::{MOCK_MP_APPID, MOCK_MP_SECRET, MOCK_OA_APPID, MOCK_OA_SECRET};

/// Which app `appid` names, if its `secret` is right. A wrong appid is 40013; a wrong secret
/// is `bad_secret` (40001 on `cgi-bin/token`, 40125 elsewhere, as the real API does).
pub(super) fn app_for(appid: &str, secret: &str, bad_secret: i64) -> Result<App, i64> {
    let (app, expected) = match appid {
        MOCK_OA_APPID => (App::Oa, MOCK_OA_SECRET),
        MOCK_MP_APPID => (App::Mp, MOCK_MP_SECRET),
        _ => return Err(40013),
    };
    if secret == expected {
        Ok(app)
    } else {
        Err(bad_secret)
    }
}

#[derive(Serialize)]
struct TokenBody {
    access_token: String,
    expires_in: u64,
}

impl From<Issued> for Answer {
    fn from(issued: Issued) -> Answer {
        Answer::ok(&TokenBody {
            access_token: issued.token,
            expires_in: issued.expires_in,
        })
    }
}

/// `GET /cgi-bin/token?grant_type=client_credential&appid=…&secret=…`.
pub(super) fn token(mock: &Mock, params: &Params) -> Result<Answer, i64> {
    if params.get("grant_type") != Some("client_credential") {
        return Err(40002);
    }
    let app = app_for(
        params.get("appid").unwrap_or_default(),
        params.get("secret").unwrap_or_default(),
        40001,
    )?;
    Ok(mock.tokens.mint_classic(app).into())
}

#[derive(Deserialize)]
struct StableRequest {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    appid: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    force_refresh: bool,
}

/// `POST /cgi-bin/stable_token` with a JSON body; a body that is not JSON is 47001.
pub(super) fn stable_token(mock: &Mock, body: &[u8]) -> Result<Answer, i64> {
    let req: StableRequest = json_body(body)?;
    if req.grant_type != "client_credential" {
        return Err(40002);
    }
    let app = app_for(&req.appid, &req.secret, 40125)?;
    Ok(mock.tokens.stable(app, req.force_refresh).into())
}
