//! Reserving a place before having the batch: the cancel-safe way to wait for room.

use std::pin::pin;
use std::time::Instant;

use surefoot_core_model::Batch;

use super::error::{QueueClosed, SendError};
use super::{QueueSender, Shared};

/// A place in the queue, held until [`Permit::send`] uses it or the permit is dropped (which
/// gives the place back).
///
/// The place counts against the queue's capacity in batches. The byte bound is not checked
/// again when the batch is sent: a permit's batch may take the queue past `max_bytes` by
/// itself.
#[derive(Debug)]
pub struct Permit<'a> {
    shared: &'a Shared,
    used: bool,
}

impl QueueSender {
    /// Waits for a place and holds it.
    ///
    /// Cancel-safe: dropping the future loses nothing (it holds no batch), so it can sit in a
    /// `select!` beside other work. Fails once the queue is closed.
    pub async fn reserve(&self) -> Result<Permit<'_>, QueueClosed> {
        let mut waiting_since = None;
        loop {
            let mut notified = pin!(self.shared.not_full.notified());
            notified.as_mut().enable();
            {
                let mut state = self.shared.state();
                if state.closed {
                    return Err(QueueClosed {
                        queue: self.shared.config.name.clone(),
                    });
                }
                if state.lanes.len() + state.reserved < self.shared.config.capacity {
                    state.reserved += 1;
                    drop(state);
                    if let Some(since) = waiting_since {
                        self.shared
                            .metrics
                            .producer_waited(Instant::elapsed(&since));
                    }
                    return Ok(Permit {
                        shared: &self.shared,
                        used: false,
                    });
                }
            }
            waiting_since.get_or_insert_with(Instant::now);
            notified.await;
        }
    }
}

impl Permit<'_> {
    /// Enqueues `batch` in the reserved place, without waiting. Fails only if the queue was
    /// closed since the place was reserved; the batch then comes back.
    #[allow(
        clippy::result_large_err,
        reason = "the error hands the batch back to its owner; boxing it would allocate on every refusal"
    )]
    pub fn send(mut self, batch: Batch) -> Result<(), SendError> {
        self.used = true;
        let bytes = self.shared.weigh(&batch);
        let mut state = self.shared.state();
        state.reserved -= 1;
        if state.closed {
            drop(state);
            self.shared.not_full.notify_one();
            return Err(self.shared.closed_error(batch));
        }
        self.shared.insert(state, batch, bytes);
        Ok(())
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.used {
            return;
        }
        self.shared.state().reserved -= 1;
        self.shared.not_full.notify_one();
    }
}
