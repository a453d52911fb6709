//! The sink loop: batches from a channel, coalesced into sink transactions bounded by rows,
//! bytes and latency, acknowledged only after their transaction committed.
//!
//! Pipelining: while a sink transaction runs, the batches that follow are received, up to the
//! same limits. Once a full transaction's worth is there, the next transaction begins ahead: it
//! is planned at once (routing, validation, folding per key: CPU work that overlaps the
//! server's work on the current transaction), then takes a second connection and waits on the
//! checkpoint row lock the current transaction holds. Holding it, it checks that the
//! checkpoints show the current transaction's positions. If they do not (that transaction
//! failed, or rolled back to be retried), it writes nothing, rolls back and is applied again
//! after the current one, in order. So a transaction writes only after its predecessor
//! committed, and per-key order holds. At most three transactions' worth of batches are held:
//! the one running, the one begun ahead and the one being received. With a rows-per-second
//! limit, or a pool of one connection, nothing begins ahead.

mod ahead;
mod flight;

use std::time::Duration;

use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::BatchReceiver;
use tokio::time::Instant;

use self::ahead::{Ahead, gather};
use self::flight::{Flight, Landed, Settled, settle};
use crate::error::WriterError;
use crate::writer::PostgresWriter;

impl PostgresWriter {
    /// Applies batches from `input` until it closes or `cancel` fires, then returns.
    ///
    /// Each sink transaction takes the first waiting batch plus whatever follows within
    /// `batch.max_latency`, up to `batch.max_rows` changes and `batch.max_bytes`; while one
    /// runs, the next is received and may begin ahead (see the module docs). Batches are
    /// settled delivered after their transaction commits; on an error they, and every batch
    /// received after them, are settled failed (the source redelivers them) and the error is
    /// returned. Cancellation is noticed between transactions: transactions under way are
    /// finished first, and batches not yet in one are left unsettled for redelivery.
    pub async fn run(
        &self,
        mut input: BatchReceiver,
        cancel: CancellationToken,
    ) -> Result<(), WriterError> {
        let limits = self.inner.config.batch;
        let mut ahead = Ahead::default();
        // `again`: a transaction to apply (again) before `next`, the one begun ahead.
        let (mut again, mut next): (Option<Flight>, Option<Flight>) = (None, None);
        let mut settled = Settled::default();
        loop {
            let mut flight = match again.take().or_else(|| next.take()) {
                Some(flight) => flight,
                None => {
                    let gathered = !cancel.is_cancelled()
                        && gather(&mut input, &mut ahead, &cancel, limits).await;
                    if !gathered {
                        return Ok(());
                    }
                    Flight::launch(self, ahead.take(), None)
                }
            };
            let landed = self
                .fly(
                    &mut flight,
                    &mut next,
                    &mut input,
                    &mut ahead,
                    &mut settled,
                    &cancel,
                )
                .await;
            let Landed {
                batches,
                rows,
                started,
                ahead: begun_ahead,
                result,
            } = landed;
            match result {
                Ok(_) => {
                    settled.delivered(batches);
                    self.pace(rows, started, &cancel).await;
                }
                Err(_) if begun_ahead && !cancel.is_cancelled() => {
                    // Begun ahead and refused or failed: applied again, in order, before
                    // `next` (which checks for these same positions).
                    again = Some(Flight::launch(self, Ahead::from_batches(batches), None));
                }
                // Cancelled: not applied again now; settled failed, the source redelivers
                // them (the attempt's error was logged where it happened).
                Err(_) if begun_ahead => settle(batches, false),
                Err(error) => {
                    settle(batches, false);
                    if let Some(mut next) = next {
                        // It checks its predecessor, which did not commit: it writes nothing.
                        let landed = next.land().await;
                        settle(landed.batches, landed.result.is_ok());
                    }
                    ahead.fail();
                    return Err(error);
                }
            }
        }
    }

    /// Runs `flight` to its outcome. Meanwhile: receives what follows into `ahead`, begins
    /// `next` ahead once that is complete, and keeps `next`'s outcome if it comes first.
    async fn fly(
        &self,
        flight: &mut Flight,
        next: &mut Option<Flight>,
        input: &mut BatchReceiver,
        ahead: &mut Ahead,
        settled: &mut Settled,
        cancel: &CancellationToken,
    ) -> Landed {
        let limits = self.inner.config.batch;
        // Begun ahead, a transaction holds a second connection while it waits.
        let pipelined = self.inner.config.max_rows_per_second.is_none()
            && self.inner.config.pool.max_connections >= 2;
        loop {
            let open = !cancel.is_cancelled();
            if next.is_none() && pipelined && open && ahead.ready_after(&flight.lasts, limits) {
                let after = flight.lasts.clone();
                *next = Some(Flight::launch(self, ahead.take(), Some(after)));
            }
            let receiving = next.is_none() && open && ahead.has_room(limits);
            let mut waiting = next.as_mut().filter(|next| !next.landed);
            tokio::select! {
                biased;
                landed = flight.land() => return landed,
                landed = land(&mut waiting), if waiting.is_some() => {
                    if let Some(next) = waiting {
                        next.keep(landed);
                    }
                }
                () = std::future::ready(()), if settled.is_freeing() => settled.free_some(),
                // `recv` is cancel-safe: no batch is lost when another branch wins.
                batch = input.recv(), if receiving => match batch {
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

/// The outcome of `flight`; pending forever without one (the branch is disabled then).
async fn land(flight: &mut Option<&mut Flight>) -> Landed {
    match flight {
        Some(flight) => flight.land().await,
        None => std::future::pending().await,
    }
}
