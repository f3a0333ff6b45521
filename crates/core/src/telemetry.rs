//! Tracing set-up, in one place: readable lines in a terminal, JSON lines in production
//! (`WXNOTIFY_LOG_FORMAT=json`, or whenever stderr is not a terminal). `RUST_LOG` filters
//! (default `info`), but other crates than wxnotify never log below `info`, whatever `RUST_LOG`
//! asks ([`dependency_cap`]): at debug and trace, lapin logs its login frame (the RabbitMQ
//! password) and every message body, and HTTP and SQL crates log requests and statements.

use std::io::IsTerminal;

use tracing::Level;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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
            .finish()
            .with(dependency_cap())
            .try_init(),
        LogFormat::Pretty => builder.compact().finish().with(dependency_cap()).try_init(),
    }
    .map_err(|e| e.to_string())
}

/// The cap on other crates' logs: wxnotify's own targets pass at any level, every other target
/// (amq-protocol, hyper, reqwest, sqlx, ...) at `info` and above only. `RUST_LOG` can lower a
/// crate further, never raise it past this.
///
/// The RabbitMQ client's own lines are off, but for a panic of its I/O thread: it logs a lost
/// connection at ERROR on every channel ("Connection reset by peer"), while the error also
/// reaches wxnotify, which says what it means once (a WARN naming the lost node and the next).
pub fn dependency_cap() -> Targets {
    Targets::new()
        .with_default(Level::INFO)
        .with_target("wxnotify", Level::TRACE)
        .with_target("lapin", LevelFilter::OFF)
        .with_target("lapin::thread", Level::ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn rust_log_trace_cannot_raise_other_crates_past_info() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("trace,lapin::channel=trace"))
            .with_writer(move || writer.clone())
            .finish()
            .with(dependency_cap());
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "lapin::channel", "login frame [112, 97, 115, 115]");
            tracing::debug!(target: "reqwest::connect", "request with a token");
            tracing::trace!(target: "sqlx::query", "statement");
            tracing::info!(target: "sqlx::pool", "pool established");
            tracing::error!(target: "lapin::channels", "Connection error: Connection reset by peer");
            tracing::error!(target: "lapin::thread", "Thread panicked");
            tracing::trace!(target: "wxnotify_worker", "own trace line");
        });
        let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(!out.contains("login frame"), "{out}");
        assert!(!out.contains("request with a token"), "{out}");
        assert!(!out.contains("statement"), "{out}");
        assert!(out.contains("pool established"), "{out}");
        // The RabbitMQ client's own account of a lost connection is not wxnotify's error.
        assert!(!out.contains("Connection reset by peer"), "{out}");
        assert!(out.contains("Thread panicked"), "{out}");
        assert!(out.contains("own trace line"), "{out}");
    }
}
