//! Writing what WeChat pushes: a [`Push`] as plaintext XML or JSON and the safe-mode envelope
//! in either format, for the fake WeChat and the tests (the service only parses).

use serde_json::{Map, Value, json};

use super::{Push, PushFormat, PushKind};

impl Push {
    /// The push in `format` (XML or JSON).
    pub fn render(&self, format: PushFormat) -> String {
        match format {
            PushFormat::Xml => self.to_xml(),
            PushFormat::Json => self.to_json(),
        }
    }

    /// The push as WeChat's plaintext JSON: the XML's element names as keys, `CreateTime` and
    /// the ids as JSON numbers (as in the official guide's example).
    pub fn to_json(&self) -> String {
        let mut object = Map::new();
        let mut put = |key: &str, value: Value| {
            object.insert(key.to_owned(), value);
        };
        put("ToUserName", json!(self.to_user_name));
        put("FromUserName", json!(self.from.as_str()));
        put("CreateTime", json!(self.create_time));
        match &self.kind {
            PushKind::Subscribe { event_key } => {
                put("MsgType", json!("event"));
                put("Event", json!("subscribe"));
                if let Some(key) = event_key {
                    put("EventKey", json!(key));
                }
            }
            PushKind::Unsubscribe => {
                put("MsgType", json!("event"));
                put("Event", json!("unsubscribe"));
            }
            PushKind::TemplateSendJobFinish { msg_id, status } => {
                put("MsgType", json!("event"));
                put("Event", json!("TEMPLATESENDJOBFINISH"));
                put("MsgID", json!(msg_id));
                put("Status", json!(status));
            }
            PushKind::OtherEvent { event } => {
                put("MsgType", json!("event"));
                put("Event", json!(event));
            }
            PushKind::Message { msg_type, msg_id } => {
                put("MsgType", json!(msg_type));
                if let Some(id) = msg_id {
                    put("MsgId", json!(id));
                }
            }
        }
        Value::Object(object).to_string()
    }

    /// The push as WeChat's plaintext XML (used by the fake WeChat and tests).
    pub fn to_xml(&self) -> String {
        let mut xml = format!(
            "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{}</CreateTime>",
            cdata(&self.to_user_name),
            cdata(self.from.as_str()),
            self.create_time
        );
        let tail = match &self.kind {
            PushKind::Subscribe { event_key } => format!(
                "<MsgType>{}</MsgType><Event>{}</Event>{}",
                cdata("event"),
                cdata("subscribe"),
                event_key
                    .as_deref()
                    .map(|k| format!("<EventKey>{}</EventKey>", cdata(k)))
                    .unwrap_or_default()
            ),
            PushKind::Unsubscribe => format!(
                "<MsgType>{}</MsgType><Event>{}</Event>",
                cdata("event"),
                cdata("unsubscribe")
            ),
            PushKind::TemplateSendJobFinish { msg_id, status } => format!(
                "<MsgType>{}</MsgType><Event>{}</Event><MsgID>{msg_id}</MsgID><Status>{}</Status>",
                cdata("event"),
                cdata("TEMPLATESENDJOBFINISH"),
                cdata(status)
            ),
            PushKind::OtherEvent { event } => format!(
                "<MsgType>{}</MsgType><Event>{}</Event>",
                cdata("event"),
                cdata(event)
            ),
            PushKind::Message { msg_type, msg_id } => format!(
                "<MsgType>{}</MsgType>{}",
                cdata(msg_type),
                msg_id
                    .map(|id| format!("<MsgId>{id}</MsgId>"))
                    .unwrap_or_default()
            ),
        };
        xml.push_str(&tail);
        xml.push_str("</xml>");
        xml
    }
}

impl PushFormat {
    /// The safe-mode envelope in this format: `<xml><ToUserName>…</ToUserName><Encrypt>…</Encrypt></xml>`
    /// or `{"ToUserName": "…", "Encrypt": "…"}`.
    pub fn envelope(self, to_user_name: &str, encrypt: &str) -> String {
        match self {
            PushFormat::Xml => encrypted_envelope(to_user_name, encrypt),
            PushFormat::Json => {
                json!({ "ToUserName": to_user_name, "Encrypt": encrypt }).to_string()
            }
        }
    }

    /// The `Content-Type` the fake WeChat sends a push with (what real WeChat sends is not
    /// documented; wxnotify reads the body, not this header).
    pub fn content_type(self) -> &'static str {
        match self {
            PushFormat::Xml => "text/xml",
            PushFormat::Json => "application/json",
        }
    }
}

/// The safe-mode envelope in XML: `<xml><ToUserName>…</ToUserName><Encrypt>…</Encrypt></xml>`.
pub fn encrypted_envelope(to_user_name: &str, encrypt: &str) -> String {
    format!(
        "<xml><ToUserName>{}</ToUserName><Encrypt>{}</Encrypt></xml>",
        cdata(to_user_name),
        cdata(encrypt)
    )
}

/// Wraps text in CDATA, splitting any `]]>` so the text survives unchanged.
fn cdata(text: &str) -> String {
    format!("<![CDATA[{}]]>", text.replace("]]>", "]]]]><![CDATA[>"))
}
