//! A continuous query whose state survives a crash (decision 0011).
//!
//! [`DurableQuery`] wraps a [`ContinuousQuery`] with a redb database holding, per input batch
//! and in one transaction: the input rows the batch changed (the query's kept columns), the
//! last position applied per source with the next sequence, and the batch's result, appended
//! to an output log until acknowledged. Join indexes, groups and the result are derived from
//! the input rows, so a restart rebuilds them from the stored rows (cost: the state, never the
//! backlog) and gets back exactly the result already emitted. Then:
//!
//! - the logged result batches not acknowledged before the crash are sent again first
//!   ([`DurableQuery::unacknowledged`]); the sink skips by position what it had applied;
//! - the source redelivers from its confirmed position; batches at or below the stored
//!   position per source are skipped, so nothing is applied twice and no sequence is reused;
//! - the sequence continues from the stored next sequence.
//!
//! An input batch's token is settled when its result batch is delivered, as without the
//! store; a failed store write fails the batch and the query.

mod codec;
mod refresh;
mod store;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use surefoot_core_lifecycle::{Classify, ErrorClass};
use surefoot_core_model::{AckOutcome, AckToken, Batch};

use crate::catalog::Catalog;
use crate::error::{EvalError, QueryError};
use crate::query::{ContinuousQuery, QueryHealth};
use codec::StoredBatch;
use store::{Commit, Identity, Progress, Store};

/// Why a durable query could not open, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    /// The SQL is outside the supported subset.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A batch could not be evaluated.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// The database could not be read or written.
    #[error("query state store")]
    Store(#[from] redb::Error),
    /// A stored record could not be encoded or decoded.
    #[error("query state encoding")]
    Codec(#[source] serde_json::Error),
    /// The store holds something it could not have written.
    #[error("query state is corrupt: {0}")]
    Corrupt(String),
    /// A value cannot be stored so that it reads back as itself (NaN or an infinity in a
    /// `real` or `double precision` column): the batch fails rather than store another value.
    #[error("column `{column}` holds {value}, which the query state store cannot keep")]
    NotStorable {
        /// The column, or its place in the kept row.
        column: String,
        /// The value, as text.
        value: String,
    },
    /// The store was made for another query (or another catalog): its state does not apply.
    #[error(
        "the state store was made for another query (`{stored}`), not `{given}`; give this query \
         its own store, or remove the old one to start afresh"
    )]
    Changed {
        /// The SQL the store was made for.
        stored: Box<String>,
        /// The SQL given now.
        given: Box<String>,
    },
}

impl Classify for DurableError {
    fn class(&self) -> ErrorClass {
        match self {
            DurableError::Query(_) | DurableError::Changed { .. } => ErrorClass::Configuration,
            DurableError::Eval(_)
            | DurableError::Corrupt(_)
            | DurableError::Codec(_)
            | DurableError::NotStorable { .. } => ErrorClass::Permanent,
            DurableError::Store(_) => ErrorClass::Transient,
        }
    }
}

/// A [`ContinuousQuery`] whose state, progress and unacknowledged output are kept in a redb
/// database: after a crash it neither loses nor repeats a diff, and its sequence continues.
#[derive(Debug)]
pub struct DurableQuery {
    query: ContinuousQuery,
    store: Store,
    /// Logged result batches not acknowledged before the last open, until taken.
    resend: Vec<StoredBatch>,
    /// First sequences of result batches delivered since the last commit.
    acknowledged: Arc<Mutex<Vec<u64>>>,
}

impl DurableQuery {
    /// Plans `sql` over `catalog` and opens its state at `path` (a file, created if missing).
    /// A store made for other SQL or another catalog is refused.
    pub fn open(path: &Path, id: &str, sql: &str, catalog: &Catalog) -> Result<Self, DurableError> {
        let mut query = ContinuousQuery::new(id, sql, catalog)?;
        query.track_inputs();
        let identity = Identity {
            id: id.to_owned(),
            sql: sql.to_owned(),
            kept: query
                .plan()
                .tables
                .iter()
                .map(|table| table.kept.iter().map(|c| c.to_string()).collect())
                .collect(),
        };
        let (store, loaded) = Store::open(path, &identity)?;
        let rows: usize = loaded.rows.iter().map(Vec::len).sum();
        query.restore(
            loaded.rows,
            loaded.progress.next_sequence,
            loaded.progress.inputs(),
        )?;
        tracing::info!(
            query = id,
            rows,
            unacknowledged = loaded.outbox.len(),
            next_sequence = loaded.progress.next_sequence,
            "query state loaded"
        );
        Ok(Self {
            query,
            store,
            resend: loaded.outbox,
            acknowledged: Arc::default(),
        })
    }

    /// The result batches logged but not acknowledged before this open, in sequence order:
    /// send them before any batch [`DurableQuery::process`] returns. Each is removed from the
    /// log once delivered. A second call returns nothing.
    pub fn unacknowledged(&mut self) -> Vec<Batch> {
        std::mem::take(&mut self.resend)
            .into_iter()
            .filter_map(|stored| {
                let sequence = stored.sequence().ok()?;
                let ack = self.query.resent_token(self.on_delivered(sequence));
                Some(Batch {
                    source: self.query.id().clone(),
                    first: stored.first,
                    last: stored.last,
                    commit_time: stored.commit_time,
                    changes: stored.changes(),
                    ack,
                })
            })
            .collect()
    }

    /// Applies an input batch like [`ContinuousQuery::process`] and makes its effect durable
    /// before returning its result batch. A failed write fails the batch and the query.
    pub fn process(&mut self, batch: Batch) -> Result<Option<Batch>, DurableError> {
        Ok(self.process_batches(vec![batch])?.pop())
    }

    /// Applies input batches in order, like [`DurableQuery::process`] each, and makes their
    /// effect durable in one transaction (one sync of the file for all of them) before
    /// returning their result batches, in order. A failure fails every result batch and the
    /// query.
    pub fn process_batches(&mut self, batches: Vec<Batch>) -> Result<Vec<Batch>, DurableError> {
        let mut outputs = Vec::new();
        let mut stored = Vec::new();
        for mut batch in batches {
            // The output's first sequence, once known: its delivery removes it from the log.
            let output_sequence = Arc::new(AtomicU64::new(0));
            let input = std::mem::replace(&mut batch.ack, AckToken::detached());
            let log = self.on_delivered_cell(Arc::clone(&output_sequence));
            batch.ack = AckToken::new(move |outcome| {
                log(outcome);
                input.settle_with(outcome);
            });
            let Some(output) = self.query.process(batch)? else {
                continue;
            };
            let record = StoredBatch::of(&output);
            // Set before the batch leaves this function, so before its token can settle.
            output_sequence.store(record.sequence()?, Ordering::Release);
            stored.push(record);
            outputs.push(output);
        }
        let touched = self.query.take_touched();
        let acknowledged = std::mem::take(
            &mut *self
                .acknowledged
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let changed = touched.iter().any(|t| t.truncated || !t.rows.is_empty());
        if !changed && stored.is_empty() && acknowledged.is_empty() {
            // Nothing the query keeps changed: redelivered after a crash, it changes nothing.
            return Ok(outputs);
        }
        self.commit(&touched, &stored, &acknowledged, outputs)
    }

    /// Makes durable what the query keeps that changed, its progress, the result batches to
    /// log and the acknowledgements; returns `outputs`, or fails them and the query.
    fn commit(
        &mut self,
        touched: &[crate::engine::Touched],
        stored: &[StoredBatch],
        acknowledged: &[u64],
        outputs: Vec<Batch>,
    ) -> Result<Vec<Batch>, DurableError> {
        let progress = Progress {
            next_sequence: self.query.next_sequence(),
            inputs: self
                .query
                .last_inputs()
                .iter()
                .map(|(source, position)| (source.as_str().to_owned(), *position))
                .collect(),
        };
        let commit = Commit {
            touched,
            progress,
            outputs: stored,
            acknowledged,
        };
        if let Err(error) = self.store.commit(&commit) {
            tracing::error!(query = %self.query.id(),
                error = &error as &dyn std::error::Error,
                "the query's state could not be written; it stops");
            self.query.fail(format!("state store: {error}"));
            for output in outputs {
                output.ack.failed();
            }
            return Err(error);
        }
        Ok(outputs)
    }

    /// The query evaluated.
    pub fn query(&self) -> &ContinuousQuery {
        &self.query
    }

    /// Running or failed.
    pub fn health(&self) -> &QueryHealth {
        self.query.health()
    }

    /// A token that logs the delivery of the result batch starting at `sequence`.
    fn on_delivered(&self, sequence: u64) -> AckToken {
        AckToken::new(self.on_delivered_cell(Arc::new(AtomicU64::new(sequence))))
    }

    /// Logs the delivery of the result batch whose first sequence `cell` holds once set (an
    /// input batch without a result leaves it 0: nothing to log).
    fn on_delivered_cell(&self, cell: Arc<AtomicU64>) -> impl FnOnce(AckOutcome) + Send + 'static {
        let acknowledged = Arc::clone(&self.acknowledged);
        move |outcome| {
            let sequence = cell.load(Ordering::Acquire);
            if sequence != 0 && outcome.is_delivered() {
                acknowledged
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(sequence);
            }
        }
    }
}
