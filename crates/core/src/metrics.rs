//! The process's Prometheus recorder and its text exposition, shared by the worker's ops
//! listener and `serve`, and [`SERIES`], the one list of every series wxnotify exports: its
//! name, kind and meaning. The recorder is built from it, so every series has its `# HELP` and
//! `# TYPE` lines, and every histogram has buckets (no summaries).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// What kind of series a [`Series`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (its name ends in `_total`).
    Counter,
    /// A value now.
    Gauge,
    /// Observations in buckets ([`Series::buckets`]).
    Histogram,
}

/// One exported series.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    /// The metric name.
    pub name: &'static str,
    /// Its kind.
    pub kind: Kind,
    /// Its labels (what the `# HELP` line and `docs/operations.md` list).
    pub labels: &'static [&'static str],
    /// What it means (the `# HELP` line).
    pub help: &'static str,
}

impl Series {
    /// The histogram's bucket bounds (empty for counters and gauges).
    pub fn buckets(&self) -> &'static [f64] {
        match self.kind {
            Kind::Histogram if self.name.ends_with("_seconds") => SECONDS_BUCKETS,
            Kind::Histogram => SIZE_BUCKETS,
            _ => &[],
        }
    }
}

/// Bucket bounds of the latency histograms, seconds: from 1 ms to WeChat's timeout and beyond.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Bucket bounds of the size histograms (rows per batched statement).
pub const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

const fn counter(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Series {
    Series {
        name,
        kind: Kind::Counter,
        labels,
        help,
    }
}

const fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Series {
    Series {
        name,
        kind: Kind::Gauge,
        labels,
        help,
    }
}

const fn histogram(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Series {
    Series {
        name,
        kind: Kind::Histogram,
        labels,
        help,
    }
}

/// Every series wxnotify exports (the worker, `serve` and `campaign dispatch` each export the
/// ones they update). A series emitted anywhere in the code must be listed here (a test reads
/// the sources to make sure), and the dashboards and alert rules of `deploy/` may name only
/// these.
pub const SERIES: &[Series] = &[
    // The worker: jobs and sends.
    counter(
        "wxnotify_jobs_total",
        &["app", "outcome", "reason"],
        "Jobs settled by the worker, by app (`unconfigured` for an app not in the settings), \
         outcome (sent, duplicate, retry, paused, busy, held, cancelled, dead) and, for dead \
         ones, the dead letter's reason.",
    ),
    histogram(
        "wxnotify_send_seconds",
        &[],
        "Duration of the calls to WeChat's template send, seconds.",
    ),
    counter(
        "wxnotify_rate_permits_total",
        &["app", "fate"],
        "Permits of an app's send rate taken by this worker, by fate.",
    ),
    histogram(
        "wxnotify_rate_lease_seconds",
        &["app"],
        "Duration of leasing a share of an app's rate from Postgres, seconds.",
    ),
    counter(
        "wxnotify_rate_leases_total",
        &["app", "result"],
        "Leases of an app's rate from Postgres, by result (ok, error).",
    ),
    gauge(
        "wxnotify_queue_messages",
        &["queue"],
        "Messages ready in a RabbitMQ queue (lanes, retry tiers, dead queue), read by the \
         worker every 15 seconds.",
    ),
    gauge(
        "wxnotify_queue_consumers",
        &["queue"],
        "Consumers attached to a RabbitMQ queue, read by the worker every 15 seconds.",
    ),
    gauge(
        "wxnotify_workers_live",
        &[],
        "Worker processes whose heartbeat is recent (what `wxnotify status` lists).",
    ),
    // Apps: quota, pauses, tokens, reviews, followers.
    gauge(
        "wxnotify_quota_daily_limit",
        &["app"],
        "An app's daily quota of template sends (WeChat's daily_limit at the last read).",
    ),
    gauge(
        "wxnotify_quota_used",
        &["app"],
        "Template sends an app used today (Beijing time): WeChat's count at the last read plus \
         the sends recorded since; the number `wxnotify status` shows.",
    ),
    gauge(
        "wxnotify_quota_remaining",
        &["app"],
        "Template sends an app may still make today: daily limit minus used, never below 0.",
    ),
    gauge(
        "wxnotify_app_paused",
        &["app", "cause"],
        "1 while an app's sending is paused (cause quota, manual or account), else 0.",
    ),
    counter(
        "wxnotify_token_refreshes_total",
        &["app"],
        "Access tokens fetched from WeChat and stored for all processes.",
    ),
    counter(
        "wxnotify_token_refresh_failures_total",
        &["app"],
        "Access token refreshes WeChat or the network refused.",
    ),
    counter(
        "wxnotify_review_total",
        &["app", "verdict"],
        "Messages held for WeChat's content review that reached a verdict (blocked, delivered).",
    ),
    counter(
        "wxnotify_followers_synced_total",
        &["app"],
        "Followers written by the follower sync.",
    ),
    histogram(
        "wxnotify_batch_size",
        &["batcher"],
        "Rows per statement of a coalescing Postgres writer.",
    ),
    // serve: HTTP, the edge, webhooks.
    counter(
        "wxnotify_http_requests_total",
        &["route", "method", "status"],
        "HTTP requests `serve` answered, by route template (`unmatched` for none), method and \
         status code.",
    ),
    histogram(
        "wxnotify_http_request_duration_seconds",
        &["route", "method"],
        "Time `serve` took to answer a request (to its response head), seconds.",
    ),
    counter(
        "wxnotify_http_connections_refused_total",
        &[],
        "Connections closed at once because their client held too many.",
    ),
    counter(
        "wxnotify_auth_failures_total",
        &["scope"],
        "Failed authentications (API keys, admin tokens), by scope.",
    ),
    counter(
        "wxnotify_auth_refused_total",
        &["scope"],
        "Requests refused because their client failed to authenticate too often.",
    ),
    counter(
        "wxnotify_login_limited_total",
        &["scope"],
        "Mini Program logins refused by the login limits, by scope.",
    ),
    counter(
        "wxnotify_logins_total",
        &["app", "outcome"],
        "Mini Program logins, by outcome.",
    ),
    counter(
        "wxnotify_callback_events_total",
        &["app", "format", "outcome"],
        "Pushes to the OA callback, by format and outcome.",
    ),
    counter(
        "wxnotify_mp_callback_events_total",
        &["app", "format", "event", "outcome"],
        "Pushes to the Mini Program's push URL, by format, event and outcome (applied or duplicate).",
    ),
    counter(
        "wxnotify_callback_refused_total",
        &["app", "reason"],
        "Pushes to the OA callback refused, by reason.",
    ),
    counter(
        "wxnotify_callback_decrypted_total",
        &["app", "key"],
        "Encrypted callback pushes, by the key that opened them (current, previous).",
    ),
    gauge(
        "wxnotify_webhook_backlog",
        &[],
        "Outcome webhooks waiting in the outbox to be posted, read by `serve` every 15 seconds.",
    ),
    gauge(
        "wxnotify_webhook_backlog_oldest_seconds",
        &[],
        "Age of the oldest outcome webhook waiting in the outbox, seconds (0 when none waits).",
    ),
];

/// The series named `name`, if wxnotify exports it.
pub fn series(name: &str) -> Option<&'static Series> {
    SERIES.iter().find(|s| s.name == name)
}

/// The series `name` of a Prometheus text line or expression names: its own name, or for
/// `name_bucket`, `name_sum` and `name_count` the histogram's.
pub fn exported(name: &str) -> Option<&'static Series> {
    series(name).or_else(|| {
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            name.strip_suffix(suffix)
                .and_then(series)
                .filter(|s| s.kind == Kind::Histogram)
        })
    })
}

fn builder() -> PrometheusBuilder {
    let mut builder = PrometheusBuilder::new();
    for s in SERIES.iter().filter(|s| s.kind == Kind::Histogram) {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(s.name.to_owned()), s.buckets())
            .expect("bucket lists are not empty");
    }
    builder
}

fn describe() {
    for s in SERIES {
        match s.kind {
            Kind::Counter => metrics::describe_counter!(s.name, s.help),
            Kind::Gauge => metrics::describe_gauge!(s.name, s.help),
            Kind::Histogram => metrics::describe_histogram!(s.name, s.help),
        }
    }
}

/// The process's Prometheus recorder, installed globally on first use, with every series of
/// [`SERIES`] described and every histogram bucketed. If another recorder is already installed
/// (a host program's), a private one is returned and only its metrics show.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = builder()
                .install_recorder()
                .unwrap_or_else(|_| builder().build_recorder().handle());
            describe();
            handle
        })
        .clone()
}

/// The metrics of `handle` in Prometheus's text format ([`CONTENT_TYPE`]).
pub fn render(handle: &PrometheusHandle) -> String {
    handle.run_upkeep();
    handle.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_named_by_their_kind_and_listed_once() {
        let mut names = std::collections::BTreeSet::new();
        for s in SERIES {
            assert!(names.insert(s.name), "{} is listed twice", s.name);
            assert!(s.name.starts_with("wxnotify_"), "{}", s.name);
            assert_eq!(
                s.kind == Kind::Counter,
                s.name.ends_with("_total"),
                "{}: only counters end in _total",
                s.name
            );
            assert!(!s.help.is_empty());
        }
    }

    #[test]
    fn every_series_renders_with_help_and_type_and_histograms_with_buckets() {
        let handle = metrics_handle();
        for s in SERIES {
            let labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|l| (l.to_string(), "x".to_string()))
                .collect();
            match s.kind {
                Kind::Counter => metrics::counter!(s.name, &labels).increment(1),
                Kind::Gauge => metrics::gauge!(s.name, &labels).set(1.0),
                Kind::Histogram => {
                    let h = metrics::histogram!(s.name, &labels);
                    h.record(0.003);
                    h.record(3.0);
                }
            }
        }
        let text = render(&handle);
        for s in SERIES {
            let kind = match s.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            assert!(
                text.contains(&format!("# HELP {} ", s.name)),
                "no HELP for {}:\n{text}",
                s.name
            );
            assert!(
                text.contains(&format!("# TYPE {} {kind}\n", s.name)),
                "no TYPE {kind} for {}:\n{text}",
                s.name
            );
        }
        // Real buckets: the two observations land in different ones.
        let le = |bound: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("wxnotify_send_seconds_bucket")
                        && l.contains(&format!("le=\"{bound}\""))
                })
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no bucket le={bound}:\n{text}"))
        };
        assert_eq!(le("0.005"), 1.0);
        assert_eq!(le("5"), 2.0);
        assert!(!text.contains("quantile="), "no summaries:\n{text}");
    }
}
