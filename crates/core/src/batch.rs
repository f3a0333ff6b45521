//! Opportunistic batching: many tasks each ask for one thing to be done (a ledger row written,
//! a request's jobs published); a single task takes whatever requests have piled up (at most
//! `max` at a time) and makes one call for all of them. Under load the batches grow by
//! themselves; with a single request there is no added wait. This is what keeps Postgres (and
//! the worker's CPU) from paying a round trip per job, and the producer API from holding a
//! RabbitMQ channel per request while it waits for a confirm.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// A database error shared by every request of the batch that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DbError(pub Arc<sqlx::Error>);

impl DbError {
    /// Whether Postgres broke a deadlock by aborting this statement (SQLSTATE 40P01) or could
    /// not serialize it (40001): a conflict with another transaction, worth retrying at once,
    /// not a sign that Postgres is unavailable.
    pub fn is_conflict(&self) -> bool {
        is_conflict(&self.0)
    }
}

/// Whether Postgres aborted the statement to break a deadlock (SQLSTATE 40P01) or could not
/// serialize it (40001).
pub fn is_conflict(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(e) => matches!(e.code().as_deref(), Some("40P01" | "40001")),
        _ => false,
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        DbError(Arc::new(e))
    }
}

/// Splits the flat results of a batch made of several requests' items back into one `Vec` per
/// request, `sizes` being each request's number of items, in order.
pub fn split<T>(sizes: &[usize], flat: impl IntoIterator<Item = T>) -> Vec<Vec<T>> {
    let mut flat = flat.into_iter();
    sizes
        .iter()
        .map(|&n| flat.by_ref().take(n).collect())
        .collect()
}

/// The error every request of a failed batch receives.
pub trait BatchError: Clone + Send + 'static {
    /// The error of a request made when the batching task is gone (its runtime is stopping).
    fn stopped() -> Self;
}

impl BatchError for DbError {
    fn stopped() -> Self {
        DbError::from(sqlx::Error::PoolClosed)
    }
}

type Reply<Resp, E> = oneshot::Sender<Result<Resp, E>>;

/// Hands each request its response, or the batch's error.
fn answer<Resp, E: BatchError>(replies: Vec<Reply<Resp, E>>, result: Result<Vec<Resp>, E>) {
    match result {
        Ok(resps) => {
            debug_assert_eq!(resps.len(), replies.len());
            for (reply, resp) in replies.into_iter().zip(resps) {
                let _ = reply.send(Ok(resp));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// A handle to a batching task; `E` is the error a failed batch hands each of its requests.
pub struct Batcher<Req, Resp, E = DbError> {
    tx: mpsc::Sender<(Req, Reply<Resp, E>)>,
}

impl<Req, Resp, E> Clone for Batcher<Req, Resp, E> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static, E: BatchError> Batcher<Req, Resp, E> {
    /// Spawns the batching task. `exec` makes one call (e.g. one statement) for a batch and
    /// returns one response per request, in order. Up to `in_flight` calls run at once (for
    /// statements: each its own transaction, so a slow commit does not hold the next batch
    /// back); meanwhile the next batch fills up. `name` labels the batch sizes in the metric
    /// `wxnotify_batch_size{batcher}`.
    ///
    /// `linger`: batches start at most once per `linger` while requests keep coming: a request
    /// that arrives less than `linger` after the last batch started waits for that much to have
    /// passed (or for the batch to fill up), together with every request arriving meanwhile. A
    /// request after a quiet spell goes at once. So batches fill by time, not by whatever
    /// arrived in one scheduler tick: at 2,000 sends/s the sends finish a few at a time, and a
    /// statement (with its wake-ups, round trip and commit) per handful of rows costs both
    /// Postgres and the worker more than the few milliseconds each request waits, while a lone
    /// request pays nothing.
    pub fn spawn<F, Fut, X>(
        name: &'static str,
        max: usize,
        in_flight: usize,
        linger: Duration,
        exec: F,
    ) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Resp>, X>> + Send + 'static,
        X: Into<E>,
    {
        let (tx, mut rx) = mpsc::channel::<(Req, Reply<Resp, E>)>(max * 4);
        let exec = Arc::new(exec);
        let slots = Arc::new(tokio::sync::Semaphore::new(in_flight.max(1)));
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(max);
            let mut last_start: Option<tokio::time::Instant> = None;
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                if rx.recv_many(&mut buf, max).await == 0 {
                    return;
                }
                let now = tokio::time::Instant::now();
                let deadline = last_start.map_or(now, |t| (t + linger).max(now));
                while buf.len() < max && tokio::time::Instant::now() < deadline {
                    let room = max - buf.len();
                    match tokio::time::timeout_at(deadline, rx.recv_many(&mut buf, room)).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                last_start = Some(tokio::time::Instant::now());
                let (reqs, replies): (Vec<Req>, Vec<Reply<Resp, E>>) = buf.drain(..).unzip();
                let exec = exec.clone();
                tokio::spawn(async move {
                    let size = reqs.len();
                    let started = std::time::Instant::now();
                    let result = exec(reqs).await.map_err(Into::into);
                    drop(slot);
                    metrics::histogram!("wxnotify_batch_size", "batcher" => name)
                        .record(size as f64);
                    tracing::trace!(
                        batcher = name,
                        size,
                        ms = started.elapsed().as_secs_f64() * 1e3,
                        "batch done"
                    );
                    answer(replies, result);
                });
            }
        });
        Batcher { tx }
    }

    /// Queues one request and waits for its response.
    pub async fn call(&self, req: Req) -> Result<Resp, E> {
        let (reply, rx) = oneshot::channel();
        self.tx.send((req, reply)).await.map_err(|_| E::stopped())?;
        rx.await.map_err(|_| E::stopped())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_that_pile_up_share_one_call() {
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = calls.clone();
        let b: Batcher<u32, u32> =
            Batcher::spawn("test", 64, 1, Duration::ZERO, move |reqs: Vec<u32>| {
                seen.lock().unwrap().push(reqs.len());
                async move {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    Ok::<_, sqlx::Error>(reqs.into_iter().map(|r| r * 2).collect())
                }
            });
        let answers = futures::future::join_all((0..100).map(|i| {
            let b = b.clone();
            async move { b.call(i).await.unwrap() }
        }))
        .await;
        assert_eq!(answers, (0..100).map(|i| i * 2).collect::<Vec<_>>());
        let calls = calls.lock().unwrap();
        assert!(
            calls.len() < 10,
            "100 requests took {} statements",
            calls.len()
        );
    }

    #[tokio::test]
    async fn a_lone_request_goes_at_once_and_a_steady_stream_is_batched_by_time() {
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = calls.clone();
        let linger = Duration::from_millis(300);
        let b: Batcher<u32, u32> = Batcher::spawn("test", 64, 4, linger, move |reqs: Vec<u32>| {
            seen.lock().unwrap().push(reqs.len());
            async move { Ok::<_, sqlx::Error>(reqs) }
        });
        // Ten requests 1 ms apart, then one long after the linger: the first goes at once,
        // the nine behind it wait for the linger to pass and share one call, the last (after
        // a quiet spell) goes at once again.
        let started = tokio::time::Instant::now();
        let mut waits = Vec::new();
        for i in 0..10 {
            let b = b.clone();
            waits.push(tokio::spawn(async move { b.call(i).await.unwrap() }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        let lone = tokio::time::Instant::now();
        assert_eq!(b.call(10).await.unwrap(), 10);
        assert!(
            lone.elapsed() < Duration::from_millis(150),
            "the lone request waited"
        );
        for (i, w) in waits.into_iter().enumerate() {
            assert_eq!(w.await.unwrap(), i as u32);
        }
        assert!(started.elapsed() >= linger);
        assert_eq!(*calls.lock().unwrap(), vec![1, 9, 1]);
    }
}
