//! The outbox dispatcher: finds the apps with events due and wakes each app's [`Lane`], which
//! claims (leased, `SKIP LOCKED`), posts and settles its own events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wxnotify_core::at_rest::SecretCodec;

use crate::producer::webhooks::WebhookOptions;
use crate::producer::webhooks::lane::Lane;
use crate::producer::webhooks::outbox;

/// The Postgres channel the outbox triggers notify.
const CHANNEL: &str = "wxnotify_webhooks";
/// How much longer than the request timeout a claim is leased: time to record the outcome.
const LEASE_MARGIN: Duration = Duration::from_secs(10);

/// What every lane of one dispatcher shares.
pub(super) struct Context {
    /// The database of the outbox.
    pub pool: PgPool,
    /// The HTTP client, with the request timeout.
    pub client: reqwest::Client,
    /// The posting policy.
    pub options: WebhookOptions,
    /// Opens the stored signing secrets.
    pub secrets: SecretCodec,
    /// The posts in flight, waited for at shutdown.
    pub posts: TaskTracker,
}

impl Context {
    /// How long a claim holds an event: longer than any post may take.
    pub fn lease(&self) -> Duration {
        self.options.timeout + LEASE_MARGIN
    }
}

/// Posts outbox events until `shutdown`, then waits for the posts in flight (each bounded by
/// [`WebhookOptions::timeout`]). Woken by the triggers' notifications, polling every
/// [`WebhookOptions::idle_poll`] as well (retries coming due, leases of crashed processes).
pub async fn run_dispatcher(
    pool: PgPool,
    options: WebhookOptions,
    secrets: SecretCodec,
    shutdown: CancellationToken,
) {
    let client = match reqwest::Client::builder()
        .timeout(options.timeout)
        .connect_timeout(options.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("wxnotify-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook client could not be built; webhooks are off");
            return;
        }
    };
    let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
        Ok(mut l) => match l.listen(CHANNEL).await {
            Ok(()) => Some(l),
            Err(_) => None,
        },
        Err(_) => None,
    };
    let idle_poll = options.idle_poll;
    let ctx = Arc::new(Context {
        pool,
        client,
        options,
        secrets,
        posts: TaskTracker::new(),
    });
    let mut lanes: HashMap<String, Lane> = HashMap::new();
    loop {
        match outbox::due_apps(&ctx.pool).await {
            Ok(apps) => {
                for app in apps {
                    lanes
                        .entry(app.clone())
                        .or_insert_with(|| Lane::start(ctx.clone(), app, shutdown.clone()))
                        .wake();
                }
            }
            Err(e) => tracing::warn!(error = %e, "webhook outbox unavailable"),
        }
        let wake = async {
            match listener.as_mut() {
                Some(l) => {
                    if l.recv().await.is_err() {
                        tokio::time::sleep(idle_poll).await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wake => {}
            _ = tokio::time::sleep(idle_poll) => {}
        }
    }
    ctx.posts.close();
    ctx.posts.wait().await;
}
