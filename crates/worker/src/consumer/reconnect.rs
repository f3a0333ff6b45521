//! When the worker tries RabbitMQ again after a lost connection.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The waits between connection attempts: 100 ms doubling up to 1 s (jittered), so a broker that
/// comes back is reached within about a second; reset each time a connection succeeds, so a
/// broker that drops the connection again is retried at once rather than after the waits that
/// piled up before.
pub(super) struct Reconnect {
    backoff: backon::ExponentialBackoff,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            backoff: reconnect_backoff(),
        }
    }
}

impl Reconnect {
    /// A connection succeeded.
    pub(super) fn connected(&mut self) {
        self.backoff = reconnect_backoff();
    }

    /// How long to wait before the next attempt.
    pub(super) fn next_wait(&mut self) -> Duration {
        self.backoff.next().unwrap_or(RECONNECT_MAX)
    }
}

/// The longest wait between connection attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(1);

fn reconnect_backoff() -> backon::ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(RECONNECT_MAX)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_that_succeeded_resets_the_reconnect_backoff() {
        let mut r = Reconnect::default();
        // A long outage: the waits grow to their cap.
        for _ in 0..20 {
            assert!(
                r.next_wait() <= RECONNECT_MAX * 2,
                "never past about a second"
            );
        }
        // The broker answered; the session ended again later: the next try comes at once.
        r.connected();
        assert!(r.next_wait() <= Duration::from_millis(200));
    }
}
