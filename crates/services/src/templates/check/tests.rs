use std::collections::HashMap;

use super::*;
use crate::templates::catalog::{AppCatalog, CatalogTemplate, TemplateSource};

fn removed_at() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-12-01T08:00:00Z")
        .unwrap()
        .into()
}

fn catalog() -> Catalog {
    let t = |id: &str, keys: &[&str]| {
        (
            id.to_owned(),
            CatalogTemplate {
                template_id: id.into(),
                title: id.into(),
                content: String::new(),
                placeholders: keys.iter().map(|k| (*k).to_owned()).collect(),
                source: TemplateSource::Api,
                removed_at: None,
            },
        )
    };
    let (gone_id, mut gone) = t("T_GONE", &["thing1"]);
    gone.removed_at = Some(removed_at());
    let (hand_id, mut hand) = t("T_HAND", &["thing1", "time2"]);
    hand.source = TemplateSource::Manual;
    let mut c = Catalog::default();
    c.insert(
        AppName::default_app(),
        AppCatalog {
            synced_at: Some(chrono::Utc::now()),
            templates: HashMap::from([
                t(
                    "T_CAT",
                    &["thing1", "character_string2", "phrase3", "time4"],
                ),
                t("T_OLD", &["keyword1", "keyword2"]),
                t("T_ALL", &EVERY_TYPE.map(|(key, _)| key)),
                (gone_id, gone),
                (hand_id, hand),
            ]),
        },
    );
    c
}

/// A key of every type with an example value from WeChat's official pages (the types without
/// one there get a value of the kind the table describes).
const EVERY_TYPE: [(&str, &str); 13] = [
    ("thing1", "广州至北京"),
    ("character_string2", "A20261124001"),
    ("phrase3", "配送中"),
    ("time4", "2019年10月1日 15:01"),
    ("date5", "2018.01.01"),
    ("amount6", "￥100"),
    ("number7", "339208499"),
    ("letter8", "ABC"),
    ("symbol9", "%"),
    ("phone_number10", "+86-0766-66888866"),
    ("car_number11", "粤A8Z888挂"),
    ("name12", "某某"),
    ("const13", "已签收"),
];

fn data(pairs: &[(&str, &str)]) -> TemplateData {
    TemplateData::from_pairs(pairs).unwrap()
}

fn check(template: &str, pairs: &[(&str, &str)], truncate: bool) -> Result<Checked, Refusal> {
    check_message(
        &catalog(),
        &AppName::default_app(),
        &TemplateId::parse(template).unwrap(),
        &data(pairs),
        truncate,
    )
}

fn good() -> Vec<(&'static str, &'static str)> {
    vec![
        ("thing1", "订单已发货"),
        ("character_string2", "A20261124001"),
        ("phrase3", "已发货"),
        ("time4", "2026-11-24 10:00"),
    ]
}

fn with(key: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut d = good();
    d.retain(|(k, _)| *k != key);
    d.push((key, value));
    d
}

#[test]
fn a_message_that_fits_its_template_passes_without_warnings() {
    let checked = check("T_CAT", &good(), false).unwrap();
    assert_eq!(checked, Checked::default());
}

#[test]
fn thing_of_20_characters_passes_and_21_is_refused_with_the_key_named() {
    let twenty: &'static str = "一二三四五六七八九十一二三四五六七八九十";
    assert!(check("T_CAT", &with("thing1", twenty), false).is_ok());
    let twenty_one: &'static str = "一二三四五六七八九十一二三四五六七八九十一";
    let refusal = check("T_CAT", &with("thing1", twenty_one), false).unwrap_err();
    let text = refusal.to_string();
    assert!(text.contains("data.thing1.value"), "{text}");
    assert!(
        text.contains("at most 20 characters, this value has 21"),
        "{text}"
    );
    assert!(text.contains("truncate"), "{text}");
}

#[test]
fn chinese_in_character_string_is_refused_even_with_truncate() {
    let refusal = check("T_CAT", &with("character_string2", "编号A1"), true).unwrap_err();
    assert!(
        refusal
            .to_string()
            .contains("character_string allows no Chinese"),
        "{refusal}"
    );
}

#[test]
fn six_chinese_characters_of_phrase_are_refused() {
    let refusal = check("T_CAT", &with("phrase3", "已发货待收货"), false).unwrap_err();
    assert!(
        refusal.to_string().contains("data.phrase3.value"),
        "{refusal}"
    );
    assert!(check("T_CAT", &with("phrase3", "已发货待收"), false).is_ok());
}

#[test]
fn missing_and_unknown_keys_are_named() {
    let mut d = good();
    d.retain(|(k, _)| *k != "time4");
    d.push(("thing9", "x"));
    let refusal = check("T_CAT", &d, false).unwrap_err();
    assert_eq!(
        refusal.problems,
        vec![
            Problem::MissingKeys {
                keys: vec!["time4".into()]
            },
            Problem::UnknownKeys {
                keys: vec!["thing9".into()]
            },
        ]
    );
    let text = refusal.to_string();
    assert!(text.contains("missing data keys: time4"), "{text}");
    assert!(
        text.contains("unknown data keys (not placeholders of the template): thing9"),
        "{text}"
    );
}

#[test]
fn a_removed_template_is_refused_as_deleted_and_a_never_listed_one_only_warned_about() {
    let refusal = check("T_GONE", &[("thing1", "x")], false).unwrap_err();
    assert_eq!(
        refusal.problems,
        vec![Problem::DeletedTemplate {
            removed_at: removed_at()
        }]
    );
    assert!(refusal.names_deleted_template());
    assert!(
        refusal
            .to_string()
            .contains("deleted on WeChat's side: WeChat listed it before and its list lacks it since 2026-12-01 08:00:00 UTC"),
        "{refusal}"
    );
    // Never listed (a category template): sent, keys unchecked, with a warning.
    let unlisted = check("T_CATEGORY", &[("anything1", "x")], false).unwrap();
    assert_eq!(unlisted.warnings, vec![Warning::NotInCatalog]);
    // Its values still keep their type's rules.
    let long = "一".repeat(21);
    let too_long = check("T_CATEGORY", &[("thing1", long.as_str())], false).unwrap_err();
    assert!(matches!(too_long.problems[..], [Problem::TypeRule { .. }]));
    let unsynced = check_message(
        &Catalog::default(),
        &AppName::default_app(),
        &TemplateId::parse("T_GONE").unwrap(),
        &data(&good()),
        false,
    )
    .unwrap();
    assert_eq!(unsynced.warnings, vec![Warning::CatalogNotSynced]);
}

#[test]
fn a_manual_template_is_checked_like_a_listed_one() {
    let refusal = check("T_HAND", &[("thing1", "x"), ("thing2", "y")], false).unwrap_err();
    assert_eq!(
        refusal.problems,
        vec![
            Problem::MissingKeys {
                keys: vec!["time2".into()]
            },
            Problem::UnknownKeys {
                keys: vec!["thing2".into()]
            }
        ]
    );
    let ok = check(
        "T_HAND",
        &[("thing1", "x"), ("time2", "2026-11-24 10:00")],
        false,
    )
    .unwrap();
    assert_eq!(ok, Checked::default());
}

#[test]
fn first_and_remark_are_reported_as_ignored() {
    let mut d = good();
    d.push(("first", "您好"));
    d.push(("remark", "谢谢"));
    let checked = check("T_CAT", &d, false).unwrap();
    assert_eq!(
        checked.warnings,
        vec![
            Warning::Ignored {
                key: "first".into()
            },
            Warning::Ignored {
                key: "remark".into()
            }
        ]
    );
}

#[test]
fn unconfirmed_rules_warn_and_do_not_refuse() {
    let checked = check("T_CAT", &with("time4", "tomorrow morning"), false).unwrap();
    assert!(matches!(
        &checked.warnings[..],
        [Warning::Unconfirmed { key, .. }] if key == "time4"
    ));
}

#[test]
fn historical_templates_have_no_type_rules_but_long_values_are_flagged_as_folded() {
    let long: &'static str = "这是一个超过二十个字符的很长很长很长的关键词内容";
    let checked = check("T_OLD", &[("keyword1", long), ("keyword2", "x")], false).unwrap();
    assert!(matches!(&checked.warnings[..], [Warning::Folded { key, .. }] if key == "keyword1"));
}

#[test]
fn truncation_happens_only_when_asked_and_says_what_was_cut() {
    let long: &'static str = "一二三四五六七八九十一二三四五六七八九十一二三";
    assert!(check("T_CAT", &with("thing1", long), false).is_err());
    let checked = check("T_CAT", &with("thing1", long), true).unwrap();
    assert_eq!(
        checked.truncations,
        vec![Truncation {
            key: "thing1".into(),
            from: 23,
            to: 20
        }]
    );
    let sent = checked.data.as_ref().unwrap().get("thing1").unwrap();
    assert_eq!(sent.chars().count(), 20);
    assert_eq!(
        checked.truncations_json().unwrap(),
        serde_json::json!({"thing1": {"from": 23, "to": 20}})
    );
}

#[test]
fn line_breaks_are_refused() {
    // TemplateData refuses control characters already; U+2028 is a line break that is not one.
    let refusal = check("T_CAT", &with("thing1", "a\u{2028}b"), false).unwrap_err();
    assert_eq!(
        refusal.problems,
        vec![Problem::LineBreak {
            key: "thing1".into()
        }]
    );
}

#[test]
fn official_example_values_of_every_type_pass_without_warnings() {
    let checked = check("T_ALL", &EVERY_TYPE, false).unwrap();
    assert_eq!(checked, Checked::default());
    // The other date forms of the table's notes, in a date and in a time key.
    for date in ["01-01", "10月1日", "2019年10月1日", "2018-01-01~2018-01-07"] {
        let mut d = EVERY_TYPE.to_vec();
        d[4].1 = date;
        d[3].1 = "15:01~16:00";
        assert_eq!(
            check("T_ALL", &d, false).unwrap(),
            Checked::default(),
            "{date}"
        );
    }
}

#[test]
fn an_amount_of_11_digits_is_refused_even_with_truncate_and_10_pass() {
    let mut d = EVERY_TYPE.to_vec();
    d[5].1 = "¥1234567890";
    assert_eq!(check("T_ALL", &d, false).unwrap(), Checked::default());
    d[5].1 = "¥12345678901";
    let refusal = check("T_ALL", &d, true).unwrap_err();
    assert_eq!(
        refusal.problems,
        vec![Problem::TypeRule {
            key: "amount6".into(),
            rule: "amount allows at most 10 digits, this value has 11 before the decimal point"
                .into(),
            truncatable: false,
        }]
    );
    assert!(!refusal.to_string().contains("truncate"), "{refusal}");
}

#[test]
fn a_broken_length_limit_refuses_and_a_broken_format_only_warns() {
    let mut d = EVERY_TYPE.to_vec();
    d[6].1 = "1,000"; // number: a format rule
    d[11].1 = "张三李四王五赵六孙七"; // name: 10, the most
    d[12].1 = "一二三四五六七八九十一二三四五六七八九十一"; // const: 21
    let refusal = check("T_ALL", &d, true).unwrap_err();
    assert!(
        matches!(&refusal.problems[..], [Problem::TypeRule { key, truncatable: false, .. }] if key == "const13"),
        "{refusal:?}"
    );
    d[12].1 = "已签收";
    let checked = check("T_ALL", &d, false).unwrap();
    assert!(matches!(
        &checked.warnings[..],
        [Warning::Unconfirmed { key, rule }] if key == "number7" && rule.starts_with("number should")
    ));
}
