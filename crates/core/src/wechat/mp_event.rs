//! What WeChat pushes to the Mini Program's message push URL about subscribe messages
//! (`docs/wechat.md` §14): the popup result, a later change of the person's settings and the
//! final result of a send. Parsing for `/wechat/mp-callback`, building for the fake WeChat.
//!
//! Both data formats carry the same names. In XML each template is one `<List>` inside
//! `<SubscribeMsgPopupEvent>` (or `…ChangeEvent`, `…SentEvent`); in JSON `List` is an object
//! for one template and an array for several, sometimes inside the wrapper object and sometimes
//! beside the other fields, and `CreateTime` (like `MsgID` and `ErrorCode`) may be a string or
//! a number. Every shape is read into the same [`MpPush`]. The envelope of safe mode and the
//! format detection are the OA's ([`super::event`]).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::event::{EventError, PushFormat, sender_and_time};
use crate::domain::OpenId;

/// The `Event` of the popup result.
pub const POPUP_EVENT: &str = "subscribe_msg_popup_event";
/// The `Event` of a later change in the person's settings (only cancellations are pushed).
pub const CHANGE_EVENT: &str = "subscribe_msg_change_event";
/// The `Event` of the final result of a send.
pub const SENT_EVENT: &str = "subscribe_msg_sent_event";

/// The person's choice for one template, in the popup or later in the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeChoice {
    /// The subscribe template (`priTmplId`).
    pub template_id: String,
    /// `accept`, `reject`, `ban`, `filter` or `acceptWithAudio`, as WeChat wrote it.
    pub status: String,
    /// `PopupScene` of a popup event (0 = a tap, 1 = after a payment, 2 = other), if any.
    pub popup_scene: Option<String>,
}

/// The final result of one subscribe message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentResult {
    /// The subscribe template.
    pub template_id: String,
    /// The msgid of the send, when WeChat gave one.
    pub msg_id: Option<i64>,
    /// 0 = delivered; otherwise why not.
    pub error_code: i64,
    /// `success`, `fail:user refuse to accept the msg`, … stored raw.
    pub error_status: String,
}

/// What a Mini Program push is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MpPushKind {
    /// `subscribe_msg_popup_event`: what the person chose in the popup, per template.
    Popup(Vec<SubscribeChoice>),
    /// `subscribe_msg_change_event`: a choice changed later in the settings.
    Change(Vec<SubscribeChoice>),
    /// `subscribe_msg_sent_event`: the final results of sends.
    Sent(Vec<SentResult>),
    /// Any other push (messages, other events): acknowledged and ignored.
    Other {
        /// `Event`, or `MsgType` for a message.
        name: String,
    },
}

/// A parsed Mini Program push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpPush {
    /// The Mini Program's original id (`gh_…`).
    pub to_user_name: String,
    /// The person's Mini Program openid.
    pub from: OpenId,
    /// Unix seconds, WeChat's clock.
    pub create_time: i64,
    /// What happened.
    pub kind: MpPushKind,
}

impl MpPushKind {
    /// The `Event` name.
    pub fn event(&self) -> &str {
        match self {
            MpPushKind::Popup(_) => POPUP_EVENT,
            MpPushKind::Change(_) => CHANGE_EVENT,
            MpPushKind::Sent(_) => SENT_EVENT,
            MpPushKind::Other { name } => name,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct RawItem {
    #[serde(rename = "TemplateId")]
    template_id: Option<String>,
    #[serde(rename = "SubscribeStatusString")]
    status: Option<String>,
    #[serde(rename = "PopupScene")]
    popup_scene: Option<String>,
    #[serde(rename = "MsgID")]
    msg_id: Option<String>,
    #[serde(rename = "ErrorCode")]
    error_code: Option<String>,
    #[serde(rename = "ErrorStatus")]
    error_status: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawList {
    #[serde(rename = "List", default)]
    list: Vec<RawItem>,
}

#[derive(Debug, Default, Deserialize)]
struct RawMpPush {
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
    #[serde(rename = "SubscribeMsgPopupEvent")]
    popup: Option<RawList>,
    #[serde(rename = "SubscribeMsgChangeEvent")]
    change: Option<RawList>,
    #[serde(rename = "SubscribeMsgSentEvent")]
    sent: Option<RawList>,
    #[serde(rename = "List", default)]
    list: Vec<RawItem>,
}

/// Parses a plaintext Mini Program push (or the decrypted content of a safe-mode one), XML or
/// JSON.
pub fn parse_mp_push(body: &str) -> Result<MpPush, EventError> {
    let body = body.trim_start_matches('\u{feff}');
    let raw: RawMpPush = match PushFormat::detect(body)? {
        PushFormat::Xml => {
            if !body.trim_start().starts_with("<xml") {
                return Err(EventError::Malformed(
                    "the root element is not <xml>".into(),
                ));
            }
            quick_xml::de::from_str(body).map_err(|e| EventError::Malformed(e.to_string()))?
        }
        PushFormat::Json => {
            let value: Value =
                serde_json::from_str(body).map_err(|e| EventError::Malformed(e.to_string()))?;
            if !value.is_object() {
                return Err(EventError::Malformed("not a JSON object".into()));
            }
            serde_json::from_value(normalise(value))
                .map_err(|e| EventError::Malformed(e.to_string()))?
        }
    };
    let (from, create_time) = sender_and_time(raw.from_user_name, raw.create_time)?;
    let msg_type = raw.msg_type.ok_or(EventError::Missing("MsgType"))?;
    let event = raw.event.unwrap_or_default().trim().to_owned();
    let mut items = raw.list;
    let kind = if msg_type.trim() != "event" {
        MpPushKind::Other {
            name: msg_type.trim().to_owned(),
        }
    } else if event == POPUP_EVENT {
        items.extend(raw.popup.map(|l| l.list).unwrap_or_default());
        MpPushKind::Popup(choices(items)?)
    } else if event == CHANGE_EVENT {
        items.extend(raw.change.map(|l| l.list).unwrap_or_default());
        MpPushKind::Change(choices(items)?)
    } else if event == SENT_EVENT {
        items.extend(raw.sent.map(|l| l.list).unwrap_or_default());
        MpPushKind::Sent(results(items)?)
    } else if event.is_empty() {
        return Err(EventError::Missing("Event"));
    } else {
        MpPushKind::Other { name: event }
    };
    Ok(MpPush {
        to_user_name: raw.to_user_name.unwrap_or_default().trim().to_owned(),
        from,
        create_time,
        kind,
    })
}

fn template_id(item: &RawItem) -> Result<String, EventError> {
    item.template_id
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .ok_or(EventError::Missing("List.TemplateId"))
}

fn choices(items: Vec<RawItem>) -> Result<Vec<SubscribeChoice>, EventError> {
    if items.is_empty() {
        return Err(EventError::Missing("List"));
    }
    items
        .into_iter()
        .map(|item| {
            Ok(SubscribeChoice {
                template_id: template_id(&item)?,
                status: item
                    .status
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .ok_or(EventError::Missing("List.SubscribeStatusString"))?,
                popup_scene: item.popup_scene.map(|s| s.trim().to_owned()),
            })
        })
        .collect()
}

fn results(items: Vec<RawItem>) -> Result<Vec<SentResult>, EventError> {
    if items.is_empty() {
        return Err(EventError::Missing("List"));
    }
    items
        .into_iter()
        .map(|item| {
            let msg_id = match item.msg_id.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(id) => Some(id.parse().map_err(|_| EventError::Bad("List.MsgID"))?),
            };
            Ok(SentResult {
                template_id: template_id(&item)?,
                msg_id,
                error_code: item
                    .error_code
                    .ok_or(EventError::Missing("List.ErrorCode"))?
                    .trim()
                    .parse()
                    .map_err(|_| EventError::Bad("List.ErrorCode"))?,
                error_status: item.error_status.unwrap_or_default().trim().to_owned(),
            })
        })
        .collect()
}

/// Turns every scalar into the text the XML would carry (integers keep every digit), a `List`
/// object into a one-item array, and drops nulls, so XML and JSON deserialise alike.
fn normalise(value: Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let v = match v {
                        Value::Object(_) if k == "List" => Value::Array(vec![v]),
                        v => v,
                    };
                    (k, normalise(v))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalise).collect()),
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        other => other,
    }
}

impl MpPush {
    /// The push in `format`, as WeChat writes it: XML with one `<List>` per item inside the
    /// event's wrapper element; JSON with `List` beside the other fields, an object for one item
    /// and an array for several, `CreateTime` a number (for the fake WeChat and tests).
    pub fn render(&self, format: PushFormat) -> String {
        match format {
            PushFormat::Xml => self.to_xml(),
            PushFormat::Json => self.to_json(),
        }
    }

    fn items(&self) -> Vec<Vec<(&'static str, String)>> {
        match &self.kind {
            MpPushKind::Popup(list) | MpPushKind::Change(list) => list
                .iter()
                .map(|c| {
                    let mut item = vec![
                        ("TemplateId", c.template_id.clone()),
                        ("SubscribeStatusString", c.status.clone()),
                    ];
                    if let Some(scene) = &c.popup_scene {
                        item.push(("PopupScene", scene.clone()));
                    }
                    item
                })
                .collect(),
            MpPushKind::Sent(list) => list
                .iter()
                .map(|r| {
                    let mut item = vec![("TemplateId", r.template_id.clone())];
                    if let Some(id) = r.msg_id {
                        item.push(("MsgID", id.to_string()));
                    }
                    item.push(("ErrorCode", r.error_code.to_string()));
                    item.push(("ErrorStatus", r.error_status.clone()));
                    item
                })
                .collect(),
            MpPushKind::Other { .. } => Vec::new(),
        }
    }

    fn wrapper(&self) -> Option<&'static str> {
        match self.kind {
            MpPushKind::Popup(_) => Some("SubscribeMsgPopupEvent"),
            MpPushKind::Change(_) => Some("SubscribeMsgChangeEvent"),
            MpPushKind::Sent(_) => Some("SubscribeMsgSentEvent"),
            MpPushKind::Other { .. } => None,
        }
    }

    /// The push as plaintext XML.
    pub fn to_xml(&self) -> String {
        let mut xml = format!(
            "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{}</CreateTime><MsgType>{}</MsgType><Event>{}</Event>",
            cdata(&self.to_user_name),
            cdata(self.from.as_str()),
            self.create_time,
            cdata("event"),
            cdata(self.kind.event())
        );
        if let Some(wrapper) = self.wrapper() {
            xml.push_str(&format!("<{wrapper}>"));
            for item in self.items() {
                xml.push_str("<List>");
                for (name, value) in item {
                    xml.push_str(&format!("<{name}>{}</{name}>", cdata(&value)));
                }
                xml.push_str("</List>");
            }
            xml.push_str(&format!("</{wrapper}>"));
        }
        xml.push_str("</xml>");
        xml
    }

    /// The push as plaintext JSON.
    pub fn to_json(&self) -> String {
        let mut object = Map::new();
        object.insert("ToUserName".into(), json!(self.to_user_name));
        object.insert("FromUserName".into(), json!(self.from.as_str()));
        object.insert("CreateTime".into(), json!(self.create_time));
        object.insert("MsgType".into(), json!("event"));
        object.insert("Event".into(), json!(self.kind.event()));
        let items: Vec<Value> = self
            .items()
            .into_iter()
            .map(|item| {
                let fields = item.into_iter().map(|(name, value)| {
                    let value = match (name, value.parse::<i64>()) {
                        ("MsgID" | "ErrorCode", Ok(n)) => json!(n),
                        (_, _) => json!(value),
                    };
                    (name.to_owned(), value)
                });
                Value::Object(fields.collect())
            })
            .collect();
        match items.len() {
            0 => {}
            1 => {
                object.insert("List".into(), items.into_iter().next().unwrap_or_default());
            }
            _ => {
                object.insert("List".into(), Value::Array(items));
            }
        }
        Value::Object(object).to_string()
    }
}

/// Wraps text in CDATA, splitting any `]]>` so the text survives unchanged.
fn cdata(text: &str) -> String {
    format!("<![CDATA[{}]]>", text.replace("]]>", "]]]]><![CDATA[>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(kind: MpPushKind) -> MpPush {
        MpPush {
            to_user_name: "gh_123456789abc".into(),
            from: OpenId::parse("o7esq5OI1Uej6Xixw1lA2H7XDVbc").unwrap(),
            create_time: 1_620_973_045,
            kind,
        }
    }

    #[test]
    fn the_documented_popup_event_is_read_with_every_template() {
        let xml = "<xml><ToUserName><![CDATA[gh_123456789abc]]></ToUserName><FromUserName><![CDATA[o7esq5OI1Uej6Xixw1lA2H7XDVbc]]></FromUserName><CreateTime>1620973045</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_popup_event]]></Event><SubscribeMsgPopupEvent><List><TemplateId><![CDATA[hD-ixGOhYmUfjOnI8MCzQMPshzGVeux_2vBRX1ZUtHU]]></TemplateId><SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>2</PopupScene></List><List><TemplateId><![CDATA[bDmywsp2oEHjwAadTGKkUHpC0RgBVSvaWWdWF_8W6ho]]></TemplateId><SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString><PopupScene>2</PopupScene></List></SubscribeMsgPopupEvent></xml>";
        let p = parse_mp_push(xml).unwrap();
        assert_eq!(p.create_time, 1_620_973_045);
        let MpPushKind::Popup(list) = p.kind else {
            panic!("not a popup event")
        };
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].status, "accept");
        assert_eq!(
            list[1].template_id,
            "bDmywsp2oEHjwAadTGKkUHpC0RgBVSvaWWdWF_8W6ho"
        );
        assert_eq!(list[1].popup_scene.as_deref(), Some("2"));
    }

    #[test]
    fn json_list_is_an_object_or_an_array_and_create_time_a_string_or_a_number() {
        for create_time in ["\"1620973045\"", "1620973045"] {
            let one = format!(
                r#"{{"ToUserName":"gh_1","FromUserName":"oMP1","CreateTime":{create_time},"MsgType":"event","Event":"subscribe_msg_sent_event","List":{{"TemplateId":"T1","MsgID":"1864323726461255680","ErrorCode":"0","ErrorStatus":"success"}}}}"#
            );
            let p = parse_mp_push(&one).unwrap();
            assert_eq!(p.create_time, 1_620_973_045);
            assert_eq!(
                p.kind,
                MpPushKind::Sent(vec![SentResult {
                    template_id: "T1".into(),
                    msg_id: Some(1_864_323_726_461_255_680),
                    error_code: 0,
                    error_status: "success".into(),
                }])
            );
        }
        let many = r#"{"FromUserName":"oMP1","CreateTime":1,"MsgType":"event","Event":"subscribe_msg_change_event","SubscribeMsgChangeEvent":{"List":[{"TemplateId":"T1","SubscribeStatusString":"reject"},{"TemplateId":"T2","SubscribeStatusString":"reject"}]}}"#;
        let MpPushKind::Change(list) = parse_mp_push(many).unwrap().kind else {
            panic!("not a change event")
        };
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].template_id, "T2");
    }

    #[test]
    fn every_kind_round_trips_through_both_formats() {
        let choice = |t: &str, s: &str| SubscribeChoice {
            template_id: t.into(),
            status: s.into(),
            popup_scene: Some("0".into()),
        };
        for kind in [
            MpPushKind::Popup(vec![choice("T1", "accept")]),
            MpPushKind::Popup(vec![choice("T1", "accept"), choice("T2", "reject")]),
            MpPushKind::Change(vec![SubscribeChoice {
                popup_scene: None,
                ..choice("T1", "reject")
            }]),
            MpPushKind::Sent(vec![SentResult {
                template_id: "T1".into(),
                msg_id: None,
                error_code: 10_002,
                error_status: "fail:user refuse to accept the msg".into(),
            }]),
        ] {
            let p = push(kind);
            for format in [PushFormat::Xml, PushFormat::Json] {
                let body = p.render(format);
                assert_eq!(parse_mp_push(&body).unwrap(), p, "{body}");
            }
        }
    }

    #[test]
    fn incomplete_events_are_refused_with_the_field() {
        assert_eq!(
            parse_mp_push(
                r#"{"FromUserName":"oMP1","CreateTime":1,"MsgType":"event","Event":"subscribe_msg_popup_event"}"#
            ),
            Err(EventError::Missing("List"))
        );
        assert_eq!(
            parse_mp_push(
                r#"{"FromUserName":"oMP1","CreateTime":1,"MsgType":"event","Event":"subscribe_msg_popup_event","List":{"SubscribeStatusString":"accept"}}"#
            ),
            Err(EventError::Missing("List.TemplateId"))
        );
        assert_eq!(
            parse_mp_push(r#"{"FromUserName":"oMP1","CreateTime":1.5,"MsgType":"event"}"#),
            Err(EventError::Bad("CreateTime"))
        );
        assert!(matches!(
            parse_mp_push("success"),
            Err(EventError::Malformed(_))
        ));
    }
}
