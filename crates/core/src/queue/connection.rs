//! Opening the AMQP connection without ever showing the URL's password.
//!
//! `AMQP_URL` may name several nodes of a cluster, comma separated
//! (`amqp://u:p@rabbit-1:5672/%2f,amqp://u:p@rabbit-2:5672/%2f`). [`connect`] tries them in
//! turn, starting with the node that answered last time, and returns the first connection made:
//! when a node is lost, the worker's reconnect (and any later command) lands on the next one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};

use crate::config::ConfigError;

/// How long a connection attempt may take (TCP, TLS, AMQP handshake) before it is given up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest AMQP frame asked for, unless `AMQP_URL` says `frame_max`. lapin keeps a receive
/// and a send buffer of 32 frames per connection, zero-filled: at RabbitMQ's default of
/// 128 KiB that is 8 MiB resident per connection, for jobs of a few hundred bytes (a job is at
/// most 64 KiB; a larger message just takes more frames).
pub const FRAME_MAX: u32 = 16 * 1024;

/// Why no connection was made. No variant's text contains the password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `AMQP_URL` is not a usable AMQP URL (exit code 2).
    #[error(transparent)]
    Url(#[from] ConfigError),
    /// The broker refused or could not be reached (exit code 3).
    #[error("cannot connect to RabbitMQ at {target} (check AMQP_URL and that the broker runs)")]
    Unreachable {
        /// The URL without its password.
        target: String,
        /// lapin's error (IO, authentication, protocol).
        #[source]
        source: lapin::Error,
    },
    /// No answer within [`CONNECT_TIMEOUT`] (exit code 3).
    #[error("cannot connect to RabbitMQ at {target}: no answer within {timeout:?}")]
    Timeout {
        /// The URL without its password.
        target: String,
        /// The limit that passed.
        timeout: Duration,
        /// An `io::ErrorKind::TimedOut`, so the CLI classifies it as "unavailable".
        #[source]
        source: std::io::Error,
    },
}

/// The node that answered last (an index into the list of `AMQP_URL`): the next connection
/// starts there, so a reconnect after losing it moves on to the next node at once.
static LAST_GOOD: AtomicUsize = AtomicUsize::new(0);

/// Connects to the broker at `url` (one node, or several comma separated: the first that
/// answers), naming the connection `connection_name` (shown in the management UI's connection
/// list, e.g. `wxnotify enqueue` or `wxnotify worker host-1`).
///
/// Each node gets [`CONNECT_TIMEOUT`]. Errors and logs show URLs with their password replaced
/// by `***`; when every node fails, the error is the last node's.
#[tracing::instrument(skip(url), err)]
pub async fn connect(
    url: &SecretString,
    connection_name: &str,
) -> Result<Connection, ConnectError> {
    Ok(connect_node_of(url, connection_name).await?.0)
}

/// Like [`connect`], and also the node it connected to, as it may be shown (no password).
pub async fn connect_node_of(
    url: &SecretString,
    connection_name: &str,
) -> Result<(Connection, String), ConnectError> {
    let nodes = parse_amqp_urls(url)?;
    let start = LAST_GOOD.load(Ordering::Relaxed) % nodes.len();
    let mut last_error = None;
    for k in 0..nodes.len() {
        let index = (start + k) % nodes.len();
        match connect_node(nodes[index].clone(), connection_name).await {
            Ok(connection) => {
                LAST_GOOD.store(index, Ordering::Relaxed);
                return Ok((connection, redacted(&nodes[index])));
            }
            Err(e) => {
                if nodes.len() > 1 {
                    tracing::warn!(error = %e, "RabbitMQ node unavailable; trying the next one");
                }
                last_error = Some(e);
            }
        }
    }
    Err(last_error.expect("at least one node"))
}

/// Says that the connection to `node` (as [`connect_node_of`] named it) was lost: the next
/// connection of this process starts at the node after it, instead of waiting for the lost one
/// to refuse or time out first.
pub fn node_lost(url: &SecretString, node: &str) {
    let Ok(nodes) = parse_amqp_urls(url) else {
        return;
    };
    if let Some(index) = nodes.iter().position(|n| redacted(n) == node) {
        // Only the first to report the loss moves the start on.
        let _ = LAST_GOOD.compare_exchange(
            index,
            (index + 1) % nodes.len(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

/// The node the next connection of this process tries first, as it may be shown (no
/// password).
pub fn first_node(url: &SecretString) -> Option<String> {
    let nodes = parse_amqp_urls(url).ok()?;
    Some(redacted(
        &nodes[LAST_GOOD.load(Ordering::Relaxed) % nodes.len()],
    ))
}

/// Connects to one node.
async fn connect_node(mut uri: AMQPUri, connection_name: &str) -> Result<Connection, ConnectError> {
    let target = redacted(&uri);
    uri.query.frame_max.get_or_insert(FRAME_MAX);
    let properties = ConnectionProperties::default().with_connection_name(connection_name.into());
    let attempt = Connection::connect_uri(uri, properties);
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(connection)) => {
            tracing::info!(broker = %target, "connected to RabbitMQ");
            Ok(connection)
        }
        Ok(Err(source)) => Err(ConnectError::Unreachable { target, source }),
        Err(_) => Err(ConnectError::Timeout {
            target,
            timeout: CONNECT_TIMEOUT,
            source: std::io::ErrorKind::TimedOut.into(),
        }),
    }
}

/// Parses `AMQP_URL`: one URL or several, comma separated (blanks around commas are ignored).
pub fn parse_amqp_urls(url: &SecretString) -> Result<Vec<AMQPUri>, ConfigError> {
    let nodes = url
        .expose_secret()
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| parse_amqp_url(&SecretString::from(u.to_owned())))
        .collect::<Result<Vec<_>, _>>()?;
    if nodes.is_empty() {
        return Err(ConfigError::Invalid {
            name: "AMQP_URL".into(),
            reason: "it names no node".into(),
            hint: "Use amqp://USER:PASSWORD@HOST:5672/VHOST, several comma separated for a cluster.",
        });
    }
    Ok(nodes)
}

/// Parses `AMQP_URL`. lapin's own parser repeats the whole URL in some errors, so the URL is
/// checked with the `url` crate first and no parser message that could quote it is shown.
fn parse_amqp_url(url: &SecretString) -> Result<AMQPUri, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: "AMQP_URL".into(),
        reason,
        hint: "Use amqp://USER:PASSWORD@HOST:5672/VHOST (the default vhost is %2f), or amqps:// for TLS.",
    };
    let parsed = url::Url::parse(url.expose_secret()).map_err(|e| invalid(e.to_string()))?;
    if !matches!(parsed.scheme(), "amqp" | "amqps") {
        return Err(invalid(format!(
            "the scheme is {:?}, not amqp or amqps",
            parsed.scheme()
        )));
    }
    url.expose_secret()
        .parse::<AMQPUri>()
        .map_err(|_| invalid("it is not a valid AMQP URL (bad port, vhost or query)".into()))
}

/// The URL as it may be shown: scheme, user, host, port and vhost, no password.
fn redacted(uri: &AMQPUri) -> String {
    format!(
        "{}://{}:***@{}:{}/{}",
        uri.scheme,
        uri.authority.userinfo.username,
        uri.authority.host,
        uri.authority.port,
        url::form_urlencoded::byte_serialize(uri.vhost.as_bytes()).collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_a_config_error_without_the_password() {
        for bad in [
            "http://u:hunter2@h/%2f",
            "amqp://u:hunter2@h:notaport/%2f",
            "amqp://u:hunter2@h/%2f?heartbeat=x",
        ] {
            let err = parse_amqp_url(&bad.into()).unwrap_err().to_string();
            assert!(err.contains("AMQP_URL"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn several_nodes_are_comma_separated() {
        let nodes = parse_amqp_urls(
            &"amqp://g:hunter2@rabbit-1:5672/%2f, amqp://g:hunter2@rabbit-2:5673/%2f".into(),
        )
        .unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(redacted(&nodes[1]), "amqp://g:***@rabbit-2:5673/%2F");
        let err = parse_amqp_urls(&"amqp://g:hunter2@h/%2f,http://g:hunter2@h/".into())
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(parse_amqp_urls(&" , ".into()).is_err());
    }

    #[test]
    fn the_shown_url_hides_the_password() {
        let uri = parse_amqp_url(&"amqp://guest:hunter2@rabbit:5673/%2f".into()).unwrap();
        assert_eq!(redacted(&uri), "amqp://guest:***@rabbit:5673/%2F");
    }
}
