//! The Mini Program's subscribe templates: `GET /wxaapi/newtmpl/gettemplate` (with the MP's
//! token) and the rules a subscribe message's `data` must follow: the value table of the OA's
//! category templates ([`check_data`]) plus `enum` (only the values `keywordEnumValueList`
//! lists). Unlike the OA's, this list is complete.

use parking_lot::RwLock;
use serde::Serialize;
use serde_json::Value;

use super::config::MockMpTemplate;
use super::request::Params;
use super::state::Mock;
use super::templates::{check_data, field_type, label_and_example};
use super::tokens::App;
use super::wire::Answer;

/// The Mini Program's templates now: seeded from the configuration, changed by the control API.
#[derive(Debug)]
pub(super) struct MpTemplates(RwLock<Vec<MockMpTemplate>>);

impl MpTemplates {
    pub(super) fn new(seed: &[MockMpTemplate]) -> MpTemplates {
        MpTemplates(RwLock::new(seed.to_vec()))
    }

    /// The template with id `id`, if the Mini Program has it.
    pub(super) fn find(&self, id: &str) -> Option<MockMpTemplate> {
        self.0.read().iter().find(|t| t.id == id).cloned()
    }

    /// Adds (or replaces) a template.
    pub(super) fn add(&self, template: MockMpTemplate) {
        let mut list = self.0.write();
        list.retain(|t| t.id != template.id);
        list.push(template);
    }

    /// Deletes a template; true if it existed.
    pub(super) fn delete(&self, id: &str) -> bool {
        let mut list = self.0.write();
        let before = list.len();
        list.retain(|t| t.id != id);
        list.len() != before
    }

    fn all(&self) -> Vec<MockMpTemplate> {
        self.0.read().clone()
    }
}

/// Checks a subscribe message's `data`: the value rules of the key types, then the enums. The
/// error is the 47003 detail naming the field.
pub(super) fn check_subscribe_data(template: &MockMpTemplate, data: &Value) -> Result<(), String> {
    check_data(&template.keys, data)?;
    for (key, allowed) in &template.enums {
        let value = data
            .get(key)
            .and_then(|f| f.get("value"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !allowed.iter().any(|a| a == value) {
            return Err(format!("data.{key}.value invalid"));
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct TemplateList {
    errcode: i64,
    errmsg: &'static str,
    data: Vec<TemplateInfo>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TemplateInfo {
    pri_tmpl_id: String,
    title: String,
    content: String,
    example: String,
    #[serde(rename = "type")]
    kind: u8,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    keyword_enum_value_list: Vec<EnumValues>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnumValues {
    keyword_code: String,
    enum_value_list: Vec<String>,
}

fn describe(template: &MockMpTemplate) -> TemplateInfo {
    let lines = |example: bool| {
        let lines: Vec<String> = template
            .keys
            .iter()
            .map(|key| {
                let (label, sample) = label_and_example(field_type(key));
                let sample = template
                    .enums
                    .get(key)
                    .and_then(|v| v.first())
                    .map_or(sample, String::as_str);
                if example {
                    format!("{label}:{sample}")
                } else {
                    format!("{label}:{{{{{key}.DATA}}}}")
                }
            })
            .collect();
        lines.join("\n")
    };
    TemplateInfo {
        pri_tmpl_id: template.id.clone(),
        title: template.title.clone(),
        content: lines(false),
        example: lines(true),
        kind: if template.long_term { 3 } else { 2 },
        keyword_enum_value_list: template
            .enums
            .iter()
            .map(|(key, values)| EnumValues {
                keyword_code: key.clone(),
                enum_value_list: values.clone(),
            })
            .collect(),
    }
}

/// `GET /wxaapi/newtmpl/gettemplate?access_token=…` (MP token): every subscribe template,
/// `{"errcode":0,"errmsg":"ok","data":[…]}`.
pub(super) fn get_templates(mock: &Mock, params: &Params) -> Result<Answer, i64> {
    mock.tokens.check(params.get("access_token"), App::Mp)?;
    let data = mock.mp_templates.all().iter().map(describe).collect();
    Ok(Answer::ok(&TemplateList {
        errcode: 0,
        errmsg: "ok",
        data,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn enums_and_the_value_table_both_apply() {
        let t = &MockMpTemplate::defaults()[0];
        let data = |phrase: &str| json!({"thing1":{"value":"书"},"time2":{"value":"2026-12-08 10:00"},"phrase3":{"value":phrase}});
        assert_eq!(check_subscribe_data(t, &data("已发货")), Ok(()));
        assert_eq!(
            check_subscribe_data(t, &data("已取消")),
            Err("data.phrase3.value invalid".into())
        );
        assert_eq!(
            check_subscribe_data(t, &json!({"thing1":{"value":"书"}})),
            Err("data.time2.value is empty".into())
        );
    }

    #[test]
    fn the_list_carries_type_and_enum_values() {
        let one = serde_json::to_value(describe(&MockMpTemplate::defaults()[0])).unwrap();
        assert_eq!(one["type"], 2);
        assert_eq!(one["priTmplId"], "MP_ORDER_SHIPPED");
        assert_eq!(
            one["keywordEnumValueList"][0],
            json!({"keywordCode":"phrase3","enumValueList":["已发货","已签收"]})
        );
        assert!(
            one["content"]
                .as_str()
                .unwrap()
                .contains("{{phrase3.DATA}}")
        );
        let long = serde_json::to_value(describe(&MockMpTemplate::defaults()[1])).unwrap();
        assert_eq!(long["type"], 3);
        assert!(long.get("keywordEnumValueList").is_none());
    }
}
