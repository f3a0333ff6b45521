//! Login codes are single use: one `wx.login()` code is exchanged with WeChat at most once.
//!
//! Requests carrying the same code while its exchange is in flight share that one exchange
//! (single flight) and get the same answer; a code seen in the last ten minutes (WeChat's codes
//! live five) is refused without calling WeChat. The exchange runs in a task of its own, so a
//! client that hangs up cannot leave a consumed code without its user row.
//!
//! Codes are kept as SHA-1 digests (with the app name), never as the code itself. The map is
//! per process: WeChat itself refuses a reused code (40163) across processes. It is a bounded
//! `moka` cache: an entry expires ten minutes after its last change (expiry runs in time order,
//! with no sweep under a lock), and at most [`CAPACITY`] codes are kept (the login limits keep
//! the real number far below it).

use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use sha1::{Digest, Sha1};

use wxnotify_core::domain::AppName;

/// How long a used code is remembered.
const REMEMBER: Duration = Duration::from_secs(600);
/// The most codes remembered at once.
pub const CAPACITY: u64 = 65_536;

type Key = [u8; 20];
type SharedExchange<T, E> = Shared<BoxFuture<'static, Result<T, E>>>;

#[derive(Clone)]
enum Slot<T: Clone, E: Clone> {
    InFlight(SharedExchange<T, E>),
    Used,
}

/// What happened to a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchanged<T, E> {
    /// This request's exchange, or the one in flight it joined, finished.
    Done(Result<T, E>),
    /// The code was used recently; WeChat was not called.
    AlreadyUsed,
}

/// The single-flight map of login codes. Cheap to clone.
pub struct LoginCodes<T: Clone, E: Clone> {
    /// Shared by clones (a moka cache is a handle).
    slots: moka::sync::Cache<Key, Slot<T, E>>,
}

impl<T: Clone, E: Clone> Clone for LoginCodes<T, E> {
    fn clone(&self) -> Self {
        Self {
            slots: self.slots.clone(),
        }
    }
}

impl<T, E> Default for LoginCodes<T, E>
where
    T: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl<T, E> LoginCodes<T, E>
where
    T: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    /// A map that remembers at most `capacity` codes.
    pub fn with_capacity(capacity: u64) -> Self {
        Self {
            slots: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(REMEMBER)
                .build(),
        }
    }

    /// Runs `exchange` for this code unless it runs already (then waits for it) or ran recently.
    /// `on_panic` is the answer if the exchange task dies.
    pub async fn exchange<F>(
        &self,
        app: &AppName,
        code: &str,
        exchange: F,
        on_panic: E,
    ) -> Exchanged<T, E>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        let key = digest(app, code);
        // `or_insert_with` runs the closure for one caller only; the others see its slot. The
        // exchange waits for `registered` so its `Used` cannot land before its `InFlight`.
        let (registered, wait) = tokio::sync::oneshot::channel();
        let entry = self
            .slots
            .entry(key)
            .or_insert_with(|| Slot::InFlight(self.spawn(key, wait, exchange, on_panic)));
        let _ = registered.send(());
        match entry.into_value() {
            Slot::InFlight(shared) => Exchanged::Done(shared.await),
            Slot::Used => Exchanged::AlreadyUsed,
        }
    }

    fn spawn<F>(
        &self,
        key: Key,
        registered: tokio::sync::oneshot::Receiver<()>,
        exchange: F,
        on_panic: E,
    ) -> SharedExchange<T, E>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        let slots = self.slots.clone();
        let task = tokio::spawn(async move {
            let _ = registered.await;
            let result = exchange.await;
            slots.insert(key, Slot::Used);
            result
        });
        async move { task.await.unwrap_or(Err(on_panic)) }
            .boxed()
            .shared()
    }

    /// How many codes are remembered (approximate until pending work runs; for tests).
    pub fn len(&self) -> usize {
        self.slots.run_pending_tasks();
        usize::try_from(self.slots.entry_count()).unwrap_or(usize::MAX)
    }

    /// Whether no code is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn digest(app: &AppName, code: &str) -> Key {
    let mut h = Sha1::new();
    h.update(app.as_str().as_bytes());
    h.update([0]);
    h.update(code.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn the_map_is_bounded_whatever_the_number_of_codes() {
        let codes: LoginCodes<u32, String> = LoginCodes::with_capacity(100);
        let app = AppName::default_app();
        for i in 0..5_000u32 {
            let code = format!("code-{i}");
            let done = codes
                .exchange(&app, &code, async { Ok(1) }, "panic".into())
                .await;
            assert_eq!(done, Exchanged::Done(Ok(1)));
        }
        assert!(codes.len() <= 100, "{} codes kept", codes.len());
    }

    #[tokio::test]
    async fn concurrent_requests_with_one_code_share_one_exchange_and_a_used_code_is_refused() {
        let codes: LoginCodes<u32, String> = LoginCodes::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let app = AppName::default_app();
        let first = {
            let calls = calls.clone();
            let codes = codes.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let work = async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    wait.await.ok();
                    Ok(7)
                };
                codes.exchange(&app, "C0DE", work, "panic".into()).await
            })
        };
        tokio::task::yield_now().await;
        let second = {
            let (calls, codes, app) = (calls.clone(), codes.clone(), app.clone());
            tokio::spawn(async move {
                let work = async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok(8)
                };
                codes.exchange(&app, "C0DE", work, "panic".into()).await
            })
        };
        tokio::task::yield_now().await;
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Exchanged::Done(Ok(7)));
        assert_eq!(second.await.unwrap(), Exchanged::Done(Ok(7)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let third = codes
            .exchange(&app, "C0DE", async { Ok(9) }, "panic".into())
            .await;
        assert_eq!(third, Exchanged::AlreadyUsed);
        let other = codes
            .exchange(&app, "OTHER", async { Ok(10) }, "panic".into())
            .await;
        assert_eq!(other, Exchanged::Done(Ok(10)));
    }
}
