//! What WeChat pushes to the OA server URL, in either data format of the OA console (XML or
//! JSON; `docs/wechat.md` §7): parsing for the callback handler, building for the fake WeChat.
//!
//! The console's "data format" setting decides whether a push is XML
//! (`<xml><ToUserName>…</xml>`) or a JSON object with the same field names
//! (`{"ToUserName": "…", "CreateTime": 1714037059, …}`, the worked example of the official
//! message-encryption guide). [`PushFormat::detect`] tells them apart by the body itself, not by
//! `Content-Type`, which WeChat does not document for pushes. In safe mode the body is an
//! envelope holding only `ToUserName` and `Encrypt`; the decrypted `Encrypt` is a plaintext push
//! (JSON inside a JSON envelope in the official example; each is detected on its own).
//!
//! Field names are case-sensitive in both formats: the template receipt's id is `MsgID` (capital
//! D), ordinary messages carry `MsgId`. Both are 64-bit; JSON may carry them as numbers or as
//! strings, and both are read exactly (never through `f64`).
//!
//! This file parses XML and holds what both formats share; `json` reads JSON into the same
//! fields; [`build`] writes either format (for the fake WeChat and tests).

use serde::Deserialize;

mod build;
mod json;

pub use build::encrypted_envelope;

use crate::domain::OpenId;

/// The data format of a push (the OA console's "数据格式" setting: XML or JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PushFormat {
    /// `<xml>…</xml>`, WeChat's historical format and the console's default.
    #[default]
    Xml,
    /// A JSON object with the same field names as the XML elements.
    Json,
}

impl PushFormat {
    /// The format of `body`, from its first character after whitespace (and a byte-order mark):
    /// `<` is XML, `{` is JSON, anything else is refused.
    pub fn detect(body: &str) -> Result<PushFormat, EventError> {
        match body
            .trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n'])
            .chars()
            .next()
        {
            Some('<') => Ok(PushFormat::Xml),
            Some('{') => Ok(PushFormat::Json),
            _ => Err(EventError::Malformed(
                "neither XML (<xml>…</xml>) nor a JSON object".into(),
            )),
        }
    }

    /// `xml` or `json` (logs and metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            PushFormat::Xml => "xml",
            PushFormat::Json => "json",
        }
    }
}

/// Why a pushed body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not well-formed XML or JSON, or not WeChat's shape.
    #[error("the body is not a WeChat push (XML or JSON): {0}")]
    Malformed(String),
    /// A required element is missing.
    #[error("the push has no {0}")]
    Missing(&'static str),
    /// An element has a value that cannot be right.
    #[error("the push has a bad {0}")]
    Bad(&'static str),
}

/// Every element (or JSON field) wxnotify reads, as text. (All optional: which are required
/// depends on the kind.) The serde names are the field names of both formats.
#[derive(Debug, Default, Deserialize)]
struct RawPush {
    #[serde(rename = "ToUserName")]
    to_user_name: Option<String>,
    #[serde(rename = "FromUserName")]
    from_user_name: Option<String>,
    #[serde(rename = "CreateTime")]
    create_time: Option<String>,
    #[serde(rename = "MsgType")]
    msg_type: Option<String>,
    #[serde(rename = "Event")]
    event: Option<String>,
    #[serde(rename = "EventKey")]
    event_key: Option<String>,
    #[serde(rename = "MsgID")]
    template_msg_id: Option<String>,
    #[serde(rename = "MsgId")]
    msg_id: Option<String>,
    #[serde(rename = "Status")]
    status: Option<String>,
    #[serde(rename = "Encrypt")]
    encrypt: Option<String>,
}

/// What a push is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushKind {
    /// The person followed the OA (`EventKey` is `qrscene_…` for QR-code follows).
    Subscribe {
        /// The scene key, if any.
        event_key: Option<String>,
    },
    /// The person unfollowed the OA.
    Unsubscribe,
    /// The delivery result of a template message.
    TemplateSendJobFinish {
        /// The message id `message/template/send` returned.
        msg_id: i64,
        /// `success`, `failed:user block`, `failed: system failed` … stored raw.
        status: String,
    },
    /// Another event wxnotify does not act on (`CLICK`, `SCAN`, `LOCATION` …).
    OtherEvent {
        /// The event name.
        event: String,
    },
    /// A message from the person (text, image …); wxnotify does not reply to messages.
    Message {
        /// `MsgType`.
        msg_type: String,
        /// `MsgId`, the de-duplication key of messages.
        msg_id: Option<i64>,
    },
}

/// A parsed push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The OA's original id (`gh_…`).
    pub to_user_name: String,
    /// The person's OA openid.
    pub from: OpenId,
    /// Unix seconds, WeChat's clock.
    pub create_time: i64,
    /// What happened.
    pub kind: PushKind,
}

impl Push {
    /// The key under which WeChat's retries of this push are recognised: the event name (with
    /// the MsgID for receipts), or `msg:<MsgId>` for messages.
    pub fn dedupe_key(&self) -> String {
        match &self.kind {
            PushKind::Subscribe { .. } => "subscribe".into(),
            PushKind::Unsubscribe => "unsubscribe".into(),
            PushKind::TemplateSendJobFinish { msg_id, .. } => {
                format!("TEMPLATESENDJOBFINISH:{msg_id}")
            }
            PushKind::OtherEvent { event } => event.clone(),
            PushKind::Message { msg_type, msg_id } => match msg_id {
                Some(id) => format!("msg:{id}"),
                None => format!("msg:{msg_type}"),
            },
        }
    }
}

/// Reads the `Encrypt` field of a safe-mode (or compatible-mode) body, XML or JSON.
pub fn parse_encrypted(body: &str) -> Result<String, EventError> {
    let raw = parse_raw(body)?;
    raw.encrypt
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .ok_or(EventError::Missing("Encrypt"))
}

/// The sender (`FromUserName`) and `CreateTime` (seconds) every push carries, both required.
pub(crate) fn sender_and_time(
    from_user_name: Option<String>,
    create_time: Option<String>,
) -> Result<(OpenId, i64), EventError> {
    let from = from_user_name.ok_or(EventError::Missing("FromUserName"))?;
    let from = OpenId::parse(from.trim()).map_err(|_| EventError::Bad("FromUserName"))?;
    let create_time = create_time
        .ok_or(EventError::Missing("CreateTime"))?
        .trim()
        .parse::<i64>()
        .map_err(|_| EventError::Bad("CreateTime"))?;
    Ok((from, create_time))
}

/// Parses a plaintext push (or the decrypted content of a safe-mode one), XML or JSON.
pub fn parse_push(body: &str) -> Result<Push, EventError> {
    let raw = parse_raw(body)?;
    let (from, create_time) = sender_and_time(raw.from_user_name, raw.create_time)?;
    let msg_type = raw.msg_type.ok_or(EventError::Missing("MsgType"))?;
    let kind = if msg_type.trim() == "event" {
        event_kind(raw.event, raw.event_key, raw.template_msg_id, raw.status)?
    } else {
        PushKind::Message {
            msg_type: msg_type.trim().to_owned(),
            msg_id: raw.msg_id.and_then(|id| id.trim().parse().ok()),
        }
    };
    Ok(Push {
        to_user_name: raw.to_user_name.unwrap_or_default().trim().to_owned(),
        from,
        create_time,
        kind,
    })
}

fn event_kind(
    event: Option<String>,
    event_key: Option<String>,
    msg_id: Option<String>,
    status: Option<String>,
) -> Result<PushKind, EventError> {
    let event = event.ok_or(EventError::Missing("Event"))?;
    let event = event.trim();
    Ok(if event.eq_ignore_ascii_case("subscribe") {
        PushKind::Subscribe {
            event_key: event_key.filter(|k| !k.trim().is_empty()),
        }
    } else if event.eq_ignore_ascii_case("unsubscribe") {
        PushKind::Unsubscribe
    } else if event.eq_ignore_ascii_case("TEMPLATESENDJOBFINISH") {
        let msg_id = msg_id
            .ok_or(EventError::Missing("MsgID"))?
            .trim()
            .parse::<i64>()
            .map_err(|_| EventError::Bad("MsgID"))?;
        let status = status
            .ok_or(EventError::Missing("Status"))?
            .trim()
            .to_owned();
        PushKind::TemplateSendJobFinish { msg_id, status }
    } else {
        PushKind::OtherEvent {
            event: event.to_owned(),
        }
    })
}

fn parse_raw(body: &str) -> Result<RawPush, EventError> {
    let body = body.trim_start_matches('\u{feff}');
    match PushFormat::detect(body)? {
        PushFormat::Xml => parse_xml(body),
        PushFormat::Json => json::parse(body),
    }
}

fn parse_xml(body: &str) -> Result<RawPush, EventError> {
    if !body.trim_start().starts_with("<xml") {
        return Err(EventError::Malformed(
            "the root element is not <xml>".into(),
        ));
    }
    quick_xml::de::from_str(body).map_err(|e| EventError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_template_receipt_is_parsed_with_a_64_bit_msgid() {
        let xml = "<xml>\n  <ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>\n  <FromUserName><![CDATA[oia2TjuEGTNoeX76QEjQNrcURxG8]]></FromUserName>\n  <CreateTime>1395658920</CreateTime>\n  <MsgType><![CDATA[event]]></MsgType>\n  <Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>\n  <MsgID>3557254367693750277</MsgID>\n  <Status><![CDATA[failed: system failed]]></Status>\n</xml>";
        let push = parse_push(xml).unwrap();
        assert_eq!(push.to_user_name, "gh_7f083739789a");
        assert_eq!(push.from.as_str(), "oia2TjuEGTNoeX76QEjQNrcURxG8");
        assert_eq!(push.create_time, 1395658920);
        assert_eq!(
            push.kind,
            PushKind::TemplateSendJobFinish {
                msg_id: 3557254367693750277,
                status: "failed: system failed".into()
            }
        );
        assert_eq!(
            push.dedupe_key(),
            "TEMPLATESENDJOBFINISH:3557254367693750277"
        );
    }

    #[test]
    fn every_kind_round_trips_through_both_formats() {
        for kind in [
            PushKind::Subscribe {
                event_key: Some("qrscene_123".into()),
            },
            PushKind::Subscribe { event_key: None },
            PushKind::Unsubscribe,
            PushKind::TemplateSendJobFinish {
                msg_id: 3662956322040938501,
                status: "failed:user block".into(),
            },
            PushKind::OtherEvent {
                event: "CLICK".into(),
            },
            PushKind::Message {
                msg_type: "text".into(),
                msg_id: Some(1234567890123456789),
            },
        ] {
            let push = Push {
                to_user_name: "gh_xxxxxxxxxxxx".into(),
                from: OpenId::parse("oOA_openid-1").unwrap(),
                create_time: 123456789,
                kind,
            };
            for format in [PushFormat::Xml, PushFormat::Json] {
                let body = push.render(format);
                assert_eq!(PushFormat::detect(&body), Ok(format), "{body}");
                assert_eq!(parse_push(&body).unwrap(), push, "{body}");
            }
        }
    }

    #[test]
    fn the_format_is_told_by_the_body_alone() {
        assert_eq!(PushFormat::detect("<xml></xml>"), Ok(PushFormat::Xml));
        assert_eq!(
            PushFormat::detect("\u{feff}\r\n  {\"a\":1}"),
            Ok(PushFormat::Json)
        );
        for body in ["", "   ", "success", "[1]", "\"x\""] {
            assert!(
                matches!(PushFormat::detect(body), Err(EventError::Malformed(_))),
                "{body:?}"
            );
        }
        // A byte-order mark before either format is tolerated.
        assert!(parse_push("\u{feff}<xml><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>").is_ok());
    }

    #[test]
    fn the_safe_mode_envelope_yields_its_encrypt_text_in_both_formats() {
        let xml = encrypted_envelope("gh_1", "abc+/=");
        assert_eq!(parse_encrypted(&xml).unwrap(), "abc+/=");
        let json = PushFormat::Json.envelope("gh_1", "abc+/=");
        assert_eq!(json, r#"{"Encrypt":"abc+/=","ToUserName":"gh_1"}"#);
        assert_eq!(parse_encrypted(&json).unwrap(), "abc+/=");
        assert_eq!(
            parse_encrypted("<xml><ToUserName>x</ToUserName></xml>"),
            Err(EventError::Missing("Encrypt"))
        );
    }

    #[test]
    fn malformed_bodies_are_refused() {
        assert!(matches!(
            parse_push("not xml"),
            Err(EventError::Malformed(_))
        ));
        assert!(matches!(
            parse_push("<xml><FromUserName>o1</FromUserName"),
            Err(EventError::Malformed(_))
        ));
        assert_eq!(
            parse_push("<xml><FromUserName>o1</FromUserName><MsgType>event</MsgType></xml>"),
            Err(EventError::Missing("CreateTime"))
        );
        assert_eq!(
            parse_push(
                "<xml><FromUserName>o 1</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>subscribe</Event></xml>"
            ),
            Err(EventError::Bad("FromUserName"))
        );
        let entity = "<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><FromUserName>&x;</FromUserName></xml>";
        assert!(parse_push(entity).is_err());
    }
}
