//! Turning a batch of sends into one result per message: pipelined sends, confirms awaited
//! until a deadline, and returned (unroutable) messages matched by `message_id`.

use std::collections::HashSet;

use lapin::options::BasicPublishOptions;
use lapin::{Channel, Confirmation, PublisherConfirm};
use tokio::time::Instant;

use super::publisher::{Outgoing, PublishError};

/// Sends every message without waiting for confirms. After a send error (or when `deadline`
/// passes: a broker that blocks publishers stops reading) the channel is unusable, so the rest
/// fail with the same error.
pub(super) async fn send_all(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    messages: Vec<Outgoing<'_>>,
    deadline: Instant,
) -> Vec<Result<PublisherConfirm, lapin::Error>> {
    let options = BasicPublishOptions {
        mandatory: true,
        immediate: false,
    };
    let mut sent = Vec::with_capacity(messages.len());
    let mut failed: Option<lapin::Error> = None;
    for message in messages {
        if let Some(err) = &failed {
            sent.push(Err(err.clone()));
            continue;
        }
        let publish = channel.basic_publish(
            exchange.into(),
            routing_key.into(),
            options,
            message.body,
            message.properties,
        );
        let result = tokio::time::timeout_at(deadline, publish)
            .await
            .unwrap_or_else(|_| Err(timed_out()));
        if let Err(err) = &result {
            failed = Some(err.clone());
        }
        sent.push(result);
    }
    sent
}

/// Awaits each confirm until `deadline`; confirms arrive in any order, but all are awaited, so
/// awaiting them in order costs nothing.
pub(super) async fn await_all(
    sent: Vec<Result<PublisherConfirm, lapin::Error>>,
    deadline: Instant,
) -> Vec<Result<Confirmation, lapin::Error>> {
    let mut out = Vec::with_capacity(sent.len());
    for confirm in sent {
        let result = match confirm {
            Err(err) => Err(err),
            Ok(confirm) => match tokio::time::timeout_at(deadline, confirm).await {
                Ok(result) => result,
                Err(_) => Err(timed_out()),
            },
        };
        out.push(result);
    }
    out
}

fn timed_out() -> lapin::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the broker did not take or confirm the message in time (is it blocked by a memory or disk alarm?)",
    )
    .into()
}

/// The `message_id`s of every message the broker returned during this batch, whichever
/// confirm carried them. A returned message without an id is recorded as `None`.
pub(super) fn returned_ids(
    confirmations: &[Result<Confirmation, lapin::Error>],
) -> HashSet<Option<String>> {
    confirmations
        .iter()
        .filter_map(|c| match c {
            Ok(Confirmation::Ack(Some(msg)) | Confirmation::Nack(Some(msg))) => Some(
                msg.delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.as_str().to_owned()),
            ),
            _ => None,
        })
        .collect()
}

pub(super) fn outcome(
    confirmation: Result<Confirmation, lapin::Error>,
    message_id: Option<&str>,
    returned: &HashSet<Option<String>>,
) -> Result<(), PublishError> {
    match confirmation {
        Err(err) => Err(PublishError::Broker(err)),
        Ok(Confirmation::Nack(_)) => Err(PublishError::Nacked),
        Ok(_) if returned.contains(&message_id.map(str::to_owned)) => Err(PublishError::Unroutable),
        Ok(_) => Ok(()),
    }
}
