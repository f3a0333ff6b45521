//! The OA's private templates: `GET /cgi-bin/template/get_all_private_template` and the rules a
//! send's `data` must follow (`docs/wechat.md` §8.2, §8.5).
//!
//! Like real WeChat, the list holds historical templates (keys `keyword1` …) only: category
//! templates (keys `thing1`, `time2` …) are known to sends but not listed ("目前暂不支持通过API获取
//! 类目模板列表", WeChat's developer community), unless
//! [`MockConfig::list_category_templates`](super::config::MockConfig::list_category_templates).
//!
//! A key's type is its name without the trailing digits (`thing1` → `thing`). Only the rules
//! staff answers confirm are enforced: every key present and non-empty; `thing` ≤ 20
//! characters; `character_string` ≤ 32 characters, no Chinese; `phrase` ≤ 5 Chinese characters.
//! Keys the template does not use (e.g. the retired `first`/`remark`) are ignored, as WeChat
//! strips them.

use serde::Serialize;
use serde_json::Value;

use super::config::MockTemplate;
use super::request::Params;
use super::state::Mock;
use super::tokens::App;
use super::wire::Answer;

/// The OA's templates now: seeded from the configuration, changed by the control API (a
/// template deleted on WeChat's side answers 40037 from then on).
#[derive(Debug)]
pub(super) struct Templates(parking_lot::RwLock<Vec<MockTemplate>>);

impl Templates {
    pub(super) fn new(seed: &[MockTemplate]) -> Templates {
        Templates(parking_lot::RwLock::new(seed.to_vec()))
    }

    /// The template with id `id`, if the OA has it.
    pub(super) fn find(&self, id: &str) -> Option<MockTemplate> {
        self.0.read().iter().find(|t| t.id == id).cloned()
    }

    /// Every template.
    pub(super) fn all(&self) -> Vec<MockTemplate> {
        self.0.read().clone()
    }

    /// Adds (or replaces) a template.
    pub(super) fn add(&self, template: MockTemplate) {
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
}

/// Checks a send's `data` against a template's `keys`; the error is the 47003 detail, e.g.
/// `data.thing1.value is empty`.
pub(super) fn check_data(keys: &[String], data: &Value) -> Result<(), String> {
    for key in keys {
        match data.get(key).and_then(|field| field.get("value")) {
            None | Some(Value::Null) => return Err(format!("data.{key}.value is empty")),
            Some(Value::String(s)) if s.is_empty() => {
                return Err(format!("data.{key}.value is empty"));
            }
            Some(Value::String(s)) if value_fits(field_type(key), s) => {}
            Some(_) => return Err(format!("data.{key}.value invalid")),
        }
    }
    Ok(())
}

/// `thing1` → `thing`, `character_string12` → `character_string`.
pub(super) fn field_type(key: &str) -> &str {
    key.trim_end_matches(|c: char| c.is_ascii_digit())
}

fn value_fits(kind: &str, value: &str) -> bool {
    let chars = value.chars().count();
    match kind {
        "thing" => chars <= 20,
        "character_string" => chars <= 32 && value.is_ascii(),
        "phrase" => chars <= 5 && value.chars().all(is_chinese),
        _ => true,
    }
}

fn is_chinese(c: char) -> bool {
    ('\u{4e00}'..='\u{9fff}').contains(&c)
}

/// A label and an example value for a field type, to render the template's content.
pub(super) fn label_and_example(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "thing" => ("内容", "订单已发货"),
        "time" => ("时间", "2024-01-01 12:00"),
        "date" => ("日期", "2024-01-01"),
        "amount" => ("金额", "¥99.00"),
        "character_string" => ("编号", "A20240101001"),
        "phrase" => ("状态", "已发货"),
        "number" => ("数量", "1"),
        "phone_number" => ("电话", "021-12345678"),
        "name" => ("姓名", "张三"),
        _ => ("内容", "示例"),
    }
}

#[derive(Serialize)]
struct TemplateList {
    template_list: Vec<TemplateInfo>,
}

#[derive(Serialize)]
struct TemplateInfo {
    template_id: String,
    title: String,
    primary_industry: &'static str,
    deputy_industry: &'static str,
    content: String,
    example: String,
}

fn describe(template: &MockTemplate) -> TemplateInfo {
    let lines = |example: bool| {
        let lines: Vec<String> = template
            .keys
            .iter()
            .map(|key| {
                let (label, sample) = label_and_example(field_type(key));
                if example {
                    format!("{label}：{sample}")
                } else {
                    format!("{label}：{{{{{key}.DATA}}}}")
                }
            })
            .collect();
        lines.join("\n")
    };
    TemplateInfo {
        template_id: template.id.clone(),
        title: template.title.clone(),
        primary_industry: "IT科技",
        deputy_industry: "互联网|电子商务",
        content: lines(false),
        example: lines(true),
    }
}

/// `GET /cgi-bin/template/get_all_private_template?access_token=…`.
pub(super) fn private_templates(mock: &Mock, params: &Params) -> Result<Answer, i64> {
    mock.tokens.check(params.get("access_token"), App::Oa)?;
    let listed = |t: &&MockTemplate| mock.cfg.list_category_templates || !t.is_category();
    let template_list = mock
        .templates
        .all()
        .iter()
        .filter(listed)
        .map(describe)
        .collect();
    Ok(Answer::ok(&TemplateList { template_list }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn data_rules_follow_the_field_types() {
        let t = MockTemplate::new("T", "t", &["thing1", "character_string2", "phrase3"]);
        let data = |a: &str, b: &str, c: &str| json!({"thing1":{"value":a},"character_string2":{"value":b},"phrase3":{"value":c}});
        assert_eq!(check_data(&t.keys, &data("好", "A1", "已发货")), Ok(()));
        assert_eq!(
            check_data(&t.keys, &data("", "A1", "已发货")),
            Err("data.thing1.value is empty".into())
        );
        let long = "一".repeat(21);
        assert_eq!(
            check_data(&t.keys, &data(&long, "A1", "已发货")),
            Err("data.thing1.value invalid".into())
        );
        assert!(check_data(&t.keys, &data("x", "编号", "已发货")).is_err());
        assert!(check_data(&t.keys, &data("x", "A1", "shipped")).is_err());
        assert!(check_data(&t.keys, &json!({"thing1":{"value":"x"}})).is_err());
    }

    #[test]
    fn category_templates_are_told_from_historical_ones() {
        assert!(
            MockTemplate::defaults()
                .iter()
                .all(MockTemplate::is_category)
        );
        let old = MockTemplate::new("T", "t", &["first", "keyword1", "keyword2", "remark"]);
        assert!(!old.is_category());
    }

    #[test]
    fn content_lists_every_placeholder() {
        let info = describe(&MockTemplate::defaults()[0]);
        assert_eq!(info.content, "内容：{{thing1.DATA}}\n时间：{{time2.DATA}}");
    }
}
