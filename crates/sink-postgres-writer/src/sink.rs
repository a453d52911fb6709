//! The sink loop: batches from a channel, coalesced into sink transactions bounded by rows,
//! bytes and latency, acknowledged only after their transaction committed.

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{Batch, BatchReceiver, Change};
use tokio::time::Instant;

use crate::apply::FlushStats;
use crate::config::BatchLimits;
use crate::encode::approx_size;
use crate::error::WriterError;
use crate::writer::PostgresWriter;

impl PostgresWriter {
    /// Applies batches from `input` until it closes or `cancel` fires, then returns.
    ///
    /// Each sink transaction takes the first waiting batch plus whatever follows within
    /// `batch.max_latency`, up to `batch.max_rows` changes and `batch.max_bytes`. While a
    /// transaction runs, the batches that follow are received into the next one (up to the same
    /// limits), so the channel keeps moving and the next transaction starts at once. Batches are
    /// settled delivered after their transaction commits; on an error they, and any received
    /// ahead, are settled failed (the source redelivers them) and the error is returned.
    /// Cancellation is noticed between transactions only: a transaction under way is finished
    /// first, and batches received ahead or still queued are left unsettled for redelivery.
    pub async fn run(
        &self,
        mut input: BatchReceiver,
        cancel: CancellationToken,
    ) -> Result<(), WriterError> {
        let limits = self.inner.config.batch;
        let mut ahead = Ahead::default();
        let mut done: Vec<Arc<[Change]>> = Vec::new();
        loop {
            if ahead.batches.is_empty() {
                if ahead.closed {
                    return Ok(());
                }
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => return Ok(()),
                    next = input.recv() => match next {
                        Some(batch) => ahead.push(batch),
                        None => return Ok(()),
                    },
                }
            } else if cancel.is_cancelled() {
                return Ok(());
            }
            let started = Instant::now();
            fill(&mut input, &mut ahead, limits).await;
            let pending = std::mem::take(&mut ahead);
            ahead.closed = pending.closed;
            let refs: Vec<&Batch> = pending.batches.iter().collect();
            let result = self
                .apply_receiving_ahead(&refs, &mut input, &mut ahead, limits, done)
                .await;
            let rows = pending.rows;
            match result {
                Ok(_) => {
                    let settle = |batch: Batch| {
                        batch.ack.delivered();
                        batch.changes
                    };
                    done = pending.batches.into_iter().map(settle).collect();
                }
                Err(error) => {
                    pending.batches.into_iter().for_each(|b| b.ack.failed());
                    ahead.batches.into_iter().for_each(|b| b.ack.failed());
                    return Err(error);
                }
            }
            self.pace(rows, started, &cancel).await;
        }
    }

    /// Applies `batches`, receiving the batches that follow into `ahead` meanwhile. `done`, the
    /// previous transaction's batches (already settled), are freed once this transaction is
    /// waiting on the server, so freeing them overlaps the server's work.
    async fn apply_receiving_ahead(
        &self,
        batches: &[&Batch],
        input: &mut BatchReceiver,
        ahead: &mut Ahead,
        limits: BatchLimits,
        done: Vec<Arc<[Change]>>,
    ) -> Result<FlushStats, WriterError> {
        let apply = self.apply(batches);
        tokio::pin!(apply);
        if let Poll::Ready(result) = futures::poll!(&mut apply) {
            return result;
        }
        drop(done);
        loop {
            tokio::select! {
                biased;
                result = &mut apply => return result,
                // `recv` is cancel-safe: a batch is never lost when the apply finishes first.
                next = input.recv(), if ahead.has_room(limits) => match next {
                    // What is queued too, so the transaction's future is polled once per burst
                    // of batches, not once per batch.
                    Some(batch) => ahead.push_with_queued(batch, input, limits),
                    None => ahead.closed = true,
                },
            }
        }
    }

    /// Waits so that `rows` changes take at least `rows / max_rows_per_second` (FINDINGS W-8).
    async fn pace(&self, rows: usize, started: Instant, cancel: &CancellationToken) {
        let Some(limit) = self.inner.config.max_rows_per_second else {
            return;
        };
        let budget = Duration::from_secs_f64(rows as f64 / f64::from(limit));
        let until = started + budget;
        tokio::select! {
            () = cancel.cancelled() => {}
            () = tokio::time::sleep_until(until) => {}
        }
    }
}

/// Batches received for the next sink transaction.
#[derive(Debug, Default)]
struct Ahead {
    batches: Vec<Batch>,
    rows: usize,
    bytes: usize,
    /// The channel closed: nothing more will come.
    closed: bool,
}

impl Ahead {
    fn push(&mut self, batch: Batch) {
        self.rows += batch.changes.len();
        self.bytes += batch.changes.iter().map(approx_size).sum::<usize>();
        self.batches.push(batch);
    }

    /// Adds `batch` and whatever is queued behind it now, within the limits.
    fn push_with_queued(&mut self, batch: Batch, input: &mut BatchReceiver, limits: BatchLimits) {
        self.push(batch);
        while self.has_room(limits) {
            match input.try_recv() {
                Some(next) => self.push(next),
                None => break,
            }
        }
    }

    /// Whether another batch may join (never once the channel closed).
    fn has_room(&self, limits: BatchLimits) -> bool {
        !self.closed && self.rows < limits.max_rows && self.bytes < limits.max_bytes
    }
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
