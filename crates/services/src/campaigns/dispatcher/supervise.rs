//! Keeping a dispatcher running: connect to RabbitMQ, run, and reconnect with backoff until
//! shutdown.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{Dispatcher, DispatcherOptions};
use wxnotify_core::queue::Topology;

/// Runs a dispatcher for `settings` until `shutdown`, reconnecting to RabbitMQ with backoff.
/// This is what `wxnotify worker` runs beside its consumers, and `wxnotify campaign dispatch`
/// on its own.
pub async fn run_until(
    settings: wxnotify_core::config::Settings,
    pool: PgPool,
    options: DispatcherOptions,
    shutdown: CancellationToken,
) {
    let quota = settings.quota.clone();
    let topology = Topology::new(settings.queue_prefix.clone());
    let mut delay = Duration::from_millis(500);
    while !shutdown.is_cancelled() {
        let (connection, node) = match wxnotify_core::queue::connect_node_of(
            &settings.amqp_url,
            "wxnotify-campaign-dispatcher",
        )
        .await
        {
            Ok((c, node)) => (Arc::new(c), node),
            Err(e) => {
                tracing::warn!(error = %e, "dispatcher: RabbitMQ unreachable; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        let dispatcher = match Dispatcher::new(
            pool.clone(),
            connection.clone(),
            topology.clone(),
            quota.clone(),
            options.clone(),
        )
        .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "dispatcher: no publisher; retrying");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        delay = Duration::from_millis(500);
        if let Err(e) = dispatcher.run(shutdown.clone()).await {
            // The chunk in flight is published again from the unmoved cursor, on the next node
            // (its job ids make the second copy a duplicate the worker does not send).
            if !connection.status().connected() {
                wxnotify_core::queue::node_lost(&settings.amqp_url, &node);
            }
            tracing::warn!(
                error = %e,
                node = %node,
                next = wxnotify_core::queue::first_node(&settings.amqp_url).unwrap_or_default(),
                "dispatcher stopped; reconnecting"
            );
        }
        let _ = connection.close(200, "dispatcher stopping".into()).await;
    }
}
