//! Coalesced acks: one `basic.ack` with `multiple` for every run of settled deliveries, instead
//! of one frame (and one syscall, and one Raft command in the quorum queue) per job.
//!
//! Deliveries on one channel carry the tags 1, 2, 3 … in order and settle out of order. The
//! coalescer remembers which tags are settled and, whenever the settled tags form a longer
//! unbroken run from the start, acks the newest tag of the run that is to be acked, with
//! `multiple = true`. A delivery that was rejected on its own (returned to the queue) is
//! reported as skipped: it lets the run pass without ever being acked. A delivery that never
//! settles (shutdown during a database outage) holds the run back, so nothing after it is
//! acked before it: when the channel closes, the broker redelivers those, and the ledger knows
//! which of them were already recorded.

use std::collections::BTreeMap;

use lapin::Channel;
use lapin::options::BasicAckOptions;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Where settled deliveries of one channel are reported. Cheap to clone.
#[derive(Clone)]
pub struct Acks {
    tx: mpsc::UnboundedSender<(u64, bool)>,
}

impl Acks {
    /// Starts the coalescer of `channel`. It ends (after a last ack) when every `Acks` clone is
    /// dropped.
    pub fn spawn(channel: Channel) -> (Acks, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Acks { tx }, tokio::spawn(coalesce(channel, rx)))
    }

    /// The delivery `tag` is recorded: ack it.
    pub fn ack(&self, tag: u64) {
        let _ = self.tx.send((tag, true));
    }

    /// The delivery `tag` was rejected on its own: never ack it, but let later tags be acked.
    pub fn skip(&self, tag: u64) {
        let _ = self.tx.send((tag, false));
    }
}

async fn coalesce(channel: Channel, mut rx: mpsc::UnboundedReceiver<(u64, bool)>) {
    let mut settled = Run::default();
    let mut buf = Vec::with_capacity(1024);
    while rx.recv_many(&mut buf, 1024).await > 0 {
        let Some(tag) = settled.advance(buf.drain(..)) else {
            continue;
        };
        if let Err(e) = channel
            .basic_ack(tag, BasicAckOptions { multiple: true })
            .await
        {
            // The channel is gone: the broker redelivers, and the ledger recognises the jobs.
            tracing::debug!(error = %e, tag, "ack failed; the deliveries will come again");
        }
    }
}

/// The settled tags beyond the unbroken run from the start.
#[derive(Debug, Default)]
struct Run {
    /// Every tag up to this one is settled (and acked or skipped).
    through: u64,
    /// Settled tags after a gap: tag -> whether to ack it.
    ahead: BTreeMap<u64, bool>,
}

impl Run {
    /// Takes newly settled tags; returns the tag to ack with `multiple`, if the run grew past
    /// one to be acked.
    fn advance(&mut self, settled: impl Iterator<Item = (u64, bool)>) -> Option<u64> {
        self.ahead.extend(settled);
        let mut ack = None;
        while let Some(to_ack) = self.ahead.remove(&(self.through + 1)) {
            self.through += 1;
            if to_ack {
                ack = Some(self.through);
            }
        }
        ack
    }
}

#[cfg(test)]
mod tests {
    use super::Run;

    #[test]
    fn only_an_unbroken_run_is_acked_and_skipped_tags_are_never_acked() {
        let mut run = Run::default();
        assert_eq!(
            run.advance([(2, true), (3, true)].into_iter()),
            None,
            "1 is not settled yet"
        );
        assert_eq!(run.advance([(1, true)].into_iter()), Some(3));
        assert_eq!(
            run.advance([(4, true), (5, false)].into_iter()),
            Some(4),
            "5 was rejected"
        );
        assert_eq!(run.advance([(6, false)].into_iter()), None);
        assert_eq!(run.advance([(8, true), (7, true)].into_iter()), Some(8));
        assert!(run.ahead.is_empty());
    }
}
