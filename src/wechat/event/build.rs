//! Writing the XML WeChat pushes: a [`Push`] as plaintext XML and the safe-mode envelope, for
//! the fake WeChat and the tests (the service only parses).

use super::{Push, PushKind};

impl Push {
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

/// The safe-mode envelope: `<xml><ToUserName>…</ToUserName><Encrypt>…</Encrypt></xml>`.
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
