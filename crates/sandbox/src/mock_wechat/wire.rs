//! The wire format every fake endpoint shares (`docs/wechat.md` §1): HTTP 200, `text/plain`,
//! a JSON body; success bodies are the data alone, errors are
//! `{"errcode":N,"errmsg":"<canonical text> rid: <hex>-<hex>-<hex>"}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// What the real API sends as `Content-Type`, whatever the body (`docs/wechat.md` §1).
pub(super) const CONTENT_TYPE: &str = "text/plain";

/// The answer of one fake WeChat call, before it becomes an HTTP response.
#[derive(Debug)]
pub(super) enum Answer {
    /// A success: the JSON body, already serialised.
    Ok(Vec<u8>),
    /// An error: the errcode, and what follows the canonical errmsg (47003 names the field).
    Err {
        /// The `errcode`.
        code: i64,
        /// Appended to the canonical text, e.g. `data.thing1.value is empty`.
        detail: Option<String>,
    },
}

impl Answer {
    /// A success whose body is `body` as JSON.
    pub(super) fn ok<T: Serialize>(body: &T) -> Answer {
        // Our bodies are structs of strings, integers and JSON values: they always serialise.
        Answer::Ok(serde_json::to_vec(body).expect("mock bodies serialise"))
    }

    /// The error `code` with its canonical errmsg.
    pub(super) fn err(code: i64) -> Answer {
        Answer::Err { code, detail: None }
    }

    /// The error `code`, with `detail` after the canonical errmsg.
    pub(super) fn err_with(code: i64, detail: String) -> Answer {
        Answer::Err {
            code,
            detail: Some(detail),
        }
    }

    /// The errcode this answer carries on the wire (0 for a success).
    pub(super) fn errcode(&self) -> i64 {
        match self {
            Answer::Ok(_) => 0,
            Answer::Err { code, .. } => *code,
        }
    }
}

impl From<Result<Answer, i64>> for Answer {
    fn from(r: Result<Answer, i64>) -> Answer {
        r.unwrap_or_else(Answer::err)
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let body = match self {
            Answer::Ok(body) => body,
            Answer::Err { code, detail } => error_body(code, detail.as_deref()),
        };
        text_plain(StatusCode::OK, body)
    }
}

/// A response with `status`, `Content-Type: text/plain` and `body`.
pub(super) fn text_plain(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    errcode: i64,
    errmsg: &'a str,
}

/// The JSON error body: canonical errmsg, the detail if any, then ` rid: …`.
fn error_body(code: i64, detail: Option<&str>) -> Vec<u8> {
    let text = errmsg(code);
    let errmsg = match detail {
        Some(d) => format!("{text} {d} rid: {}", rid()),
        None => format!("{text} rid: {}", rid()),
    };
    serde_json::to_vec(&ErrorBody {
        errcode: code,
        errmsg: &errmsg,
    })
    .expect("error bodies serialise")
}

/// A request id like the real one, `65eac940-1a79c8dc-1be683b5`: the unix time in hex, then two
/// random words.
fn rid() -> String {
    let now = chrono::Utc::now().timestamp() as u32;
    format!(
        "{now:08x}-{:08x}-{:08x}",
        rand::random::<u32>(),
        rand::random::<u32>()
    )
}

/// The errcodes the fake knows, with their canonical errmsg (`docs/wechat.md` §11).
pub(super) const CANONICAL: &[(i64, &str)] = &[
    (0, "ok"),
    (-1, "system error"),
    (
        40001,
        "invalid credential, access_token is invalid or not latest",
    ),
    (40002, "invalid grant_type"),
    (40003, "invalid openid"),
    (40013, "invalid appid"),
    (40014, "invalid access_token"),
    (40029, "invalid code"),
    (40032, "invalid openid list size"),
    (40036, "invalid template_id size"),
    (40037, "invalid template_id"),
    (40125, "invalid appsecret"),
    (40163, "code been used"),
    (40164, "invalid ip, not in whitelist"),
    (40165, "invalid weapp pagepath"),
    (40226, "code blocked"),
    (40241, "The message is duplicate in 60 seconds"),
    // The text of 40252 is not published; this is the fake's own wording.
    (40252, "the message is held for content review"),
    (
        40249,
        "this template msg has been blocked for illegal content",
    ),
    (41001, "access_token missing"),
    (42001, "access_token expired"),
    (43004, "require subscribe"),
    (43019, "require remove blacklist"),
    (43101, "user refuse to accept the msg"),
    (43116, "This template_id is banned"),
    (
        43117,
        "Sending messages to this openid too frequently, please try later",
    ),
    (45009, "reach max api daily quota limit"),
    (
        45011,
        "api minute-quota reach limit mustslower retry next minute",
    ),
    (47001, "data format error"),
    (47003, "argument invalid!"),
    (48001, "api unauthorized"),
    (48004, "api forbidden for irregularities"),
    (50002, "user limited"),
    (76021, "cgi_path not found, please check"),
    (76022, "could not use this cgi_path，no permission"),
    (89503, "this call needs the admin's confirmation"),
];

/// The canonical errmsg of an errcode; an errcode the fake does not know reads `system error`.
pub(super) fn errmsg(code: i64) -> &'static str {
    CANONICAL
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("system error", |(_, text)| text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_carry_the_canonical_text_and_a_rid() {
        let body = error_body(47003, Some("data.thing1.value is empty"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errcode"], 47003);
        let msg = v["errmsg"].as_str().unwrap();
        assert!(msg.starts_with("argument invalid! data.thing1.value is empty rid: "));
        let rid = msg.rsplit(' ').next().unwrap();
        assert_eq!(rid.split('-').count(), 3);
        assert!(rid.split('-').all(|p| p.len() == 8));
    }
}
