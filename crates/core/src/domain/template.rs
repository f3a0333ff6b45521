//! Template ids and the `data` of a template message.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::ids::string_id;

/// The most fields one job may fill (WeChat templates have a handful; this guards the system).
pub const MAX_FIELDS: usize = 32;
/// The longest field value, in characters. WeChat truncates or rejects far shorter values per
/// field type (`thing` ≤ 20); this limit only protects the system from huge payloads.
pub const MAX_VALUE_CHARS: usize = 200;

string_id!(
    /// The id of a template in the OA's private template list.
    TemplateId, "template_id", max = 64, extra = "_-"
);
string_id!(
    /// The name of a `{{name.DATA}}` placeholder, e.g. `thing1`, `time2`, `keyword1`.
    FieldKey, "data key", max = 32, extra = "_"
);

/// Why template data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// No fields at all.
    #[error("data is empty; a template message needs at least one field")]
    Empty,
    /// Too many fields.
    #[error("data has {0} fields, at most {MAX_FIELDS} are allowed")]
    TooManyFields(usize),
    /// A value was empty; WeChat refuses those with 47003.
    #[error("data.{0}.value is empty")]
    EmptyValue(String),
    /// A value was too long.
    #[error("data.{key}.value is {chars} characters long, at most {MAX_VALUE_CHARS} are allowed")]
    ValueTooLong {
        /// The field.
        key: String,
        /// Its length in characters.
        chars: usize,
    },
    /// A value holds a control character (line breaks are not shown by WeChat either).
    #[error("data.{0}.value contains a control character")]
    ControlChar(String),
}

/// The `data` of a template message: placeholder name to value.
///
/// Producers may write a field as `"thing1": "text"` or in WeChat's own form
/// `"thing1": {"value": "text"}`; both mean the same. It serialises in the short form; the WeChat
/// client writes WeChat's form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateData(BTreeMap<FieldKey, String>);

impl TemplateData {
    /// Checks the fields and wraps them.
    pub fn new(fields: BTreeMap<FieldKey, String>) -> Result<Self, DataError> {
        if fields.is_empty() {
            return Err(DataError::Empty);
        }
        if fields.len() > MAX_FIELDS {
            return Err(DataError::TooManyFields(fields.len()));
        }
        for (key, value) in &fields {
            let chars = value.chars().count();
            if value.trim().is_empty() {
                return Err(DataError::EmptyValue(key.to_string()));
            }
            if chars > MAX_VALUE_CHARS {
                return Err(DataError::ValueTooLong {
                    key: key.to_string(),
                    chars,
                });
            }
            if value.chars().any(char::is_control) {
                return Err(DataError::ControlChar(key.to_string()));
            }
        }
        Ok(Self(fields))
    }

    /// Data from literal `(key, value)` pairs; the error says which key or value is wrong.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Self, String> {
        let fields = pairs
            .iter()
            .map(|(k, v)| {
                Ok((
                    FieldKey::parse(*k).map_err(|e| e.to_string())?,
                    (*v).to_owned(),
                ))
            })
            .collect::<Result<BTreeMap<_, _>, String>>()?;
        Self::new(fields).map_err(|e| e.to_string())
    }

    /// The fields in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&FieldKey, &str)> {
        self.0.iter().map(|(k, v)| (k, v.as_str()))
    }

    /// The placeholder names this data fills.
    pub fn keys(&self) -> impl Iterator<Item = &FieldKey> {
        self.0.keys()
    }

    /// The value of one field.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v.as_str())
    }

    /// WeChat's wire form, `{"key": {"value": "..."}}`, serialised straight from this data.
    pub fn to_wechat(&self) -> WechatData<'_> {
        WechatData(self)
    }
}

/// [`TemplateData`] in WeChat's wire form (see [`TemplateData::to_wechat`]).
#[derive(Debug, Clone, Copy)]
pub struct WechatData<'a>(&'a TemplateData);

impl Serialize for WechatData<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        #[derive(Serialize)]
        struct Value<'v> {
            value: &'v str,
        }
        let mut map = s.serialize_map(Some(self.0.0.len()))?;
        for (k, v) in &self.0.0 {
            map.serialize_entry(k.as_str(), &Value { value: v })?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for TemplateData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(
            untagged,
            expecting = "each data value is a string or {\"value\": \"…\"}"
        )]
        enum Field {
            Plain(String),
            Wechat { value: String },
        }
        let raw = BTreeMap::<FieldKey, Field>::deserialize(d)?;
        let fields = raw
            .into_iter()
            .map(|(k, f)| match f {
                Field::Plain(v) | Field::Wechat { value: v } => (k, v),
            })
            .collect();
        Self::new(fields).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for TemplateData {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TemplateData".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let key = generator.subschema_for::<FieldKey>();
        let value = schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_VALUE_CHARS,
        });
        schemars::json_schema!({
            "description": "Placeholder name to value; a value may also be written as WeChat's {\"value\": \"...\"}.",
            "type": "object",
            "minProperties": 1,
            "maxProperties": MAX_FIELDS,
            "propertyNames": key,
            "additionalProperties": {
                "anyOf": [
                    value,
                    {
                        "type": "object",
                        "required": ["value"],
                        "properties": {"value": value},
                        "additionalProperties": false
                    }
                ]
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_field_forms_mean_the_same() {
        let a: TemplateData =
            serde_json::from_str(r#"{"thing1":"订单已发货","time2":{"value":"2026-11-24 10:00"}}"#)
                .unwrap();
        assert_eq!(a.get("thing1"), Some("订单已发货"));
        assert_eq!(a.get("time2"), Some("2026-11-24 10:00"));
        assert_eq!(
            serde_json::to_value(a.to_wechat()).unwrap(),
            serde_json::json!({"thing1": {"value": "订单已发货"}, "time2": {"value": "2026-11-24 10:00"}})
        );
    }

    #[test]
    fn bad_data_is_refused_with_the_field_named() {
        let err = serde_json::from_str::<TemplateData>(r#"{"thing1":" "}"#).unwrap_err();
        assert!(
            err.to_string().contains("data.thing1.value is empty"),
            "{err}"
        );
        let long = format!(r#"{{"thing1":"{}"}}"#, "x".repeat(201));
        let err = serde_json::from_str::<TemplateData>(&long).unwrap_err();
        assert!(err.to_string().contains("201 characters"), "{err}");
        let err = serde_json::from_str::<TemplateData>(r#"{"thing 1":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("data key contains ' '"), "{err}");
        let err = serde_json::from_str::<TemplateData>(r#"{}"#).unwrap_err();
        assert!(err.to_string().contains("data is empty"), "{err}");
        let err = serde_json::from_str::<TemplateData>(r#"{"a":"x\ny"}"#).unwrap_err();
        assert!(err.to_string().contains("control character"), "{err}");
    }
}
