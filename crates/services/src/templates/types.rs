//! The value rules of category-template keys. A category key is a type name followed by digits
//! (`thing1`, `time2`, `character_string3`); the type decides what a value may hold. The rules
//! are WeChat's table "类目模板消息参数值内容限制说明", which the Official Account's
//! template-message page and the Mini Program's subscribe-message send page both carry (the
//! latter with notes under it on symbols, times and dates):
//!
//! - <https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Template_Message_Interface.html>
//! - <https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html>
//!
//! Each rule below has its source beside it. A value that breaks a rule is refused when the
//! rule is *confirmed* and only warned about otherwise (docs/wechat.md §8.5 gives the reasons):
//!
//! - confirmed: every length limit of the table, counted so that a value over it is over under
//!   any reading of the table (`amount` counts the digits before the decimal point), and the two
//!   character rules that answers on 47003 repeat: no Chinese in `character_string`, only
//!   Chinese in `phrase`;
//! - warned: the formats (the time and date forms, the currency sign of `amount`, what `number`,
//!   `letter`, `symbol`, `phone_number`, `car_number` and `name` may contain). Developers report
//!   WeChat refusing forms the table allows (see the `datetime` module), so its checks there are
//!   not known well enough to refuse on: a refusal could block a message WeChat would take,
//!   while a wrong warning costs at most one 47003.
//!
//! Keys of historical templates (`keyword1`, `first` …), and of types the table leaves out
//! (`short_thing` …), have no type here: WeChat folds historical values past 20 characters
//! instead of refusing them.

mod datetime;

/// The types of category-template keys wxnotify knows: the rows of WeChat's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// `thing`: ≤ 20 characters of any kind.
    Thing,
    /// `character_string`: ≤ 32 digits, letters or symbols, no Chinese.
    CharacterString,
    /// `phrase`: ≤ 5 Chinese characters.
    Phrase,
    /// `time`: a 24-hour time, a date may come before it; a range joins two with `~`.
    Time,
    /// `date`: a date, a 24-hour time may follow it; a range joins two with `~`.
    Date,
    /// `amount`: one currency sign, ≤ 10 digits with optional decimals, optional 元.
    Amount,
    /// `number`: ≤ 32 digits, decimals allowed.
    Number,
    /// `letter`: ≤ 32 letters.
    Letter,
    /// `symbol`: ≤ 5 symbols.
    Symbol,
    /// `phone_number`: ≤ 17 digits and symbols.
    PhoneNumber,
    /// `car_number`: ≤ 8 characters, letters or digits, the first and the last may be Chinese.
    CarNumber,
    /// `name`: ≤ 10 Chinese characters, or ≤ 20 letters or symbols.
    Name,
    /// `const`: ≤ 20 characters, one of the values approved with the template.
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
}

/// How a value breaks its type's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The rule, in words, e.g. `thing allows at most 20 characters, this value has 21`.
    pub rule: String,
    /// Whether the rule is confirmed, so that breaking it refuses the message (module doc);
    /// otherwise it only warns.
    pub confirmed: bool,
    /// A shortened value that keeps every rule of the type, when cutting can fix the value
    /// without making it say something else (`thing`, `character_string`, `phrase`).
    pub shortened: Option<String>,
}

impl Broken {
    fn refuse(rule: String) -> Option<Broken> {
        Some(Broken {
            rule,
            confirmed: true,
            shortened: None,
        })
    }

    fn refuse_or_cut(rule: String, shortened: String) -> Option<Broken> {
        Some(Broken {
            rule,
            confirmed: true,
            shortened: Some(shortened),
        })
    }

    fn warn(rule: &str) -> Option<Broken> {
        Some(Broken {
            rule: rule.to_owned(),
            confirmed: false,
            shortened: None,
        })
    }
}

/// The longest `thing` value, in characters.
pub const THING_MAX: usize = 20;
/// The longest `character_string` value, in characters.
pub const CHARACTER_STRING_MAX: usize = 32;
/// The longest `phrase` value, in Chinese characters.
pub const PHRASE_MAX: usize = 5;
/// The most digits of a `number` value.
pub const NUMBER_MAX_DIGITS: usize = 32;
/// The longest `letter` value.
pub const LETTER_MAX: usize = 32;
/// The longest `symbol` value.
pub const SYMBOL_MAX: usize = 5;
/// The most digits of an `amount` value.
pub const AMOUNT_MAX_DIGITS: usize = 10;
/// The longest `phone_number` value.
pub const PHONE_NUMBER_MAX: usize = 17;
/// The longest `car_number` value.
pub const CAR_NUMBER_MAX: usize = 8;
/// The longest `name` value holding Chinese.
pub const NAME_MAX_CHINESE: usize = 10;
/// The longest `name` value without Chinese.
pub const NAME_MAX_OTHER: usize = 20;
/// The longest `const` value.
pub const CONST_MAX: usize = 20;

/// Whether `c` is a Chinese (CJK) character.
pub fn is_chinese(c: char) -> bool {
    matches!(c,
        '\u{4e00}'..='\u{9fff}' | '\u{3400}'..='\u{4dbf}' | '\u{f900}'..='\u{faff}'
        | '\u{20000}'..='\u{2a6df}')
}

/// Checks `value` against the rules of `kind`; `None` when it keeps them all. A confirmed rule
/// is checked before the warned ones of the same type, so a refusal is never hidden behind a
/// warning.
pub fn check(kind: FieldType, value: &str) -> Option<Broken> {
    let chars = value.chars().count();
    match kind {
        FieldType::Thing => thing(value, chars),
        FieldType::CharacterString => character_string(value, chars),
        FieldType::Phrase => phrase(value, chars),
        FieldType::Time => time(value),
        FieldType::Date => date(value),
        FieldType::Amount => amount(value),
        FieldType::Number => number(value),
        FieldType::Letter => letter(value, chars),
        FieldType::Symbol => symbol(value, chars),
        FieldType::PhoneNumber => phone_number(value, chars),
        FieldType::CarNumber => car_number(value, chars),
        FieldType::Name => name(value, chars),
        FieldType::Const => constant(chars),
    }
}

fn too_long(name: &str, max: usize, unit: &str, has: usize) -> String {
    format!("{name} allows at most {max} {unit}, this value has {has}")
}

fn thing(value: &str, chars: usize) -> Option<Broken> {
    // ≤ 20 characters of any kind: the table (thing.DATA),
    // https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Template_Message_Interface.html
    // and an answer on 47003 for thing1,
    // https://developers.weixin.qq.com/community/develop/doc/00066407b58fc04dade12a65a6b000
    if chars <= THING_MAX {
        return None;
    }
    Broken::refuse_or_cut(
        too_long("thing", THING_MAX, "characters", chars),
        cut(value, THING_MAX, "…"),
    )
}

fn character_string(value: &str, chars: usize) -> Option<Broken> {
    // Digits, letters and symbols, no Chinese: the table (character_string.DATA, URL below),
    // and an answer on 47003 for Chinese in one,
    // https://developers.weixin.qq.com/community/develop/doc/000248ab548310582150be66f6bc00
    if value.chars().any(is_chinese) {
        return Broken::refuse("character_string allows no Chinese characters".into());
    }
    // ≤ 32: the table (character_string.DATA),
    // https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Template_Message_Interface.html
    if chars <= CHARACTER_STRING_MAX {
        return None;
    }
    Broken::refuse_or_cut(
        too_long(
            "character_string",
            CHARACTER_STRING_MAX,
            "characters",
            chars,
        ),
        cut(value, CHARACTER_STRING_MAX, "..."),
    )
}

fn phrase(value: &str, chars: usize) -> Option<Broken> {
    // Chinese characters only, at most 5 (example 配送中): the table (phrase.DATA),
    // https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html
    // and WeChat staff, https://developers.weixin.qq.com/community/develop/doc/000ece58dd4630c30333e03ba6b400
    if !value.chars().all(is_chinese) {
        return Broken::refuse("phrase allows Chinese characters only".into());
    }
    if chars <= PHRASE_MAX {
        return None;
    }
    Broken::refuse_or_cut(
        too_long("phrase", PHRASE_MAX, "characters", chars),
        value.chars().take(PHRASE_MAX).collect(),
    )
}

fn time(value: &str) -> Option<Broken> {
    // A 24-hour time, HH:MM or HH:MM:SS, a date may come before it (examples 15:01 and
    // 2019年10月1日 15:01); a range joins two with "~": the table (time.DATA) and its notes,
    // https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html
    // Warned only: see `datetime` for the refusals developers report.
    if datetime::is_time_value(value) {
        return None;
    }
    Broken::warn(
        "time should be a 24-hour time such as 15:01 or 2019年10月1日 15:01 (a range joins two with ~)",
    )
}

fn date(value: &str) -> Option<Broken> {
    // y年m月d日, y年m月, m月d日, or joined by "-", "/" or "." (2018-01-01, 2018/01/01,
    // 2018.01.01, 2018-01, 01-01), a 24-hour time may follow; a range joins two with "~": the
    // table (date.DATA) and its notes,
    // https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html
    // Warned only, as for time.
    if datetime::is_date_value(value) {
        return None;
    }
    Broken::warn(
        "date should be a date such as 2019年10月1日, 10月1日, 2018-01-01, 2018.01.01 or 01-01, optionally followed by a 24-hour time (a range joins two with ~)",
    )
}

/// The currency signs an `amount` may start with (one character each).
const CURRENCY_SIGNS: [char; 16] = [
    '¥', '￥', '$', '＄', '€', '£', '￡', '₩', '￦', '₹', '₽', '฿', '₫', '₱', '₪', '₺',
];

fn amount(value: &str) -> Option<Broken> {
    // One currency sign, then at most 10 digits, decimals allowed, 元 allowed at the end
    // (example ￥100): the table (amount.DATA),
    // https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html
    // Whether the decimals count towards the 10 is not said: digits before the point over 10
    // refuse (over under any reading), 10 or fewer that reach past 10 with the decimals warn.
    let before_point = value.split('.').next().unwrap_or(value);
    let whole = digit_count(before_point);
    if whole > AMOUNT_MAX_DIGITS {
        return Broken::refuse(format!(
            "amount allows at most {AMOUNT_MAX_DIGITS} digits, this value has {whole} before the decimal point"
        ));
    }
    // A value without a sign (100元, 99.50) is not warned about: the table asks for one, but such
    // values are common and no refusal of them is reported (docs/wechat.md §8.5).
    let unsigned = value.strip_prefix(CURRENCY_SIGNS).unwrap_or(value);
    let digits = unsigned.strip_suffix('元').unwrap_or(unsigned);
    if !is_decimal(digits) {
        return Broken::warn(
            "amount should be a currency sign and digits with optional decimals, optionally followed by 元, such as ￥100 or 99.50元",
        );
    }
    if digit_count(digits) <= AMOUNT_MAX_DIGITS {
        return None;
    }
    Broken::warn(
        "amount allows at most 10 digits; this value has more once its decimals are counted, and whether they count is not stated",
    )
}

fn number(value: &str) -> Option<Broken> {
    // ≤ 32 digits, digits only, decimals allowed: the table (number.DATA),
    // https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html
    let digits = digit_count(value);
    if digits > NUMBER_MAX_DIGITS {
        return Broken::refuse(too_long("number", NUMBER_MAX_DIGITS, "digits", digits));
    }
    if is_decimal(value) {
        return None;
    }
    Broken::warn("number should hold digits only, with optional decimals, such as 339208499 or 3.5")
}

fn letter(value: &str, chars: usize) -> Option<Broken> {
    // ≤ 32 letters, letters only: the table (letter.DATA),
    // https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html
    if chars > LETTER_MAX {
        return Broken::refuse(too_long("letter", LETTER_MAX, "letters", chars));
    }
    if value.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    Broken::warn("letter should hold letters (A-Z, a-z) only")
}

fn symbol(value: &str, chars: usize) -> Option<Broken> {
    // ≤ 5 symbols, symbols only; a symbol is a common sign other than Chinese, letters and
    // digits: the table (symbol.DATA) and its notes,
    // https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html
    if chars > SYMBOL_MAX {
        return Broken::refuse(too_long("symbol", SYMBOL_MAX, "symbols", chars));
    }
    if !value.chars().any(char::is_alphanumeric) {
        return None;
    }
    Broken::warn("symbol should hold symbols only (no letters, digits or Chinese)")
}

fn phone_number(value: &str, chars: usize) -> Option<Broken> {
    // ≤ 17 digits and symbols (example +86-0766-66888866): the table (phone_number.DATA),
    // https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html
    if chars > PHONE_NUMBER_MAX {
        return Broken::refuse(too_long(
            "phone_number",
            PHONE_NUMBER_MAX,
            "characters",
            chars,
        ));
    }
    if !value.chars().any(char::is_alphabetic) {
        return None;
    }
    Broken::warn("phone_number should hold digits and symbols only, such as +86-0766-66888866")
}

fn car_number(value: &str, chars: usize) -> Option<Broken> {
    // ≤ 8, letters or digits, the first and the last may be Chinese (example 粤A8Z888挂): the
    // table (car_number.DATA),
    // https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html
    if chars > CAR_NUMBER_MAX {
        return Broken::refuse(too_long("car_number", CAR_NUMBER_MAX, "characters", chars));
    }
    let fits = value
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_alphanumeric() || ((i == 0 || i + 1 == chars) && is_chinese(c)));
    if fits {
        return None;
    }
    Broken::warn(
        "car_number should hold letters and digits, with Chinese allowed first and last only, such as 粤A8Z888挂",
    )
}

fn name(value: &str, chars: usize) -> Option<Broken> {
    // ≤ 10 Chinese characters, or ≤ 20 letters or symbols; Chinese mixed with letters counts as
    // a Chinese name, ≤ 10 (example 某某): the table (name.DATA),
    // https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html
    let chinese = value.chars().any(is_chinese);
    if chinese && chars > NAME_MAX_CHINESE {
        return Broken::refuse(too_long(
            "name",
            NAME_MAX_CHINESE,
            "characters when it holds Chinese",
            chars,
        ));
    }
    if !chinese && chars > NAME_MAX_OTHER {
        return Broken::refuse(too_long(
            "name",
            NAME_MAX_OTHER,
            "letters or symbols",
            chars,
        ));
    }
    if !value.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    Broken::warn("name should hold Chinese characters, letters or symbols, no digits")
}

fn constant(chars: usize) -> Option<Broken> {
    // ≤ 20 characters, and only a value approved with the template: the table (const.DATA),
    // https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Template_Message_Interface.html
    // No API lists the approved values, so only the length is checked; a cut value would not
    // be an approved one, so it is never shortened.
    if chars <= CONST_MAX {
        return None;
    }
    Broken::refuse(too_long("const", CONST_MAX, "characters", chars))
}

/// The first characters of `value` with `ellipsis` appended, `max` characters in all.
fn cut(value: &str, max: usize, ellipsis: &str) -> String {
    let keep = max - ellipsis.chars().count();
    value.chars().take(keep).collect::<String>() + ellipsis
}

fn digit_count(s: &str) -> usize {
    s.chars().filter(char::is_ascii_digit).count()
}

/// Digits with an optional decimal part: `100`, `3.5`.
fn is_decimal(s: &str) -> bool {
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    match s.split_once('.') {
        Some((whole, decimals)) => all_digits(whole) && all_digits(decimals),
        None => all_digits(s),
    }
}

#[cfg(test)]
mod tests;
