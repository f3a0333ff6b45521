//! The body of `POST /admin/api/campaigns`, read in memory near its size: at most
//! [`CREATE_BODY_LIMIT`] bytes and [`MAX_RECIPIENTS`] recipients inline, each recipient kept as
//! its JSON text and parsed only when the snapshot copies it (no tree of the whole list), and
//! every number and key checked with a 400 naming it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use wxnotify_core::domain::{MiniProgramLink, MpSubscribe};
use wxnotify_services::campaigns::audience::{Item, ListEntry, list_item};

/// Largest create request (with an explicit list of recipients), bytes. Larger audiences are a
/// recipients file (`wxnotify campaign create --recipients`), streamed from disk.
pub const CREATE_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// Most recipients inline in one create request.
pub const MAX_RECIPIENTS: usize = 100_000;

/// `POST /admin/api/campaigns`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a campaign {\"template_id\", \"data\", \"audience\", …}"
)]
pub struct CreateBody {
    /// A name for people (the id stays the key).
    pub name: Option<String>,
    /// Shorten values too long for their key type instead of refusing those recipients.
    #[serde(default)]
    pub truncate: bool,
    /// The app (default: the default app).
    pub app: Option<String>,
    /// The OA template.
    pub template_id: String,
    /// Shared template fields.
    pub data: serde_json::Value,
    /// Web page link (http or https, as a job's).
    pub url: Option<url::Url>,
    /// Mini Program link.
    pub miniprogram: Option<MiniProgramLink>,
    /// The Mini Program subscribe message (as a job's `mp_subscribe`): non-followers holding a
    /// grant for its template are in the audience and get it.
    pub mp_subscribe: Option<MpSubscribe>,
    /// Who receives it.
    pub audience: AudienceBody,
    /// Sends per second (default and ceiling: the app's rate).
    pub rate: Option<u32>,
    /// `HH:MM-HH:MM`.
    pub window: Option<String>,
    /// IANA time zone (default UTC).
    pub time_zone: Option<String>,
    /// Not before.
    pub start_at: Option<DateTime<Utc>>,
    /// At most this many a day (1 to 100,000,000).
    pub daily_cap: Option<u64>,
    /// Not sent after.
    pub not_after: Option<DateTime<Utc>>,
}

impl CreateBody {
    /// Parses a body; every problem is a message naming its field (`audience.recipients`,
    /// `daily_cap`, an unknown key, …).
    pub fn parse(body: &[u8]) -> Result<CreateBody, String> {
        let de = &mut serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                format!("the body is not a campaign: {inner}")
            } else {
                format!("{path}: {inner}")
            }
        })
    }
}

/// The audience of a new campaign: `"followers"` or `{"recipients": [...]}`.
#[derive(Debug)]
pub enum AudienceBody {
    /// A named audience (`"followers"` is the one there is).
    Named(String),
    /// The recipients, each as its JSON text, in order.
    List(Vec<Box<RawValue>>),
}

impl AudienceBody {
    /// The recipients as audience items, each parsed when it is reached (bad ones are bad lines
    /// with their 1-based position, as in a file).
    pub fn items(list: Vec<Box<RawValue>>) -> impl Iterator<Item = Item> + Send {
        list.into_iter().enumerate().map(|(i, raw)| {
            let entry = serde_json::from_str::<ListEntry>(raw.get()).map_err(|e| {
                format!("not a recipient ({{\"to\": {{\"mp_openid\": …}}, \"data\": {{…}}}}): {e}")
            });
            list_item(i as u64 + 1, entry)
        })
    }
}

impl<'de> Deserialize<'de> for AudienceBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AudienceVisitor)
    }
}

struct AudienceVisitor;

impl<'de> Visitor<'de> for AudienceVisitor {
    type Value = AudienceBody;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"followers\" or {\"recipients\": [...]}")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<AudienceBody, E> {
        Ok(AudienceBody::Named(v.to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AudienceBody, A::Error> {
        let mut list = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "recipients" {
                return Err(de::Error::unknown_field(&key, &["recipients"]));
            }
            list = Some(map.next_value_seed(RecipientsSeed)?);
        }
        list.map(AudienceBody::List)
            .ok_or_else(|| de::Error::missing_field("recipients"))
    }
}

struct RecipientsSeed;

impl<'de> DeserializeSeed<'de> for RecipientsSeed {
    type Value = Vec<Box<RawValue>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecipientsSeed {
    type Value = Vec<Box<RawValue>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of at most {MAX_RECIPIENTS} recipients")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            if out.len() == MAX_RECIPIENTS {
                return Err(de::Error::custom(format!(
                    "more than {MAX_RECIPIENTS} recipients in one request; give a larger audience as a recipients file (wxnotify campaign create --recipients FILE)"
                )));
            }
            out.push(raw);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(audience: &str, extra: &str) -> String {
        format!(r#"{{"template_id":"T","data":{{}},"audience":{audience}{extra}}}"#)
    }

    #[test]
    fn recipients_are_kept_as_text_and_read_one_at_a_time() {
        let b = body(
            r#"{"recipients":[{"to":{"mp_openid":"oMP1"}},{"to":5},{"to":{"unionid":"u1"},"data":{"k":"v"}}]}"#,
            "",
        );
        let AudienceBody::List(list) = CreateBody::parse(b.as_bytes()).unwrap().audience else {
            panic!("a list");
        };
        let items: Vec<Item> = AudienceBody::items(list).collect();
        assert!(items[0].is_ok() && items[2].is_ok());
        assert_eq!(items[1].as_ref().unwrap_err().line, 2);
        let named = CreateBody::parse(body("\"followers\"", "").as_bytes()).unwrap();
        assert!(named.mp_subscribe.is_none());
        let with_form = CreateBody::parse(
            body(
                "\"followers\"",
                r#","mp_subscribe":{"template_id":"S1","data":{"thing1":{"value":"x"}}}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(with_form.mp_subscribe.unwrap().template_id.as_str(), "S1");
        assert!(matches!(named.audience, AudienceBody::Named(n) if n == "followers"));
    }

    #[test]
    fn every_problem_names_its_field() {
        let e = CreateBody::parse(
            body("\"followers\"", r#","daily_cap":18446744073709551616"#).as_bytes(),
        )
        .unwrap_err();
        assert!(e.starts_with("daily_cap"), "{e}");
        let e =
            CreateBody::parse(body("\"followers\"", r#","dailycap":1"#).as_bytes()).unwrap_err();
        assert!(e.contains("dailycap"), "{e}");
        let e = CreateBody::parse(body(r#"{"recipient":[]}"#, "").as_bytes()).unwrap_err();
        assert!(e.contains("recipient"), "{e}");
        let mut many = String::from(r#"{"recipients":["#);
        for _ in 0..=MAX_RECIPIENTS {
            many.push_str("0,");
        }
        many.push_str("0]}");
        let e = CreateBody::parse(body(&many, "").as_bytes()).unwrap_err();
        assert!(e.starts_with("audience") && e.contains("100000"), "{e}");
        let e = CreateBody::parse(
            body("\"followers\"", r#","mp_subscribe":{"template_id":"S1"}"#).as_bytes(),
        )
        .unwrap_err();
        assert!(e.starts_with("mp_subscribe") && e.contains("data"), "{e}");
        let e = CreateBody::parse(b"5").unwrap_err();
        assert!(!e.contains("struct") && e.contains("template_id"), "{e}");
        let b = body(r#"{"recipients":[[1]]}"#, "");
        let AudienceBody::List(list) = CreateBody::parse(b.as_bytes()).unwrap().audience else {
            panic!("a list");
        };
        let items: Vec<Item> = AudienceBody::items(list).collect();
        let e = &items[0].as_ref().unwrap_err().error;
        assert!(!e.contains("struct") && !e.contains("ListEntry"), "{e}");
    }
}
