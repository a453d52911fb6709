//! A sink transaction under way: a future that owns its batches and yields them back with the
//! outcome, so the loop can settle them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use surefoot_core_model::{Batch, Change};
use tokio::time::Instant;

use super::ahead::Ahead;
use crate::apply::{FlushStats, Lasts, lasts};
use crate::error::WriterError;
use crate::writer::PostgresWriter;

type Outcome = Pin<Box<dyn Future<Output = Landed> + Send>>;

/// A sink transaction under way, with the positions it will have applied once committed.
pub(super) struct Flight {
    outcome: Outcome,
    /// The outcome is already there (a transaction begun ahead that failed before its
    /// predecessor finished): `outcome` is ready and must not be polled until landed.
    pub(super) landed: bool,
    pub(super) lasts: Lasts,
}

/// A sink transaction's outcome, with its batches to settle.
pub(super) struct Landed {
    pub(super) batches: Vec<Batch>,
    pub(super) rows: usize,
    pub(super) started: Instant,
    /// Begun ahead of its predecessor: a failure means "apply again in order", not "give up".
    pub(super) ahead: bool,
    pub(super) result: Result<FlushStats, WriterError>,
}

/// Settles `batches` delivered (committed) or failed (to be delivered again).
pub(super) fn settle(batches: Vec<Batch>, delivered: bool) {
    for batch in batches {
        if delivered {
            batch.ack.delivered();
        } else {
            batch.ack.failed();
        }
    }
}

/// Changes of committed batches, freed a few at a time between the loop's other work: freeing
/// a transaction's worth at once would hold up the next transaction, whose replies the same
/// task handles.
#[derive(Debug, Default)]
pub(super) struct Settled {
    changes: Vec<Arc<[Change]>>,
}

impl Settled {
    /// Changes freed per turn of the loop.
    const FREED_PER_TURN: usize = 500;

    /// Settles `batches` delivered and keeps their changes to free later.
    pub(super) fn delivered(&mut self, batches: Vec<Batch>) {
        for batch in batches {
            batch.ack.delivered();
            self.changes.push(batch.changes);
        }
    }

    /// Whether changes are waiting to be freed.
    pub(super) fn is_freeing(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Frees about [`Settled::FREED_PER_TURN`] changes.
    pub(super) fn free_some(&mut self) {
        let mut freed = 0;
        while freed < Self::FREED_PER_TURN {
            match self.changes.pop() {
                Some(changes) => freed += changes.len().max(1),
                None => break,
            }
        }
    }
}

impl Flight {
    /// Starts applying `batches`: with `after`, ahead of the transaction that applies `after`
    /// (one attempt, see [`PostgresWriter::apply_after`]); without, in order, with retries.
    pub(super) fn launch(writer: &PostgresWriter, batches: Ahead, after: Option<Lasts>) -> Self {
        let writer = writer.clone();
        let Ahead { batches, rows, .. } = batches;
        let refs: Vec<&Batch> = batches.iter().collect();
        let lasts = lasts(&refs);
        drop(refs);
        let outcome = Box::pin(async move {
            let started = Instant::now();
            let result = {
                let refs: Vec<&Batch> = batches.iter().collect();
                match &after {
                    Some(after) => writer.apply_after(&refs, after).await,
                    None => writer.apply(&refs).await,
                }
            };
            Landed {
                batches,
                rows,
                started,
                ahead: after.is_some(),
                result,
            }
        });
        Self {
            outcome,
            landed: false,
            lasts,
        }
    }

    /// Waits for the outcome.
    pub(super) async fn land(&mut self) -> Landed {
        (&mut self.outcome).await
    }

    /// Keeps an outcome that came early, to be taken by [`Flight::land`].
    pub(super) fn keep(&mut self, landed: Landed) {
        self.outcome = Box::pin(std::future::ready(landed));
        self.landed = true;
    }
}
