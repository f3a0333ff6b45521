use super::*;

/// Asserts that each value keeps every rule of `kind`, warnings included.
fn passes(kind: FieldType, values: &[&str]) {
    for value in values {
        assert_eq!(check(kind, value), None, "{kind:?} {value:?}");
    }
}

/// The finding for a value that must break a rule; `confirmed` says which kind it must be.
fn breaks(kind: FieldType, value: &str, confirmed: bool) -> Broken {
    let broken = check(kind, value).unwrap_or_else(|| panic!("{kind:?} {value:?} passed"));
    assert_eq!(
        broken.confirmed, confirmed,
        "{kind:?} {value:?}: {broken:?}"
    );
    broken
}

#[test]
fn only_type_names_followed_by_digits_are_category_keys() {
    assert_eq!(FieldType::of_key("thing1"), Some(FieldType::Thing));
    assert_eq!(
        FieldType::of_key("character_string12"),
        Some(FieldType::CharacterString)
    );
    assert_eq!(FieldType::of_key("const6"), Some(FieldType::Const));
    assert_eq!(FieldType::of_key("thing"), None);
    assert_eq!(FieldType::of_key("keyword1"), None);
    assert_eq!(FieldType::of_key("first"), None);
    assert_eq!(FieldType::of_key("short_thing1"), None);
}

#[test]
fn the_official_example_values_of_each_type_pass_without_warning() {
    // The examples of the table and of the request samples on the official pages.
    passes(FieldType::Thing, &["广州至北京"]);
    passes(FieldType::Number, &["339208499"]);
    passes(
        FieldType::Time,
        &["15:01", "2019年10月1日 15:01", "15:01:30"],
    );
    passes(
        FieldType::Date,
        &[
            "2019年10月1日",
            "2019年10月1日 15:01",
            "2015年01月05日",
            "2019-12-25 09:42",
            "2018-01-01",
            "2018/01/01",
            "2018.01.01",
            "2018-01",
            "01-01",
            "2019年10月",
            "10月1日",
        ],
    );
    passes(FieldType::Amount, &["￥100"]);
    passes(FieldType::PhoneNumber, &["+86-0766-66888866"]);
    passes(FieldType::CarNumber, &["粤A8Z888挂"]);
    passes(FieldType::Name, &["某某", "订阅"]);
    passes(FieldType::Phrase, &["配送中", "审核通过"]);
}

#[test]
fn values_of_the_kinds_the_table_describes_pass_without_warning() {
    // Types the table gives no example for, and the other shapes it names.
    passes(
        FieldType::CharacterString,
        &["A20261124001", "SF-1234_56#7"],
    );
    passes(FieldType::Letter, &["ABC", "abcXYZ"]);
    passes(FieldType::Symbol, &["%", "+-*/"]);
    passes(FieldType::Number, &["3.5", "0"]);
    passes(
        FieldType::Amount,
        &["¥99.50", "$3.5", "99.50元", "100元", "￥100元"],
    );
    passes(
        FieldType::Name,
        &["John Smith", "张三Smith", "阿卜杜拉·买买提"],
    );
    passes(FieldType::PhoneNumber, &["021-12345678", "13800138000"]);
    passes(FieldType::CarNumber, &["粤B12345", "京A12345D"]);
    passes(FieldType::Const, &["已签收"]);
}

#[test]
fn the_date_forms_of_the_tables_notes_and_ranges_with_a_tilde_pass() {
    passes(
        FieldType::Date,
        &[
            "2018.01.01",
            "01-01",
            "10月1日",
            "2019年10月1日",
            "2019年10月1日~2019年10月7日",
            "10月1日~10月7日",
            "2018-01-01 ~ 2018-01-07",
            "2019年10月1日 15:01~17:00",
            "2019年10月1日15:01",
        ],
    );
    passes(
        FieldType::Time,
        &[
            "15:01~16:00",
            "2019年10月1日 15:01~2019年10月1日 17:00",
            "2019年10月1日 15:01~17:00",
            "2026-11-24 10:00",
            "9:05",
        ],
    );
}

#[test]
fn times_and_dates_outside_the_tables_forms_only_warn() {
    for value in [
        "tomorrow",
        "3pm",
        "25:00",
        "15:1",
        "2022-01-27 15:00-16:00",
        "2019年10月1日",
        "15:01~16:00~17:00",
        "2026-11-24T10:00",
    ] {
        let broken = breaks(FieldType::Time, value, false);
        assert!(broken.rule.starts_with("time should be"), "{broken:?}");
    }
    for value in [
        "24/11/2026",
        "2019-02-30",
        "13-01",
        "19年10月1日",
        "15:01",
        "2018-01/01",
    ] {
        let broken = breaks(FieldType::Date, value, false);
        assert!(broken.rule.starts_with("date should be"), "{broken:?}");
    }
}

#[test]
fn thing_allows_20_characters_and_refuses_21() {
    assert_eq!(check(FieldType::Thing, &"一".repeat(20)), None);
    let broken = breaks(FieldType::Thing, &"一".repeat(21), true);
    assert!(broken.rule.contains("at most 20"), "{broken:?}");
    let short = broken.shortened.unwrap();
    assert_eq!(short.chars().count(), 20);
    assert!(short.ends_with('…'));
    assert_eq!(check(FieldType::Thing, &short), None);
}

#[test]
fn character_string_refuses_chinese_and_more_than_32() {
    assert_eq!(check(FieldType::CharacterString, &"A".repeat(32)), None);
    let chinese = breaks(FieldType::CharacterString, "A编号1", true);
    assert!(chinese.rule.contains("no Chinese"));
    assert_eq!(chinese.shortened, None, "cutting cannot fix Chinese");
    let long = breaks(FieldType::CharacterString, &"A".repeat(33), true);
    let short = long.shortened.unwrap();
    assert_eq!(short.chars().count(), 32);
    assert_eq!(check(FieldType::CharacterString, &short), None);
}

#[test]
fn phrase_allows_5_chinese_characters_and_refuses_6_or_anything_else() {
    let six = breaks(FieldType::Phrase, "已发货待收货", true);
    assert!(six.rule.contains("at most 5"));
    assert_eq!(six.shortened.as_deref(), Some("已发货待收"));
    assert_eq!(breaks(FieldType::Phrase, "shipped", true).shortened, None);
}

#[test]
fn amount_allows_10_digits_and_refuses_11() {
    passes(
        FieldType::Amount,
        &["¥1234567890", "1234567890元", "¥12345678.90"],
    );
    let eleven = breaks(FieldType::Amount, "¥12345678901", true);
    assert!(
        eleven
            .rule
            .contains("at most 10 digits, this value has 11 before the decimal point"),
        "{eleven:?}"
    );
    assert_eq!(
        eleven.shortened, None,
        "a cut amount would be a wrong amount"
    );
    assert!(breaks(FieldType::Amount, "12,345,678,901元", true).confirmed);
    // Ten digits before the point and more with the decimals: the table does not say.
    breaks(FieldType::Amount, "¥1234567890.50", false);
    for value in ["a lot", "-¥5.00", "¥ 100", "USD100", "¥1,000", "100.元"] {
        breaks(FieldType::Amount, value, false);
    }
}

#[test]
fn the_other_length_limits_refuse_without_offering_a_cut() {
    let cases: [(FieldType, String, String); 8] = [
        (FieldType::Number, "1".repeat(32), "1".repeat(33)),
        (FieldType::Letter, "a".repeat(32), "a".repeat(33)),
        (FieldType::Symbol, "%".repeat(5), "%".repeat(6)),
        (FieldType::PhoneNumber, "1".repeat(17), "1".repeat(18)),
        (
            FieldType::CarNumber,
            "粤A123456".into(),
            "粤A1234567".into(),
        ),
        (FieldType::Name, "张".repeat(10), "张".repeat(11)),
        (FieldType::Name, "a".repeat(20), "a".repeat(21)),
        (FieldType::Const, "x".repeat(20), "x".repeat(21)),
    ];
    for (kind, longest, over) in cases {
        passes(kind, &[&longest]);
        let broken = breaks(kind, &over, true);
        assert!(broken.rule.contains("at most"), "{kind:?}: {broken:?}");
        assert_eq!(broken.shortened, None, "{kind:?}");
    }
    // Chinese mixed with letters counts as a Chinese name.
    passes(FieldType::Name, &["张三李四王五赵六Ab"]);
    breaks(FieldType::Name, "张三李四王五赵六Abc", true);
}

#[test]
fn what_the_table_says_a_type_holds_is_only_warned_about() {
    let cases = [
        (FieldType::Number, "1,000"),
        (FieldType::Number, "-1"),
        (FieldType::Number, "12个"),
        (FieldType::Letter, "abc1"),
        (FieldType::Symbol, "a%"),
        (FieldType::PhoneNumber, "call me"),
        (FieldType::PhoneNumber, "021-1234 转 8"),
        (FieldType::CarNumber, "粤A·12345"),
        (FieldType::CarNumber, "A粤12345"),
        (FieldType::Name, "张三2"),
    ];
    for (kind, value) in cases {
        breaks(kind, value, false);
    }
}
