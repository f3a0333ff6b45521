//! Numbers from outside (HTTP bodies, query strings, flags) are checked against a named range
//! here, once, so every surface refuses the same values with the same words: the field, its
//! range and the value given, never a wrapped number or a database error later.

use std::fmt::Display;
use std::ops::RangeInclusive;

/// A number outside its field's range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` must be between {min} and {max}, not {value}")]
pub struct OutOfRange {
    /// The field, as the caller spells it (`daily_cap`, `limit`, …).
    pub field: String,
    /// The smallest value allowed.
    pub min: String,
    /// The largest value allowed.
    pub max: String,
    /// The value given.
    pub value: String,
}

/// `value` when it lies in `range`, else the error naming `field` and the range.
pub fn in_range<T: PartialOrd + Display>(
    field: &str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<T, OutOfRange> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(OutOfRange {
            field: field.to_owned(),
            min: range.start().to_string(),
            max: range.end().to_string(),
            value: value.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_names_the_field_and_the_range() {
        assert_eq!(in_range("limit", 5u32, 1..=10), Ok(5));
        let e = in_range("daily_cap", u64::MAX, 1..=100_000_000).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`daily_cap` must be between 1 and 100000000, not 18446744073709551615"
        );
    }
}
