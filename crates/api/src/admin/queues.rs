//! Queue depths by passive declare: asks RabbitMQ about each queue of the prefix over AMQP (no
//! management plugin needed). One connection is kept and opened again when it died.

use std::sync::Arc;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use secrecy::SecretString;
use tokio::sync::Mutex;

use wxnotify_core::queue::Topology;

/// The depth of one queue.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct QueueDepth {
    /// The queue's name.
    pub name: String,
    /// Messages ready for delivery (`null` when the queue does not exist).
    pub messages: Option<u32>,
    /// Consumers attached.
    pub consumers: Option<u32>,
}

/// Asks the broker for queue depths.
pub struct QueueProbe {
    amqp_url: SecretString,
    topology: Topology,
    connection: Mutex<Option<Arc<lapin::Connection>>>,
}

impl QueueProbe {
    /// A probe of `topology`'s queues at `amqp_url` (connects at the first call).
    pub fn new(amqp_url: SecretString, topology: Topology) -> Self {
        QueueProbe {
            amqp_url,
            topology,
            connection: Mutex::new(None),
        }
    }

    /// The depth of every queue of the prefix. Fails when the broker cannot be reached.
    pub async fn depths(&self) -> anyhow::Result<Vec<QueueDepth>> {
        let connection = self.connection().await?;
        let mut out = Vec::new();
        let mut channel = connection.create_channel().await?;
        for name in self.topology.queues() {
            let options = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            match channel
                .queue_declare(name.as_str().into(), options, FieldTable::default())
                .await
            {
                Ok(q) => out.push(QueueDepth {
                    name,
                    messages: Some(q.message_count()),
                    consumers: Some(q.consumer_count()),
                }),
                Err(_) => {
                    // A missing queue closes the channel (404); note it and go on.
                    out.push(QueueDepth {
                        name,
                        messages: None,
                        consumers: None,
                    });
                    channel = connection.create_channel().await?;
                }
            }
        }
        let _ = channel.close(200, "depths read".into()).await;
        Ok(out)
    }

    async fn connection(&self) -> anyhow::Result<Arc<lapin::Connection>> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(c.clone());
        }
        let c =
            Arc::new(wxnotify_core::queue::connect(&self.amqp_url, "wxnotify serve admin").await?);
        *slot = Some(c.clone());
        Ok(c)
    }
}
