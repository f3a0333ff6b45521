//! The time and date forms of WeChat's value table and the notes under it
//! (<https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html>):
//!
//! - a time is `HH:MM` or `HH:MM:SS` on a 24-hour clock (`15:01`);
//! - a date is `y年m月d日`, `y年m月`, `m月d日`, or numbers joined by `-`, `/` or `.`
//!   (`2018-01-01`, `2018/01/01`, `2018.01.01`, `2018-01`, `01-01`);
//! - a `time` value may put a date before its time (`2019年10月1日 15:01`), a `date` value may
//!   put a time after its date;
//! - a range joins two such points with `~`.
//!
//! Breaking these only warns. WeChat's own checks are known to differ from the table:
//! developers report a `date` refusing `2019年08月13日 15:00`, which the table allows
//! (<https://developers.weixin.qq.com/community/develop/doc/000e263d9a4c685e233a1918151800>), and
//! a `time` refusing `2023-03-24 11:50:00`
//! (<https://developers.weixin.qq.com/community/minigame/doc/0004c8990cc5789d947f42e1251800>).
//! Month and day numbers may have one or two digits (`2019年10月1日`, `2015年01月05日`); a
//! year has four.

use chrono::NaiveDate;

/// One side of a range: what it holds.
#[derive(Debug, Clone, Copy)]
struct Point {
    date: bool,
    time: bool,
}

/// Whether `value` is a `time` value: one point or two joined by `~`, each with a time.
pub fn is_time_value(value: &str) -> bool {
    points(value).is_some_and(|points| points.iter().all(|p| p.time))
}

/// Whether `value` is a `date` value: one point or two joined by `~`; the first has a date, the
/// second a date or only a time (`2019年10月1日 15:01~17:00`).
pub fn is_date_value(value: &str) -> bool {
    points(value).is_some_and(|points| points[0].date)
}

/// The points of `value` (one, or two around `~`), `None` when one is not a point.
fn points(value: &str) -> Option<Vec<Point>> {
    let parts: Vec<&str> = value.split('~').collect();
    if parts.len() > 2 {
        return None;
    }
    parts.into_iter().map(|p| point(p.trim())).collect()
}

/// A date, a time, or a date and then a time (after spaces, or right after `日`).
fn point(s: &str) -> Option<Point> {
    let Some((rest, after_ri)) = date_prefix(s) else {
        return is_clock(s).then_some(Point {
            date: false,
            time: true,
        });
    };
    if rest.is_empty() {
        return Some(Point {
            date: true,
            time: false,
        });
    }
    let clock = rest.trim_start();
    let separated = clock.len() < rest.len() || after_ri;
    (separated && is_clock(clock)).then_some(Point {
        date: true,
        time: true,
    })
}

/// Reads a date at the start of `s`: what follows it, and whether it ended with `日`.
fn date_prefix(s: &str) -> Option<(&str, bool)> {
    let (first, rest) = leading_digits(s);
    if first.is_empty() {
        return None;
    }
    let mut chars = rest.chars();
    let mark = chars.next()?;
    let rest = chars.as_str();
    match mark {
        '年' => {
            let (month, rest) = leading_digits(rest);
            let rest = rest.strip_prefix('月')?;
            let (day, after) = leading_digits(rest);
            match after.strip_prefix('日') {
                Some(after) if !day.is_empty() => {
                    valid(Some(first), month, Some(day)).then_some((after, true))
                }
                _ => valid(Some(first), month, None).then_some((rest, false)),
            }
        }
        '月' => {
            let (day, rest) = leading_digits(rest);
            let rest = rest.strip_prefix('日')?;
            valid(None, first, Some(day)).then_some((rest, true))
        }
        '-' | '/' | '.' => {
            let (second, rest) = leading_digits(rest);
            if first.len() != 4 {
                // m-d
                return valid(None, first, Some(second)).then_some((rest, false));
            }
            match rest.strip_prefix(mark) {
                Some(rest) => {
                    let (day, rest) = leading_digits(rest);
                    valid(Some(first), second, Some(day)).then_some((rest, false))
                }
                None => valid(Some(first), second, None).then_some((rest, false)),
            }
        }
        _ => None,
    }
}

/// Whether the numbers make a calendar date (a missing year allows 29 February).
fn valid(year: Option<&str>, month: &str, day: Option<&str>) -> bool {
    let number = |s: &str, widths: std::ops::RangeInclusive<usize>| {
        widths
            .contains(&s.len())
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    let year = match year {
        Some(y) => match number(y, 4..=4) {
            Some(y) => y as i32,
            None => return false,
        },
        None => 2000,
    };
    let Some(month) = number(month, 1..=2) else {
        return false;
    };
    match day {
        Some(d) => {
            number(d, 1..=2).is_some_and(|d| NaiveDate::from_ymd_opt(year, month, d).is_some())
        }
        None => (1..=12).contains(&month),
    }
}

/// `HH:MM` or `HH:MM:SS` on a 24-hour clock (the hour may have one digit).
fn is_clock(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    let field = |p: &str, widths: std::ops::RangeInclusive<usize>, max: u32| {
        widths.contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| n <= max)
    };
    matches!(parts.len(), 2 | 3)
        && field(parts[0], 1..=2, 23)
        && parts[1..].iter().all(|p| field(p, 2..=2, 59))
}

/// Splits the leading ASCII digits off `s`.
fn leading_digits(s: &str) -> (&str, &str) {
    s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()))
}
