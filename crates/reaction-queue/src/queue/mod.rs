//! The in-memory ordered, bounded queue.
//!
//! - **Bounded**: by count, and optionally by bytes. A full queue makes [`QueueSender::send`]
//!   wait for room; [`QueueSender::reserve`] waits for a place without holding the batch
//!   (cancel-safe); [`QueueSender::try_send`] returns [`TrySendError::Full`] with the batch.
//!   Nothing is ever dropped to make room.
//! - **Ordered**: within one source, batches come out in position order, always. Across
//!   sources, the next batch is the one with the smallest (commit time, source rank, position)
//!   among the heads of the sources' lanes, so equal commit times come out in a stable, stated
//!   order (see [`order`]). A batch without a commit time takes the wall-clock time of its
//!   enqueue.
//! - **Separate wake-ups**: producers wait on "not full", consumers on "not empty"; neither
//!   wakes the other side needlessly.
//! - **Closing** stops intake: sends fail with the batch handed back, queued batches can still
//!   be received. Dropping the last sender closes the queue; dropping the receiver closes it and
//!   drops what is queued, which settles those tokens as abandoned (so they are redelivered).

mod config;
mod error;
pub mod order;
mod permit;

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use chrono::Utc;
use surefoot_core_model::Batch;
use tokio::sync::Notify;

pub use config::QueueConfig;
pub use error::{ConfigError, QueueClosed, SendError, TryRecvError, TrySendError};
pub use order::OrderKey;
pub use permit::Permit;

use crate::metrics::QueueMetrics;
use order::Lanes;

/// A batch taken out of the queue.
#[derive(Debug)]
pub struct Queued {
    /// The batch, with its token still to be settled.
    pub batch: Batch,
    /// Where it sorted.
    pub key: OrderKey,
    /// When it was enqueued, for end-to-end latency.
    pub enqueued_at: Instant,
}

#[derive(Debug)]
struct Slot {
    batch: Batch,
    bytes: usize,
    enqueued_at: Instant,
}

#[derive(Debug)]
struct State {
    lanes: Lanes<Slot>,
    bytes: usize,
    /// Places held by [`Permit`]s not yet used.
    reserved: usize,
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    config: QueueConfig,
    state: Mutex<State>,
    not_full: Notify,
    not_empty: Notify,
    senders: AtomicUsize,
    metrics: QueueMetrics,
}

/// Creates a queue; fails with every problem of `config`.
pub fn ordered_queue(
    config: QueueConfig,
    metrics: QueueMetrics,
) -> Result<(QueueSender, QueueReceiver), ConfigError> {
    config.validate()?;
    metrics.declare();
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            lanes: Lanes::new(&config.source_ranks),
            bytes: 0,
            reserved: 0,
            closed: false,
        }),
        config,
        not_full: Notify::new(),
        not_empty: Notify::new(),
        senders: AtomicUsize::new(1),
        metrics,
    });
    Ok((
        QueueSender {
            shared: Arc::clone(&shared),
        },
        QueueReceiver { shared },
    ))
}

/// The producing side. Clone it for more producers.
#[derive(Debug)]
pub struct QueueSender {
    shared: Arc<Shared>,
}

/// The consuming side.
#[derive(Debug)]
pub struct QueueReceiver {
    shared: Arc<Shared>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent before it can panic, so a poisoned lock
        // holds usable data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn weigh(&self, batch: &Batch) -> usize {
        if self.config.max_bytes.is_none() {
            return 0;
        }
        // Serialising plain data cannot fail; should it, the batch weighs nothing extra and is
        // still bounded by count.
        serde_json::to_vec(&*batch.changes).map_or(0, |json| json.len())
    }

    fn has_room(&self, state: &State, bytes: usize) -> bool {
        let len = state.lanes.len();
        if len + state.reserved >= self.config.capacity {
            return false;
        }
        match self.config.max_bytes {
            Some(max) => len == 0 || state.bytes.saturating_add(bytes) <= max,
            None => true,
        }
    }

    #[allow(
        clippy::result_large_err,
        reason = "the error hands the batch back to its owner; boxing it would allocate on every refusal"
    )]
    fn try_push(&self, batch: Batch, bytes: usize) -> Result<(), TrySendError> {
        let state = self.state();
        if state.closed {
            return Err(TrySendError::Closed(self.closed_error(batch)));
        }
        if !self.has_room(&state, bytes) {
            return Err(TrySendError::Full {
                queue: self.config.name.clone(),
                batch,
            });
        }
        self.insert(state, batch, bytes);
        Ok(())
    }

    /// Puts `batch` in its lane; the caller checked for room.
    fn insert(&self, mut state: MutexGuard<'_, State>, batch: Batch, bytes: usize) {
        let time = batch
            .commit_time
            .unwrap_or_else(Utc::now)
            .timestamp_micros();
        let (source, position) = (batch.source.clone(), batch.first);
        let slot = Slot {
            batch,
            bytes,
            enqueued_at: Instant::now(),
        };
        state.lanes.push(&source, time, position, slot);
        state.bytes += bytes;
        self.metrics.enqueued(state.lanes.len());
        drop(state);
        self.not_empty.notify_one();
    }

    fn try_pop(&self) -> Result<Queued, TryRecvError> {
        let mut state = self.state();
        let Some((key, slot)) = state.lanes.pop() else {
            return Err(if state.closed {
                TryRecvError::Closed
            } else {
                TryRecvError::Empty
            });
        };
        state.bytes -= slot.bytes;
        self.metrics.dequeued(state.lanes.len());
        drop(state);
        self.not_full.notify_one();
        Ok(Queued {
            batch: slot.batch,
            key,
            enqueued_at: slot.enqueued_at,
        })
    }

    fn close(&self) {
        self.state().closed = true;
        self.not_full.notify_waiters();
        self.not_empty.notify_waiters();
    }

    fn closed_error(&self, batch: Batch) -> SendError {
        SendError {
            queue: self.config.name.clone(),
            batch,
        }
    }
}

impl QueueSender {
    /// Enqueues `batch`, waiting for room while the queue is full.
    ///
    /// Cancel safety: if the future is dropped before it completes, the batch was not enqueued
    /// and is dropped with the future, which settles its token as abandoned: the source
    /// redelivers it. Nothing is lost silently, but a caller that must keep the batch should
    /// not cancel this future.
    pub async fn send(&self, batch: Batch) -> Result<(), SendError> {
        let bytes = self.shared.weigh(&batch);
        // Fast path: room now, no waiter registration.
        let mut batch = match self.shared.try_push(batch, bytes) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full { batch, .. }) => batch,
            Err(TrySendError::Closed(closed)) => return Err(closed),
        };
        let waiting_since = Instant::now();
        loop {
            // Registered before looking again, so a pop between the look and the wait is seen.
            let mut notified = pin!(self.shared.not_full.notified());
            notified.as_mut().enable();
            match self.shared.try_push(batch, bytes) {
                Ok(()) => {
                    self.shared
                        .metrics
                        .producer_waited(Instant::elapsed(&waiting_since));
                    return Ok(());
                }
                Err(TrySendError::Full { batch: back, .. }) => batch = back,
                Err(TrySendError::Closed(closed)) => return Err(closed),
            }
            notified.await;
        }
    }

    /// Enqueues `batch` if there is room now.
    #[allow(
        clippy::result_large_err,
        reason = "the error hands the batch back to its owner; boxing it would allocate on every refusal"
    )]
    pub fn try_send(&self, batch: Batch) -> Result<(), TrySendError> {
        let bytes = self.shared.weigh(&batch);
        self.shared.try_push(batch, bytes)
    }

    /// Closes the queue for every producer.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Whether the queue is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.state().closed
    }

    /// Batches waiting now.
    pub fn len(&self) -> usize {
        self.shared.state().lanes.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }
}

impl Clone for QueueSender {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, AtomicOrdering::AcqRel);
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for QueueSender {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, AtomicOrdering::AcqRel) == 1 {
            self.shared.close();
        }
    }
}

impl QueueReceiver {
    /// The next batch in order, waiting while the queue is empty; `None` once it is closed and
    /// empty.
    ///
    /// Cancel-safe: if the future is dropped, no batch is taken.
    pub async fn recv(&self) -> Option<Queued> {
        loop {
            // Fast path: something queued now, no waiter registration.
            match self.shared.try_pop() {
                Ok(queued) => return Some(queued),
                Err(TryRecvError::Closed) => return None,
                Err(TryRecvError::Empty) => {}
            }
            // Registered before looking again, so a push between the look and the wait is seen.
            let mut notified = pin!(self.shared.not_empty.notified());
            notified.as_mut().enable();
            match self.shared.try_pop() {
                Ok(queued) => return Some(queued),
                Err(TryRecvError::Closed) => return None,
                Err(TryRecvError::Empty) => notified.await,
            }
        }
    }

    /// The next batch if one is queued now.
    pub fn try_recv(&self) -> Result<Queued, TryRecvError> {
        self.shared.try_pop()
    }

    /// Stops intake: producers fail from now on (waiting ones too); what is queued can still
    /// be received.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Takes everything queued now, in order, without waiting.
    pub fn drain(&self) -> Vec<Queued> {
        let mut out = Vec::new();
        while let Ok(queued) = self.shared.try_pop() {
            out.push(queued);
        }
        out
    }

    /// Batches waiting now.
    pub fn len(&self) -> usize {
        self.shared.state().lanes.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A new sender, or `None` once the queue is closed.
    pub fn sender(&self) -> Option<QueueSender> {
        let state = self.shared.state();
        if state.closed {
            return None;
        }
        self.shared.senders.fetch_add(1, AtomicOrdering::AcqRel);
        drop(state);
        Some(QueueSender {
            shared: Arc::clone(&self.shared),
        })
    }

    /// The queue's metrics.
    pub fn metrics(&self) -> &QueueMetrics {
        &self.shared.metrics
    }
}

impl Drop for QueueReceiver {
    fn drop(&mut self) {
        self.shared.close();
        let left = self.shared.state().lanes.drain();
        if !left.is_empty() {
            tracing::warn!(queue = %self.shared.config.name, batches = left.len(), "queue receiver dropped; queued batches left unacknowledged for redelivery");
            self.shared.metrics.unacknowledged(left.len() as u64);
        }
    }
}
