//! One app's lane: its own posts in flight (at most
//! [`WebhookOptions::per_app_concurrency`](super::WebhookOptions::per_app_concurrency)), each
//! bounded by the request timeout, so a slow receiver delays only its own app's events.
//!
//! The lane claims only as many events as it has free slots, so every claimed event is posted at
//! once and settled well inside its lease; the events it cannot take yet stay unclaimed, for the
//! lane's next free slot or another `serve` process.

use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::producer::webhooks::dispatch::Context;
use crate::producer::webhooks::outbox::{self, Claimed};
use crate::producer::webhooks::post::post;
use crate::producer::webhooks::store::secret_place;

/// A running lane; woken when its app may have events due.
pub(super) struct Lane {
    wake: Arc<Notify>,
}

impl Lane {
    /// Starts the lane of `app`; it ends with `shutdown` (its posts in flight are tracked by
    /// the context and finish).
    pub fn start(ctx: Arc<Context>, app: String, shutdown: CancellationToken) -> Lane {
        let wake = Arc::new(Notify::new());
        tokio::spawn(run(ctx, app, wake.clone(), shutdown));
        Lane { wake }
    }

    /// Tells the lane to look for due events.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

async fn run(ctx: Arc<Context>, app: String, wake: Arc<Notify>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(ctx.options.per_app_concurrency.max(1)));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
        }
        loop {
            let permits = tokio::select! {
                _ = shutdown.cancelled() => return,
                p = free_slots(&slots) => p,
            };
            let wanted = permits.len();
            let claimed = match outbox::claim(&ctx.pool, &app, wanted, ctx.lease()).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, app, "webhook outbox unavailable");
                    break;
                }
            };
            let more = claimed.len() == wanted;
            for (event, permit) in claimed.into_iter().zip(permits) {
                let (ctx, wake) = (ctx.clone(), wake.clone());
                ctx.posts.clone().spawn(async move {
                    deliver(&ctx, event).await;
                    // A slot is free: the lane may take the next due event.
                    drop(permit);
                    wake.notify_one();
                });
            }
            if !more {
                break;
            }
        }
    }
}

/// Waits for one free slot, then takes every other free one.
async fn free_slots(slots: &Arc<Semaphore>) -> Vec<OwnedSemaphorePermit> {
    let first = slots
        .clone()
        .acquire_owned()
        .await
        .expect("the lane never closes its semaphore");
    let mut permits = vec![first];
    while let Ok(p) = slots.clone().try_acquire_owned() {
        permits.push(p);
    }
    permits
}

/// Posts one claimed event and records the outcome.
async fn deliver(ctx: &Context, event: Claimed) {
    let result = match ctx.secrets.open(secret_place(&event.app), &event.secret) {
        Ok(secret) => post(&ctx.client, &event, &secret).await,
        Err(e) => {
            tracing::error!(error = %e, id = event.id, "webhook not signed");
            Err(e.to_string())
        }
    };
    if let Err(e) = outbox::settle(&ctx.pool, &ctx.options, &event, result).await {
        tracing::warn!(error = %e, id = event.id, "webhook outcome not recorded; it will be posted again");
    }
}
