//! Opening the AMQP connection without ever showing the URL's password.

use std::time::Duration;

use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};

use crate::config::ConfigError;

/// How long a connection attempt may take (TCP, TLS, AMQP handshake) before it is given up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Connects to the broker at `url`, naming the connection `connection_name` (shown in the
/// management UI's connection list, e.g. `wxnotify enqueue` or `wxnotify worker host-1`).
///
/// Fails within [`CONNECT_TIMEOUT`]. Errors and logs show the URL with its password replaced
/// by `***`.
#[tracing::instrument(skip(url), err)]
pub async fn connect(
    url: &SecretString,
    connection_name: &str,
) -> Result<Connection, ConnectError> {
    let uri = parse_amqp_url(url)?;
    let target = redacted(&uri);
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
    fn the_shown_url_hides_the_password() {
        let uri = parse_amqp_url(&"amqp://guest:hunter2@rabbit:5673/%2f".into()).unwrap();
        assert_eq!(redacted(&uri), "amqp://guest:***@rabbit:5673/%2F");
    }
}
