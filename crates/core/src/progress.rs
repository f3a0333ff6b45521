//! Terminal progress bars: one style decision for every command that shows one.

use indicatif::ProgressStyle;

/// A progress style from `template`, where `{rate}` shows the items per second as a whole
/// number with thousands separators (`12,345/s`). indicatif's own `{per_sec}` prints every
/// digit of a float (`239,267,167.659845143557/s` in the first instant of a run).
pub fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a valid progress template")
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", thousands(state.per_sec()));
            },
        )
}

/// `value` rounded to a whole number, with `,` between thousands (indicatif's `HumanCount`).
pub fn thousands(value: f64) -> String {
    let n = if value.is_finite() && value > 0.0 {
        value.round() as u64
    } else {
        0
    };
    indicatif::HumanCount(n).to_string()
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn rates_are_whole_numbers_with_separators() {
        assert_eq!(thousands(239_267_167.659_845), "239,267,168");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(f64::NAN), "0");
        assert_eq!(thousands(f64::INFINITY), "0");
    }
}
