//! Whether the worker's RabbitMQ connection is up: set by the consumer, read by `/healthz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The state of the consumer's RabbitMQ connection, shared and cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct BrokerLink(Arc<AtomicBool>);

impl BrokerLink {
    /// Whether the consumer is consuming now (false while connecting or reconnecting).
    pub fn is_consuming(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Records that consumers are attached (`true`) or that the connection is lost (`false`).
    pub(crate) fn set_consuming(&self, consuming: bool) {
        self.0.store(consuming, Ordering::Relaxed);
    }
}
