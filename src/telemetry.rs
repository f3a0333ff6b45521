//! Tracing set-up, in one place: readable lines in a terminal, JSON lines in production
//! (`WXNOTIFY_LOG_FORMAT=json`, or whenever stderr is not a terminal). `RUST_LOG` filters
//! (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured when on a terminal.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// `WXNOTIFY_LOG_FORMAT` (`json` or `pretty`) if set, else JSON unless stderr is a terminal.
    pub fn from_env() -> Self {
        match std::env::var("WXNOTIFY_LOG_FORMAT").as_deref() {
            Ok("json") => LogFormat::Json,
            Ok("pretty") => LogFormat::Pretty,
            _ if std::io::stderr().is_terminal() => LogFormat::Pretty,
            _ => LogFormat::Json,
        }
    }
}

/// Installs the global subscriber writing to stderr. Call once, from `main`.
pub fn init(format: LogFormat, default_filter: &str) {
    let _ = try_init(format, default_filter, std::io::stderr);
}

/// Installs the global subscriber writing to `writer`; fails if one is already installed.
pub fn try_init<W>(format: LogFormat, default_filter: &str, writer: W) -> Result<(), String>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    }
    .map_err(|e| e.to_string())
}
