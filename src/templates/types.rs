//! The value rules of category-template keys (`wechat-api.md` §5.4). A category key is a type
//! name followed by digits (`thing1`, `time2`, `character_string3`); the type decides what a
//! value may hold. Three rules are confirmed by WeChat staff and make WeChat answer 47003:
//! `thing` ≤ 20 characters, `character_string` ≤ 32 characters without Chinese, `phrase` ≤ 5
//! Chinese characters. The others come from third-party copies of the table and are only
//! warned about. Keys of historical templates (`keyword1`, `first` …) have no type: WeChat folds
//! their values past 20 characters instead of refusing them.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// The types of category-template keys wxnotify knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// `thing`: ≤ 20 characters of anything (confirmed).
    Thing,
    /// `character_string`: ≤ 32 digits, letters or symbols, no Chinese (confirmed).
    CharacterString,
    /// `phrase`: ≤ 5 Chinese characters (confirmed).
    Phrase,
    /// `time`: a 24-hour time, optionally with a date; ranges joined by `~`.
    Time,
    /// `date`: a year-month-day date; ranges joined by `~`.
    Date,
    /// `amount`: an optional currency sign, ≤ 12 digits with up to 2 decimals, optional 元.
    Amount,
    /// `number`: ≤ 32 digits.
    Number,
    /// `letter`: ≤ 32 letters.
    Letter,
    /// `symbol`: ≤ 5 symbols.
    Symbol,
    /// `phone_number`: ≤ 17 digits and symbols.
    PhoneNumber,
    /// `car_number`: ≤ 8 characters.
    CarNumber,
    /// `name`: ≤ 10 Chinese characters or ≤ 20 letters.
    Name,
    /// `const`: ≤ 20 characters, a pre-approved value.
    Const,
}

impl FieldType {
    /// The type of `key`: `Some` for a category key (a known type name followed by digits).
    pub fn of_key(key: &str) -> Option<FieldType> {
        let name = key.trim_end_matches(|c: char| c.is_ascii_digit());
        if name.len() == key.len() {
            return None;
        }
        Some(match name {
            "thing" => FieldType::Thing,
            "character_string" => FieldType::CharacterString,
            "phrase" => FieldType::Phrase,
            "time" => FieldType::Time,
            "date" => FieldType::Date,
            "amount" => FieldType::Amount,
            "number" => FieldType::Number,
            "letter" => FieldType::Letter,
            "symbol" => FieldType::Symbol,
            "phone_number" => FieldType::PhoneNumber,
            "car_number" => FieldType::CarNumber,
            "name" => FieldType::Name,
            "const" => FieldType::Const,
            _ => return None,
        })
    }

    /// Whether WeChat is known to refuse (47003) a value that breaks this type's rule. The
    /// others are warnings: the fact sheet marks them unconfirmed for OA templates.
    pub fn confirmed(self) -> bool {
        matches!(
            self,
            FieldType::Thing | FieldType::CharacterString | FieldType::Phrase
        )
    }
}

/// How a value breaks its type's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The rule, in words, e.g. `thing allows at most 20 characters, this value has 21`.
    pub rule: String,
    /// A shortened value that keeps the rule, when cutting can fix it (confirmed length rules).
    pub shortened: Option<String>,
}

/// The longest `thing` / `const` value.
pub const THING_MAX: usize = 20;
/// The longest `character_string` value.
pub const CHARACTER_STRING_MAX: usize = 32;
/// The longest `phrase` value.
pub const PHRASE_MAX: usize = 5;

/// Whether `c` is a Chinese (CJK) character.
pub fn is_chinese(c: char) -> bool {
    matches!(c,
        '\u{4e00}'..='\u{9fff}' | '\u{3400}'..='\u{4dbf}' | '\u{f900}'..='\u{faff}'
        | '\u{20000}'..='\u{2a6df}')
}

/// Checks `value` against the rule of `kind`; `None` when it fits.
pub fn check(kind: FieldType, value: &str) -> Option<Broken> {
    let chars = value.chars().count();
    let too_long = |max: usize, name: &str| {
        format!("{name} allows at most {max} characters, this value has {chars}")
    };
    let broken = |rule: String| {
        Some(Broken {
            rule,
            shortened: None,
        })
    };
    match kind {
        FieldType::Thing if chars > THING_MAX => Some(Broken {
            rule: too_long(THING_MAX, "thing"),
            shortened: Some(cut(value, THING_MAX, "…")),
        }),
        FieldType::CharacterString if value.chars().any(is_chinese) => {
            broken("character_string allows no Chinese characters".into())
        }
        FieldType::CharacterString if chars > CHARACTER_STRING_MAX => Some(Broken {
            rule: too_long(CHARACTER_STRING_MAX, "character_string"),
            shortened: Some(cut(value, CHARACTER_STRING_MAX, "...")),
        }),
        FieldType::Phrase if !value.chars().all(is_chinese) => {
            broken("phrase allows Chinese characters only".into())
        }
        FieldType::Phrase if chars > PHRASE_MAX => Some(Broken {
            rule: too_long(PHRASE_MAX, "phrase"),
            shortened: Some(value.chars().take(PHRASE_MAX).collect()),
        }),
        FieldType::Time if !ranges(value, is_time) => {
            broken("time should be a 24-hour time such as 2026-11-24 10:00 or 10:00 (ranges joined by ~)".into())
        }
        FieldType::Date if !ranges(value, is_date) => {
            broken("date should be a date such as 2026-11-24 or 2026年11月24日 (ranges joined by ~)".into())
        }
        FieldType::Amount if !is_amount(value) => {
            broken("amount should be an optional currency sign and at most 12 digits with up to 2 decimals, optionally followed by 元".into())
        }
        FieldType::Number if chars > 32 || !value.chars().all(|c| c.is_ascii_digit() || c == '.') => {
            broken("number should be at most 32 digits".into())
        }
        FieldType::Letter if chars > 32 || !value.chars().all(|c| c.is_ascii_alphabetic()) => {
            broken("letter should be at most 32 letters".into())
        }
        FieldType::Symbol if chars > 5 => broken(too_long(5, "symbol")),
        FieldType::PhoneNumber
            if chars > 17 || value.chars().any(|c| c.is_alphabetic()) =>
        {
            broken("phone_number should be at most 17 digits and symbols".into())
        }
        FieldType::CarNumber if chars > 8 => broken(too_long(8, "car_number")),
        FieldType::Name if !is_name(value) => {
            broken("name should be at most 10 Chinese characters or 20 letters".into())
        }
        FieldType::Const if chars > THING_MAX => broken(too_long(THING_MAX, "const")),
        _ => None,
    }
}

/// The first characters of `value` with `ellipsis` appended, `max` characters in all.
fn cut(value: &str, max: usize, ellipsis: &str) -> String {
    let keep = max - ellipsis.chars().count();
    value.chars().take(keep).collect::<String>() + ellipsis
}

fn ranges(value: &str, one: fn(&str) -> bool) -> bool {
    value.split('~').all(|part| one(part.trim()))
}

fn is_time(s: &str) -> bool {
    const WITH_DATE: [&str; 6] = [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y/%m/%d %H:%M",
        "%Y/%m/%d %H:%M:%S",
        "%Y年%m月%d日 %H:%M",
        "%Y年%m月%d日 %H:%M:%S",
    ];
    WITH_DATE
        .iter()
        .any(|f| NaiveDateTime::parse_from_str(s, f).is_ok())
        || ["%H:%M", "%H:%M:%S"]
            .iter()
            .any(|f| NaiveTime::parse_from_str(s, f).is_ok())
        || is_date(s)
}

fn is_date(s: &str) -> bool {
    ["%Y-%m-%d", "%Y/%m/%d", "%Y年%m月%d日"]
        .iter()
        .any(|f| NaiveDate::parse_from_str(s, f).is_ok())
}

fn is_amount(s: &str) -> bool {
    let s = s.strip_suffix('元').unwrap_or(s);
    let s = s.trim_start_matches(['¥', '￥', '$', '€', '£', '-']);
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    !int.is_empty()
        && int.len() <= 12
        && int.chars().all(|c| c.is_ascii_digit())
        && frac.len() <= 2
        && frac.chars().all(|c| c.is_ascii_digit())
}

fn is_name(s: &str) -> bool {
    let chars = s.chars().count();
    if s.chars().any(is_chinese) {
        chars <= 10
    } else {
        chars <= 20
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_type_names_followed_by_digits_are_category_keys() {
        assert_eq!(FieldType::of_key("thing1"), Some(FieldType::Thing));
        assert_eq!(
            FieldType::of_key("character_string12"),
            Some(FieldType::CharacterString)
        );
        assert_eq!(FieldType::of_key("thing"), None);
        assert_eq!(FieldType::of_key("keyword1"), None);
        assert_eq!(FieldType::of_key("first"), None);
    }

    #[test]
    fn thing_allows_20_characters_and_refuses_21() {
        assert_eq!(check(FieldType::Thing, &"一".repeat(20)), None);
        let broken = check(FieldType::Thing, &"一".repeat(21)).unwrap();
        assert!(broken.rule.contains("at most 20"), "{broken:?}");
        let short = broken.shortened.unwrap();
        assert_eq!(short.chars().count(), 20);
        assert!(short.ends_with('…'));
        assert_eq!(check(FieldType::Thing, &short), None);
    }

    #[test]
    fn character_string_refuses_chinese_and_more_than_32() {
        assert_eq!(check(FieldType::CharacterString, &"A".repeat(32)), None);
        let chinese = check(FieldType::CharacterString, "A编号1").unwrap();
        assert!(chinese.rule.contains("no Chinese"));
        assert_eq!(chinese.shortened, None, "cutting cannot fix Chinese");
        let long = check(FieldType::CharacterString, &"A".repeat(33)).unwrap();
        assert_eq!(long.shortened.unwrap().chars().count(), 32);
    }

    #[test]
    fn phrase_allows_5_chinese_characters_and_refuses_6() {
        assert_eq!(check(FieldType::Phrase, "已发货待收"), None);
        let six = check(FieldType::Phrase, "已发货待收货").unwrap();
        assert!(six.rule.contains("at most 5"));
        assert_eq!(six.shortened.as_deref(), Some("已发货待收"));
        assert!(check(FieldType::Phrase, "shipped").is_some());
    }

    #[test]
    fn unconfirmed_types_have_their_table_rules() {
        assert_eq!(check(FieldType::Time, "2026-11-24 10:00"), None);
        assert_eq!(check(FieldType::Time, "10:00~12:00"), None);
        assert!(check(FieldType::Time, "tomorrow").is_some());
        assert_eq!(check(FieldType::Date, "2026年11月24日"), None);
        assert!(check(FieldType::Date, "24/11/2026").is_some());
        assert_eq!(check(FieldType::Amount, "¥99.00"), None);
        assert_eq!(check(FieldType::Amount, "100元"), None);
        assert!(check(FieldType::Amount, "a lot").is_some());
        assert!(check(FieldType::Number, &"1".repeat(33)).is_some());
        assert!(check(FieldType::PhoneNumber, "021-12345678").is_none());
        assert!(check(FieldType::PhoneNumber, "call me").is_some());
        assert!(check(FieldType::CarNumber, "粤B1234567").is_some());
        assert!(check(FieldType::Name, "张三").is_none());
        assert!(check(FieldType::Name, &"张".repeat(11)).is_some());
        assert!(!FieldType::Time.confirmed());
        assert!(FieldType::Thing.confirmed());
    }
}
