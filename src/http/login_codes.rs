//! Login codes are single use: one `wx.login()` code is exchanged with WeChat at most once.
//!
//! Requests carrying the same code while its exchange is in flight share that one exchange
//! (single flight) and get the same answer; a code seen in the last ten minutes (WeChat's codes
//! live five) is refused without calling WeChat. The exchange runs in a task of its own, so a
//! client that hangs up cannot leave a consumed code without its user row.
//!
//! Codes are kept as SHA-1 digests (with the app name), never as the code itself. The map is
//! per process: WeChat itself refuses a reused code (40163) across processes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use sha1::{Digest, Sha1};

use crate::domain::AppName;

/// How long a used code is remembered.
const REMEMBER: Duration = Duration::from_secs(600);
/// Entries kept before expired ones are swept.
const SWEEP_ABOVE: usize = 4096;

type Key = [u8; 20];
type SharedExchange<T, E> = Shared<BoxFuture<'static, Result<T, E>>>;

enum Slot<T: Clone, E: Clone> {
    InFlight(SharedExchange<T, E>, Instant),
    Used(Instant),
}

impl<T: Clone, E: Clone> Slot<T, E> {
    fn since(&self) -> Instant {
        match self {
            Slot::InFlight(_, at) | Slot::Used(at) => *at,
        }
    }
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
    /// Held only to look up or change a slot, never across an await.
    slots: Arc<Mutex<HashMap<Key, Slot<T, E>>>>,
}

impl<T: Clone, E: Clone> Clone for LoginCodes<T, E> {
    fn clone(&self) -> Self {
        Self {
            slots: self.slots.clone(),
        }
    }
}

impl<T: Clone, E: Clone> Default for LoginCodes<T, E> {
    fn default() -> Self {
        Self {
            slots: Arc::default(),
        }
    }
}

impl<T, E> LoginCodes<T, E>
where
    T: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
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
        let shared = {
            let mut slots = self.slots.lock().expect("login code map");
            match slots.get(&key) {
                Some(Slot::InFlight(shared, _)) => shared.clone(),
                Some(Slot::Used(at)) if at.elapsed() < REMEMBER => return Exchanged::AlreadyUsed,
                _ => {
                    sweep(&mut slots);
                    let shared = self.spawn(key, exchange, on_panic);
                    slots.insert(key, Slot::InFlight(shared.clone(), Instant::now()));
                    shared
                }
            }
        };
        Exchanged::Done(shared.await)
    }

    fn spawn<F>(&self, key: Key, exchange: F, on_panic: E) -> SharedExchange<T, E>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        let slots = self.slots.clone();
        let task = tokio::spawn(async move {
            let result = exchange.await;
            slots
                .lock()
                .expect("login code map")
                .insert(key, Slot::Used(Instant::now()));
            result
        });
        async move { task.await.unwrap_or(Err(on_panic)) }
            .boxed()
            .shared()
    }

    /// How many codes are remembered (for tests).
    pub fn len(&self) -> usize {
        self.slots.lock().expect("login code map").len()
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

/// Drops entries older than [`REMEMBER`] once the map is large (in-flight ones that old belong
/// to a stuck exchange and are dropped too).
fn sweep<T: Clone, E: Clone>(slots: &mut HashMap<Key, Slot<T, E>>) {
    if slots.len() > SWEEP_ABOVE {
        slots.retain(|_, slot| slot.since().elapsed() < REMEMBER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
