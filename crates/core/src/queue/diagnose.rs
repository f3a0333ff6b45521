//! Telling a broker that is away (try again) from a setting that is wrong (fix it).
//!
//! Retrying helps when RabbitMQ is restarting or the network drops; it never helps when the
//! login is refused, the vhost does not exist, the URL is not a URL, or the queues already
//! exist with other arguments. [`misconfiguration`] finds those in an error's chain and names
//! the setting to change, so a worker exits at once with exit code 2 instead of logging
//! "reconnecting" forever.

use lapin::ErrorKind;
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};

use secrecy::SecretString;

use super::connection::{ConnectError, connect};
use super::topology::{Topology, TopologyError, TopologyOptions};
use crate::config::ConfigError;

/// Connects once and declares `topology`: a wrong setting comes back as the [`ConfigError`]
/// to fix; a broker that cannot be reached is only logged (the caller's reconnect loop keeps
/// trying, and its health endpoint says RabbitMQ is away).
pub async fn check_broker(
    url: &SecretString,
    topology: &Topology,
    options: &TopologyOptions,
) -> Result<(), ConfigError> {
    let result = async {
        let connection = connect(url, "wxnotify preflight").await?;
        let channel = connection.create_channel().await?;
        let declared = topology.declare(&channel, options).await;
        let _ = connection.close(200, "preflight done".into()).await;
        declared?;
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(()),
        Err(err) => match misconfiguration(&err) {
            Some(config) => Err(config),
            None => {
                tracing::warn!(error = %format!("{err:#}"), "RabbitMQ is not reachable yet; retrying in the background");
                Ok(())
            }
        },
    }
}

/// The setting to change when `err` (anywhere in its chain) is one retrying cannot fix;
/// `None` for errors that may pass (unreachable broker, dropped connection, timeouts).
pub fn misconfiguration(err: &anyhow::Error) -> Option<ConfigError> {
    err.chain().find_map(|cause| {
        if let Some(ConnectError::Url(config)) = cause.downcast_ref::<ConnectError>() {
            return Some(config.clone());
        }
        if let Some(inequivalent @ TopologyError::Inequivalent { .. }) =
            cause.downcast_ref::<TopologyError>()
        {
            return Some(ConfigError::Invalid {
                name: "WXNOTIFY_DELIVERY_LIMIT / WXNOTIFY_QUEUE_PREFIX".into(),
                reason: inequivalent.to_string(),
                hint: "",
            });
        }
        cause.downcast_ref::<lapin::Error>().and_then(from_lapin)
    })
}

fn from_lapin(err: &lapin::Error) -> Option<ConfigError> {
    let ErrorKind::ProtocolError(amqp) = err.kind() else {
        return None;
    };
    let broker_says = amqp.get_message().to_string();
    match amqp.kind() {
        AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => Some(ConfigError::Invalid {
            name: "AMQP_URL".into(),
            reason: format!("RabbitMQ refused the login or the access ({broker_says})"),
            hint: "Check the user and password in AMQP_URL and the user's permissions on the vhost (rabbitmqctl list_permissions -p VHOST).",
        }),
        AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => Some(ConfigError::Invalid {
            name: "AMQP_URL".into(),
            reason: format!("RabbitMQ does not allow this vhost ({broker_says})"),
            hint: "The vhost is the URL's path (%2f is the default vhost \"/\"); create it with rabbitmqctl add_vhost or fix the URL.",
        }),
        AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) => Some(ConfigError::Invalid {
            name: "WXNOTIFY_DELIVERY_LIMIT / WXNOTIFY_QUEUE_PREFIX".into(),
            reason: format!("a queue exists with other arguments ({broker_says})"),
            hint: "Declare with the arguments the queues were created with (e.g. the same WXNOTIFY_DELIVERY_LIMIT), use another WXNOTIFY_QUEUE_PREFIX, or delete the old queues once they are drained.",
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_a_misconfiguration_naming_amqp_url() {
        let url_err = ConfigError::Invalid {
            name: "AMQP_URL".into(),
            reason: "bad".into(),
            hint: "",
        };
        let err = anyhow::Error::new(ConnectError::Url(url_err)).context("connecting");
        let config = misconfiguration(&err).expect("a misconfiguration");
        assert!(config.to_string().contains("AMQP_URL"), "{config}");
    }

    #[test]
    fn an_unreachable_broker_is_not_a_misconfiguration() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = anyhow::Error::new(lapin::Error::from(io));
        assert!(misconfiguration(&err).is_none());
    }
}
