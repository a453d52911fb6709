//! Batches received for the next sink transaction, within the batch limits.

use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{Batch, BatchReceiver};
use tokio::time::Instant;

use crate::apply::Lasts;
use crate::config::BatchLimits;
use crate::encode::approx_size;

/// Batches received for the next sink transaction.
#[derive(Debug, Default)]
pub(super) struct Ahead {
    pub(super) batches: Vec<Batch>,
    pub(super) rows: usize,
    bytes: usize,
    /// The channel closed: nothing more will come.
    pub(super) closed: bool,
}

impl Ahead {
    /// `batches`, to be applied again.
    pub(super) fn from_batches(batches: Vec<Batch>) -> Self {
        let mut ahead = Self::default();
        batches.into_iter().for_each(|batch| ahead.push(batch));
        ahead
    }

    pub(super) fn push(&mut self, batch: Batch) {
        self.rows += batch.changes.len();
        self.bytes += batch.changes.iter().map(approx_size).sum::<usize>();
        self.batches.push(batch);
    }

    /// Adds `batch` and whatever is queued behind it now, within the limits.
    pub(super) fn push_with_queued(
        &mut self,
        batch: Batch,
        input: &mut BatchReceiver,
        limits: BatchLimits,
    ) {
        self.push(batch);
        while self.has_room(limits) {
            match input.try_recv() {
                Some(next) => self.push(next),
                None => break,
            }
        }
    }

    /// Whether another batch may join (never once the channel closed).
    pub(super) fn has_room(&self, limits: BatchLimits) -> bool {
        !self.closed && self.rows < limits.max_rows && self.bytes < limits.max_bytes
    }

    /// Whether these batches make a transaction that may begin ahead of the one that applies
    /// `before`: complete (full, or the channel closed), and covering every source of
    /// `before`, so that the checkpoints it locks can tell whether `before` committed.
    pub(super) fn ready_after(&self, before: &Lasts, limits: BatchLimits) -> bool {
        !self.batches.is_empty()
            && !self.has_room(limits)
            && before
                .keys()
                .all(|source| self.batches.iter().any(|b| b.source.as_str() == source))
    }

    /// The batches, leaving an empty `Ahead` that remembers whether the channel closed.
    pub(super) fn take(&mut self) -> Self {
        let closed = self.closed;
        let taken = std::mem::take(self);
        self.closed = closed;
        taken
    }

    /// Settles every batch failed: the source delivers them again.
    pub(super) fn fail(self) {
        self.batches
            .into_iter()
            .for_each(|batch| batch.ack.failed());
    }
}

/// Waits for a first batch (unless some are there already), then adds whatever follows within
/// `max_latency`, up to the limits. `false` when there is nothing to apply: the channel closed
/// empty, or `cancel` fired first.
pub(super) async fn gather(
    input: &mut BatchReceiver,
    ahead: &mut Ahead,
    cancel: &CancellationToken,
    limits: BatchLimits,
) -> bool {
    if ahead.batches.is_empty() {
        if ahead.closed {
            return false;
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => return false,
            next = input.recv() => match next {
                Some(batch) => ahead.push(batch),
                None => return false,
            },
        }
    }
    fill(input, ahead, limits).await;
    true
}

/// Adds to `ahead` whatever follows within `max_latency`, up to the limits.
async fn fill(input: &mut BatchReceiver, ahead: &mut Ahead, limits: BatchLimits) {
    let deadline = Instant::now() + limits.max_latency;
    while ahead.has_room(limits) {
        let next = match input.try_recv() {
            Some(batch) => Some(batch),
            None => match tokio::time::timeout_at(deadline, input.recv()).await {
                Ok(next) => next,
                Err(_) => break,
            },
        };
        match next {
            Some(batch) => ahead.push(batch),
            None => ahead.closed = true,
        }
    }
}
