//! The sink loop: batches from a channel, coalesced into sink transactions bounded by rows,
//! bytes and latency, acknowledged only after their transaction committed.

use std::time::Duration;

use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{Batch, BatchReceiver};
use tokio::time::Instant;

use crate::config::BatchLimits;
use crate::encode::approx_size;
use crate::error::WriterError;
use crate::writer::PostgresWriter;

impl PostgresWriter {
    /// Applies batches from `input` until it closes or `cancel` fires, then returns.
    ///
    /// Each sink transaction takes the first waiting batch plus whatever follows within
    /// `batch.max_latency`, up to `batch.max_rows` changes and `batch.max_bytes`. Batches are
    /// settled delivered after their transaction commits; on an error they are settled failed
    /// (the source redelivers them) and the error is returned. Cancellation is noticed between
    /// transactions only: a transaction under way is finished first, and batches still queued
    /// are left unsettled for redelivery.
    pub async fn run(
        &self,
        mut input: BatchReceiver,
        cancel: CancellationToken,
    ) -> Result<(), WriterError> {
        let limits = self.inner.config.batch;
        loop {
            let first = tokio::select! {
                biased;
                () = cancel.cancelled() => return Ok(()),
                next = input.recv() => match next {
                    Some(batch) => batch,
                    None => return Ok(()),
                },
            };
            let started = Instant::now();
            let pending = collect(&mut input, first, limits).await;
            let refs: Vec<&Batch> = pending.iter().collect();
            let result = self.apply(&refs).await;
            let rows: usize = pending.iter().map(|b| b.changes.len()).sum();
            match result {
                Ok(_) => pending.into_iter().for_each(|b| b.ack.delivered()),
                Err(error) => {
                    pending.into_iter().for_each(|b| b.ack.failed());
                    return Err(error);
                }
            }
            self.pace(rows, started, &cancel).await;
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

/// The first batch plus whatever follows within the limits.
async fn collect(input: &mut BatchReceiver, first: Batch, limits: BatchLimits) -> Vec<Batch> {
    let deadline = Instant::now() + limits.max_latency;
    let mut rows = first.changes.len();
    let mut bytes: usize = first.changes.iter().map(approx_size).sum();
    let mut pending = vec![first];
    while rows < limits.max_rows && bytes < limits.max_bytes {
        let next = match input.try_recv() {
            Some(batch) => batch,
            None => match tokio::time::timeout_at(deadline, input.recv()).await {
                Ok(Some(batch)) => batch,
                Ok(None) | Err(_) => break,
            },
        };
        rows += next.changes.len();
        bytes += next.changes.iter().map(approx_size).sum::<usize>();
        pending.push(next);
    }
    pending
}
