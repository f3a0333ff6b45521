//! Reading a JSON push (the OA console's JSON data format) into the same fields as the XML.
//!
//! The official message-encryption guide's worked example is
//! `{"ToUserName": "gh_…", "FromUserName": "o…", "CreateTime": 1714037059, "MsgType": "event",
//! "Event": "debug_demo", "debug_str": "hello world"}`: the XML's element names as keys, numbers
//! as JSON numbers. Each scalar is turned into the text the XML would have carried (an integer
//! keeps every digit: serde_json reads integers as `u64`/`i64`, never as `f64`), so one set of
//! rules ([`super::parse_push`]) reads both formats. Objects and arrays (fields wxnotify does
//! not read, such as a location's details) are skipped.

use serde_json::{Map, Value};

use super::{EventError, RawPush};

/// Parses a JSON object into the fields wxnotify reads.
pub(super) fn parse(body: &str) -> Result<RawPush, EventError> {
    let object: Map<String, Value> =
        serde_json::from_str(body).map_err(|e| EventError::Malformed(e.to_string()))?;
    let texts: Map<String, Value> = object
        .into_iter()
        .filter_map(|(key, value)| as_text(value).map(|text| (key, Value::String(text))))
        .collect();
    // Only strings are left, and every field of `RawPush` is an optional string: this cannot
    // fail, but a surprise is still an error rather than a panic.
    serde_json::from_value(Value::Object(texts)).map_err(|e| EventError::Malformed(e.to_string()))
}

/// The text of a scalar, as the XML would carry it; `None` for null, objects and arrays.
fn as_text(value: Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EventError, PushKind, parse_encrypted, parse_push};

    #[test]
    fn the_official_json_example_is_read_as_an_event_wxnotify_ignores() {
        // The plaintext example of the official message-encryption guide.
        let body = r#"{
    "ToUserName": "gh_97417a04a28d",
    "FromUserName": "o9AgO5Kd5ggOC-bXrbNODIiE3bGY",
    "CreateTime": 1714037059,
    "MsgType": "event",
    "Event": "debug_demo",
    "debug_str": "hello world"
}"#;
        let push = parse_push(body).unwrap();
        assert_eq!(push.to_user_name, "gh_97417a04a28d");
        assert_eq!(push.from.as_str(), "o9AgO5Kd5ggOC-bXrbNODIiE3bGY");
        assert_eq!(push.create_time, 1714037059);
        assert_eq!(
            push.kind,
            PushKind::OtherEvent {
                event: "debug_demo".into()
            }
        );
    }

    #[test]
    fn a_json_receipt_keeps_its_64_bit_msgid_as_a_number_or_a_string() {
        for msg_id in ["3557254367693750277", "\"3557254367693750277\""] {
            let body = format!(
                r#"{{"ToUserName":"gh_7f083739789a","FromUserName":"oia2TjuEGTNoeX76QEjQNrcURxG8","CreateTime":"1395658920","MsgType":"event","Event":"TEMPLATESENDJOBFINISH","MsgID":{msg_id},"Status":"failed: system failed"}}"#
            );
            let push = parse_push(&body).unwrap();
            assert_eq!(push.create_time, 1395658920);
            assert_eq!(
                push.kind,
                PushKind::TemplateSendJobFinish {
                    msg_id: 3557254367693750277,
                    status: "failed: system failed".into()
                }
            );
        }
    }

    #[test]
    fn subscribe_unsubscribe_and_messages_are_read_from_json() {
        let body = r#"{"FromUserName":"oOA1","CreateTime":1,"MsgType":"event","Event":"subscribe","EventKey":"qrscene_7","Ticket":"t"}"#;
        assert_eq!(
            parse_push(body).unwrap().kind,
            PushKind::Subscribe {
                event_key: Some("qrscene_7".into())
            }
        );
        let body = r#"{"FromUserName":"oOA1","CreateTime":1,"MsgType":"event","Event":"unsubscribe","EventKey":""}"#;
        assert_eq!(parse_push(body).unwrap().kind, PushKind::Unsubscribe);
        let body = r#"{"FromUserName":"oOA1","CreateTime":1,"MsgType":"location","MsgId":1234567890123456789,"Location_X":23.1,"SendLocationInfo":{"Label":"x"}}"#;
        assert_eq!(
            parse_push(body).unwrap().kind,
            PushKind::Message {
                msg_type: "location".into(),
                msg_id: Some(1234567890123456789)
            }
        );
    }

    #[test]
    fn the_json_envelope_yields_its_encrypt_text() {
        let body = r#"{"ToUserName":"gh_97417a04a28d","Encrypt":"+qdx1OKCy+5J/Q=="}"#;
        assert_eq!(parse_encrypted(body).unwrap(), "+qdx1OKCy+5J/Q==");
        assert_eq!(
            parse_encrypted(r#"{"ToUserName":"gh_1"}"#),
            Err(EventError::Missing("Encrypt"))
        );
    }

    #[test]
    fn bad_json_is_refused_with_the_field_or_the_reason() {
        for body in [
            "{",
            "{\"FromUserName\": }",
            "{} trailing",
            &format!("{}{}", "{\"a\":".repeat(200), "1"),
        ] {
            assert!(
                matches!(parse_push(body), Err(EventError::Malformed(_))),
                "{body}"
            );
        }
        assert_eq!(
            parse_push(r#"{"FromUserName":"oOA1","MsgType":"event"}"#),
            Err(EventError::Missing("CreateTime"))
        );
        assert_eq!(
            parse_push(r#"{"FromUserName":"oOA1","CreateTime":1.5,"MsgType":"event"}"#),
            Err(EventError::Bad("CreateTime"))
        );
        assert_eq!(
            parse_push(
                r#"{"FromUserName":"oOA1","CreateTime":1,"MsgType":"event","Event":"TEMPLATESENDJOBFINISH","MsgID":1e30,"Status":"success"}"#
            ),
            Err(EventError::Bad("MsgID"))
        );
        assert_eq!(
            parse_push(r#"{"FromUserName":{"o":1},"CreateTime":1,"MsgType":"event"}"#),
            Err(EventError::Missing("FromUserName"))
        );
    }
}
