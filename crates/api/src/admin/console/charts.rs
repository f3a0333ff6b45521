//! The console's charts, drawn on the server as inline SVG (no script): bars over time on a real
//! time axis, horizontal bars of totals, and a progress bar.
//!
//! Every chart carries its numbers twice: in the drawing (with a `title` on each bar, which a
//! browser shows on hover) and in a legend of totals beside it, so it reads without a mouse.

use chrono::{DateTime, Duration, DurationRound, Utc};
use maud::{Markup, html};

/// The plot's size in SVG units (the SVG scales to the card's width).
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 180.0;
/// Room for the y labels on the left and the time labels below.
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// The colours of series, in order; a series past the end takes the last one.
pub const PALETTE: [&str; 8] = [
    "#1a5fd0", "#c0392b", "#e08e0b", "#7d3c98", "#16a085", "#5d6d7e", "#d35400", "#2e4053",
];

/// The colour of sends.
pub const SENT: &str = "#2e7d32";
/// The colour of retries.
pub const RETRIED: &str = "#e08e0b";
/// The colour of deaths.
pub const DEAD: &str = "#c0392b";

/// One series of counts at instants (each instant falls in one bucket).
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend's name (`sent`, `dead`, a reason, …).
    pub name: String,
    /// Its colour.
    pub color: &'static str,
    /// Counts at instants; counts of one bucket add up.
    pub points: Vec<(DateTime<Utc>, i64)>,
}

/// The time window a chart covers: `buckets` buckets of `bucket` ending with the one that holds
/// `now`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// The first bucket's start.
    pub start: DateTime<Utc>,
    /// One bucket's length.
    pub bucket: Duration,
    /// How many buckets.
    pub buckets: usize,
    /// The time between two labelled ticks (a whole number of buckets).
    pub tick: Duration,
}

impl Window {
    /// The window of `buckets` buckets of `bucket` whose last bucket holds `now`.
    pub fn ending(now: DateTime<Utc>, bucket: Duration, buckets: usize, tick: Duration) -> Self {
        let last = now.duration_trunc(bucket).unwrap_or(now);
        Window {
            start: last - bucket * (buckets as i32 - 1),
            bucket,
            buckets,
            tick,
        }
    }

    /// The end of the last bucket.
    pub fn end(&self) -> DateTime<Utc> {
        self.start + self.bucket * self.buckets as i32
    }

    /// The bucket that holds `t`, if the window does.
    pub fn index(&self, t: DateTime<Utc>) -> Option<usize> {
        if t < self.start || t >= self.end() {
            return None;
        }
        let i = (t - self.start).num_milliseconds() / self.bucket.num_milliseconds();
        usize::try_from(i).ok()
    }

    /// The start of bucket `i`.
    pub fn at(&self, i: usize) -> DateTime<Utc> {
        self.start + self.bucket * i as i32
    }
}

/// `values[series][bucket]`: each series' counts summed per bucket (points outside are dropped).
fn bucketed(w: &Window, series: &[Series]) -> Vec<Vec<i64>> {
    series
        .iter()
        .map(|s| {
            let mut v = vec![0; w.buckets];
            for (t, n) in &s.points {
                if let Some(i) = w.index(*t) {
                    v[i] += n;
                }
            }
            v
        })
        .collect()
}

/// A round top for the y axis at or above `max` (1, 2 or 5 times a power of ten).
fn nice_ceiling(max: i64) -> i64 {
    let max = max.max(1);
    let mut step = 1;
    loop {
        for m in [1, 2, 5] {
            if step * m >= max {
                return step * m;
            }
        }
        step *= 10;
    }
}

/// The window as `HH:MM–HH:MM`, with dates when it is a day or longer.
fn span_of(w: &Window) -> String {
    if w.end() - w.start >= Duration::hours(24) {
        let day = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M").to_string();
        format!("{}–{}", day(w.start), day(w.end()))
    } else {
        format!("{}–{}", hhmm(w.start), hhmm(w.end()))
    }
}

fn hhmm(t: DateTime<Utc>) -> String {
    t.format("%H:%M").to_string()
}

/// One drawn bar of a series in a bucket.
struct Bar<'a> {
    bucket: usize,
    series: &'a str,
    color: &'static str,
    count: i64,
    x: f64,
    y: f64,
    h: f64,
}

/// Stacked bars over time: one bar per bucket, a y axis with its top and middle labelled, a time
/// axis with a labelled tick every `window.tick` (UTC), and a legend with each series' total.
///
/// `id` names the `<svg>` (`#{id}`) and its legend (`#{id}-legend`); each bar is a
/// `rect.bar` with `data-series`, `data-at` (its bucket's start, RFC 3339) and `data-count`.
pub fn time_bars(id: &str, label: &str, window: &Window, series: &[Series]) -> Markup {
    let values = bucketed(window, series);
    let stacked_max = (0..window.buckets)
        .map(|i| values.iter().map(|v| v[i]).sum::<i64>())
        .max()
        .unwrap_or(0);
    let top = nice_ceiling(stacked_max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / window.buckets as f64;
    let bar_w = (slot * 0.8).max(0.5);
    let y_of = |n: i64| TOP + plot_h - n as f64 / top as f64 * plot_h;
    let x_of = |t: DateTime<Utc>| {
        LEFT + (t - window.start).num_milliseconds() as f64
            / window.bucket.num_milliseconds() as f64
            * slot
    };
    // Ticks at whole multiples of `tick` within the window (UTC), so they fall on round times.
    let first_tick = window
        .start
        .duration_trunc(window.tick)
        .map(|t| if t < window.start { t + window.tick } else { t })
        .unwrap_or(window.start);
    let ticks: Vec<DateTime<Utc>> = std::iter::successors(Some(first_tick), |t| {
        Some(*t + window.tick).filter(|t| *t <= window.end())
    })
    .collect();
    let totals: Vec<i64> = values.iter().map(|v| v.iter().sum()).collect();
    let mut bars = Vec::new();
    for i in 0..window.buckets {
        let mut base = 0;
        for (s, v) in series.iter().zip(&values) {
            if v[i] > 0 {
                let y = y_of(base + v[i]);
                bars.push(Bar {
                    bucket: i,
                    series: &s.name,
                    color: s.color,
                    count: v[i],
                    x: x_of(window.at(i)) + (slot - bar_w) / 2.0,
                    y,
                    h: (y_of(base) - y).max(1.0),
                });
                base += v[i];
            }
        }
    }
    html! {
        svg.chart.time #(id) viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(label)
            data-from=(window.start.to_rfc3339()) data-to=(window.end().to_rfc3339()) {
            g.y-axis {
                @for n in [0, top / 2, top] {
                    @if n > 0 || top > 0 {
                        line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(fmt(y_of(n))) y2=(fmt(y_of(n))) stroke="#e1e4ea" stroke-width="1" {}
                        text.tick x=(LEFT - 6.0) y=(fmt(y_of(n) + 4.0)) text-anchor="end" font-size="11" fill="#555" { (n) }
                    }
                }
            }
            g.bars {
                @for b in &bars {
                    rect.bar x=(fmt(b.x)) y=(fmt(b.y)) width=(fmt(bar_w)) height=(fmt(b.h)) fill=(b.color)
                        data-series=(b.series) data-at=(window.at(b.bucket).to_rfc3339()) data-count=(b.count) {
                        title { (hhmm(window.at(b.bucket))) "–" (hhmm(window.at(b.bucket) + window.bucket)) " UTC · " (b.series) ": " (b.count) }
                    }
                }
            }
            g.x-axis {
                line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(fmt(TOP + plot_h)) y2=(fmt(TOP + plot_h)) stroke="#888" stroke-width="1" {}
                @for t in &ticks {
                    @let x = x_of(*t);
                    line x1=(fmt(x)) x2=(fmt(x)) y1=(fmt(TOP + plot_h)) y2=(fmt(TOP + plot_h + 4.0)) stroke="#888" stroke-width="1" {}
                    text.tick x=(fmt(x)) y=(fmt(HEIGHT - 6.0)) text-anchor="middle" font-size="11" fill="#555" data-at=(t.to_rfc3339()) { (hhmm(*t)) }
                }
            }
        }
        div.legend id=(format!("{id}-legend")) {
            @for (s, total) in series.iter().zip(&totals) {
                span.key data-series=(s.name) data-total=(total) {
                    i style=(format!("background:{}", s.color)) {}
                    (s.name) " " b { (total) }
                }
            }
            span.muted { (span_of(window)) " UTC, " (label) }
        }
    }
}

/// Horizontal bars of totals, largest scale first as given: one row per item, its count at the
/// end. `id` names the `<svg>`; each bar is a `rect.bar` with `data-series` and `data-count`.
pub fn total_bars(id: &str, label: &str, items: &[(String, i64, &'static str)]) -> Markup {
    // Narrower than the charts over time: it sits in a card, and its text must stay legible.
    let width = 360.0;
    let row = 24.0;
    let height = (items.len().max(1) as f64) * row + 4.0;
    let name_w = 130.0;
    let count_w = 50.0;
    let plot_w = width - name_w - count_w;
    let max = items.iter().map(|i| i.1).max().unwrap_or(0).max(1);
    html! {
        svg.chart.totals #(id) viewBox=(format!("0 0 {width} {height}")) role="img" aria-label=(label) {
            @if items.is_empty() {
                text x="8" y="18" font-size="13" fill="#777" { "Nothing yet." }
            }
            @for (i, (name, n, color)) in items.iter().enumerate() {
                @let y = i as f64 * row + 4.0;
                @let w = if *n > 0 { (*n as f64 / max as f64 * plot_w).max(2.0) } else { 0.0 };
                text x=(fmt(name_w - 8.0)) y=(fmt(y + 15.0)) text-anchor="end" font-size="13" fill="#1d2433" { (name) }
                rect.bar x=(fmt(name_w)) y=(fmt(y + 3.0)) width=(fmt(w)) height=(fmt(row - 8.0)) fill=(*color)
                    data-series=(name) data-count=(n) { title { (name) ": " (n) } }
                text.count x=(fmt(name_w + w + 6.0)) y=(fmt(y + 15.0)) font-size="13" fill="#1d2433" { (n) }
            }
        }
    }
}

/// One part of a progress bar.
#[derive(Debug, Clone)]
pub struct Part {
    /// Its name in the legend (`sent`, `dead`, `left`, …).
    pub name: &'static str,
    /// How many.
    pub count: u64,
    /// Its colour.
    pub color: &'static str,
}

/// A progress bar of `parts` (laid left to right, widths by share of their sum), with a legend
/// of counts and shares. `id` names the `<svg>`; each part is a `rect.part` with `data-part`
/// and `data-count`.
pub fn progress(id: &str, parts: &[Part]) -> Markup {
    let whole: u64 = parts.iter().map(|p| p.count).sum();
    let height = 22.0;
    let share = |n: u64| {
        if whole == 0 {
            0.0
        } else {
            n as f64 / whole as f64
        }
    };
    let mut x = 0.0;
    let mut drawn = Vec::new();
    for p in parts {
        let w = share(p.count) * WIDTH;
        if p.count > 0 {
            drawn.push((p, x, w));
        }
        x += w;
    }
    html! {
        svg.bar #(id) viewBox=(format!("0 0 {WIDTH} {height}")) preserveAspectRatio="none" role="img" aria-label="progress" {
            rect x="0" y="0" width=(WIDTH) height=(height) fill="#eef0f3" {}
            @for (p, x, w) in &drawn {
                rect.part x=(fmt(*x)) y="0" width=(fmt(*w)) height=(height) fill=(p.color) data-part=(p.name) data-count=(p.count) {
                    title { (p.name) ": " (p.count) }
                }
            }
        }
        div.legend id=(format!("{id}-legend")) {
            @for p in parts {
                span.key data-part=(p.name) data-total=(p.count) {
                    i style=(format!("background:{}", p.color)) {}
                    (p.name) " " b { (p.count) }
                    @if whole > 0 { " (" (format!("{:.0} %", share(p.count) * 100.0)) ")" }
                }
            }
        }
    }
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, h, m, 0).unwrap()
    }

    #[test]
    fn a_burst_lands_in_its_own_bucket_not_at_the_edge() {
        let w = Window::ending(at(12, 2), Duration::minutes(5), 36, Duration::minutes(30));
        assert_eq!(w.start, at(9, 5));
        assert_eq!(w.end(), at(12, 5));
        assert_eq!(w.index(at(10, 31)), Some(17));
        assert_eq!(w.index(at(9, 4)), None);
        let s = Series {
            name: "sent".into(),
            color: SENT,
            points: vec![(at(10, 31), 40), (at(10, 33), 2), (at(12, 1), 1)],
        };
        let v = bucketed(&w, &[s]);
        assert_eq!(v[0][17], 42);
        assert_eq!(v[0][35], 1);
        assert_eq!(v[0].iter().sum::<i64>(), 43);
    }

    #[test]
    fn the_time_axis_is_labelled_on_round_times_and_the_legend_has_the_totals() {
        let w = Window::ending(at(12, 2), Duration::minutes(5), 36, Duration::minutes(30));
        let s = vec![
            Series {
                name: "sent".into(),
                color: SENT,
                points: vec![(at(10, 31), 40)],
            },
            Series {
                name: "dead".into(),
                color: DEAD,
                points: vec![(at(10, 32), 3)],
            },
        ];
        let svg = time_bars("c", "sends", &w, &s).into_string();
        for label in ["09:30", "10:00", "10:30", "11:00", "11:30", "12:00"] {
            assert!(svg.contains(&format!(">{label}</text>")), "{label}: {svg}");
        }
        assert!(!svg.contains(">09:00</text>"), "no tick before the window");
        assert!(svg.contains(r#"data-series="sent" data-total="40""#));
        assert!(svg.contains(r#"data-series="dead" data-total="3""#));
        // The y axis tops out at a round number above the stacked 43.
        assert_eq!(nice_ceiling(43), 50);
        assert!(svg.contains(">50</text>"));
    }

    #[test]
    fn a_progress_bar_splits_by_share() {
        let parts = [
            Part {
                name: "sent",
                count: 3,
                color: SENT,
            },
            Part {
                name: "left",
                count: 1,
                color: "#eee",
            },
        ];
        let svg = progress("p", &parts).into_string();
        assert!(svg.contains(r##"width="540.0" height="22" fill="#2e7d32" data-part="sent""##));
        assert!(svg.contains("(75 %)"));
    }
}
