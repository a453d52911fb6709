//! A continuous query: batches in, result batches of diffs out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use surefoot_core_model::{AckToken, Batch, Change, Position, Row, SourceId, TableRef};

use crate::catalog::Catalog;
use crate::datum::Tuple;
use crate::engine::{Diff, Engine, Touched};
use crate::error::{EvalError, QueryError};
use crate::metrics::QueryMetrics;
use crate::plan::{self, Output, Plan};
use crate::settle::Settler;

mod refresh;

/// The schema output rows are published under: result changes name the table `query.<id>`.
pub const OUTPUT_SCHEMA: &str = "query";

/// Whether a query is evaluating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryHealth {
    /// Accepting batches.
    Running,
    /// Failed on a batch; accepts nothing more.
    Failed {
        /// Why.
        reason: String,
    },
}

/// Counters of a query's work, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Input batches processed.
    pub batches: u64,
    /// Input batches skipped as already applied (positions at or below the last seen).
    pub duplicate_batches: u64,
    /// Diffs emitted.
    pub diffs: u64,
    /// Rows of state held.
    pub state_rows: usize,
    /// Evaluation time of the last batch.
    pub last_batch_time: Duration,
    /// Result batches and diff-less input batches whose tokens have not settled.
    pub unsettled: usize,
}

/// A SQL query over input tables whose result is maintained incrementally.
///
/// Feed it every input batch with [`ContinuousQuery::process`]; it returns one result batch per
/// input batch that changed the result, with one change per changed result row: an insert
/// (added), an update with `before` and `after`, or a delete with the key and `before`. Every
/// change has the next [`Position::Sequence`] of the query, from 1, never reused. Rows carry the
/// SELECT columns, then the result key's columns (see [`ContinuousQuery::key_columns`]).
#[derive(Debug)]
pub struct ContinuousQuery {
    id: SourceId,
    output_table: TableRef,
    engine: Engine,
    inputs: Vec<crate::catalog::TableSchema>,
    metrics: QueryMetrics,
    columns: Vec<Arc<str>>,
    key_columns: Vec<Arc<str>>,
    next_sequence: u64,
    last_input: HashMap<SourceId, Position>,
    settler: Settler,
    health: QueryHealth,
    stats: QueryStats,
}

impl ContinuousQuery {
    /// Plans `sql` over `catalog`. Anything outside the supported subset is refused here, with
    /// the construct and its line and column.
    pub fn new(id: &str, sql: &str, catalog: &Catalog) -> Result<Self, QueryError> {
        let plan = plan::build(sql, catalog)?;
        let columns = plan.columns().iter().map(|c| Arc::clone(&c.name)).collect();
        let key_columns = key_columns(&plan);
        let inputs = plan.tables.iter().map(|t| t.schema.clone()).collect();
        Ok(Self {
            id: SourceId::new(id),
            output_table: TableRef::new(OUTPUT_SCHEMA, id),
            engine: Engine::new(plan),
            inputs,
            metrics: QueryMetrics::global(id),
            columns,
            key_columns,
            next_sequence: 1,
            last_input: HashMap::new(),
            settler: Settler::default(),
            health: QueryHealth::Running,
            stats: QueryStats::default(),
        })
    }

    /// The query's id: the source id of its result batches.
    pub fn id(&self) -> &SourceId {
        &self.id
    }

    /// The logical plan it evaluates.
    pub fn plan(&self) -> &Plan {
        self.engine.plan()
    }

    /// The table its result changes name.
    pub fn output_table(&self) -> &TableRef {
        &self.output_table
    }

    /// The SELECT columns' names, in order.
    pub fn columns(&self) -> &[Arc<str>] {
        &self.columns
    }

    /// The names of the key columns that follow the SELECT columns in every result row:
    /// `_key.<table>.<column>` for each table's key (projections, joins) or `_key.<n>` for each
    /// GROUP BY expression.
    pub fn key_columns(&self) -> &[Arc<str>] {
        &self.key_columns
    }

    /// The sequence the next diff will get.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Running or failed.
    pub fn health(&self) -> &QueryHealth {
        &self.health
    }

    /// Work counters.
    pub fn stats(&self) -> QueryStats {
        QueryStats {
            state_rows: self.engine.state_rows(),
            unsettled: self.settler.pending(),
            ..self.stats.clone()
        }
    }

    /// The current result: one row per key, as in result changes, in no order.
    ///
    /// A grouped query holds its result; a projection or join does not (its input rows and
    /// join indexes determine it), so this evaluates it again from the state: time and memory
    /// in proportion to the query's state. An error means the state is inconsistent.
    pub fn result(&self) -> Result<Vec<Row>, EvalError> {
        let rows = self.engine.result()?;
        Ok(rows.iter().map(|(key, row)| self.row(key, row)).collect())
    }

    /// Applies an input batch (one source transaction, or several whole ones).
    ///
    /// Returns the result batch, whose token settles the input's; `None` when the result did not
    /// change, in which case the input token is settled delivered once every earlier result
    /// batch has settled. Changes at or below the last position seen from the batch's source
    /// are skipped as already applied. On an error the input token is settled failed and the
    /// query is [`QueryHealth::Failed`]: its state may hold part of the batch.
    pub fn process(&mut self, batch: Batch) -> Result<Option<Batch>, EvalError> {
        if let QueryHealth::Failed { reason } = &self.health {
            let error = EvalError::Failed(reason.clone());
            batch.ack.failed();
            return Err(error);
        }
        let started = Instant::now();
        let seen = self.last_input.get(&batch.source).copied();
        // Usually the whole batch is past what was applied, and no change needs comparing:
        // positions within a batch do not decrease, so its first change tells.
        let whole = seen.is_none_or(|seen| {
            batch
                .changes
                .first()
                .is_none_or(|change| change.position > seen)
        });
        let fresh = batch
            .changes
            .iter()
            .filter(|change| whole || seen.is_none_or(|seen| change.position > seen));
        if seen.is_some_and(|seen| batch.last <= seen) {
            self.stats.duplicate_batches += 1;
            self.metrics.duplicate();
            tracing::warn!(query = %self.id, source = %batch.source, last = %batch.last,
                "input batch at or below the last position applied: skipped as a duplicate");
        }
        let tables = &self.inputs;
        let diffs = match self.engine.apply(fresh, |change, index| {
            tables[index].receives(&batch.source, &change.table)
        }) {
            Ok(diffs) => diffs,
            Err(error) => {
                tracing::error!(query = %self.id, source = %batch.source, %error,
                    "the query failed on an input batch and stops");
                self.metrics.failure();
                self.health = QueryHealth::Failed {
                    reason: error.to_string(),
                };
                batch.ack.failed();
                return Err(error);
            }
        };
        self.last_input.insert(
            batch.source.clone(),
            seen.map_or(batch.last, |s| s.max(batch.last)),
        );
        self.stats.batches += 1;
        let took = started.elapsed();
        self.stats.last_batch_time = took;
        self.stats.diffs += diffs.len() as u64;
        let lag = batch
            .commit_time
            .and_then(|commit| (chrono::Utc::now() - commit).to_std().ok());
        self.metrics
            .batch(diffs.len() as u64, self.engine.state_rows(), took, lag);
        if diffs.is_empty() {
            self.settler.empty(batch.ack);
            return Ok(None);
        }
        let first = Position::Sequence(self.next_sequence);
        // Collected straight into the shared slice: one allocation, no copy out of a Vec.
        let changes: Arc<[Change]> = diffs.into_iter().map(|diff| self.change(diff)).collect();
        let last = Position::Sequence(self.next_sequence - 1);
        Ok(Some(Batch {
            source: self.id.clone(),
            first,
            last,
            commit_time: batch.commit_time,
            changes,
            ack: self.settler.output(batch.ack),
        }))
    }

    /// Records the input rows every change touches, for a durable copy (`DurableQuery`).
    pub(crate) fn track_inputs(&mut self) {
        self.engine.track();
    }

    /// Per input table, the rows changed since the last call.
    pub(crate) fn take_touched(&mut self) -> Vec<Touched> {
        self.engine.take_touched()
    }

    /// Every source's last applied position.
    pub(crate) fn last_inputs(&self) -> &HashMap<SourceId, Position> {
        &self.last_input
    }

    /// Puts back the state a durable copy holds: each input table's rows (by table index),
    /// the next sequence and the last position applied per source. The result they make is
    /// the result already emitted, so no diff comes of it.
    pub(crate) fn restore(
        &mut self,
        rows: Vec<Vec<Tuple>>,
        next_sequence: u64,
        last_input: HashMap<SourceId, Position>,
    ) -> Result<(), EvalError> {
        for (index, rows) in rows.into_iter().enumerate() {
            self.engine.restore(index, rows)?;
        }
        self.engine.restored()?;
        self.next_sequence = next_sequence;
        self.last_input = last_input;
        Ok(())
    }

    /// A token for a result batch sent again after a restart: input batches without diffs
    /// that come after it are settled only once it has settled, as for any result batch.
    pub(crate) fn resent_token(&self, on_settled: AckToken) -> AckToken {
        self.settler.output(on_settled)
    }

    /// Stops the query: its durable copy could not be written.
    pub(crate) fn fail(&mut self, reason: String) {
        self.metrics.failure();
        self.health = QueryHealth::Failed { reason };
    }

    fn row(&self, key: &Tuple, row: &Tuple) -> Row {
        let mut out = Row::with_capacity(row.len() + key.len());
        for (name, value) in self.columns.iter().zip(row) {
            out.push(Arc::clone(name), value.to_value());
        }
        for (name, value) in self.key_columns.iter().zip(key) {
            out.push(Arc::clone(name), value.to_value());
        }
        out
    }

    fn key_row(&self, key: &Tuple) -> Row {
        self.key_columns
            .iter()
            .zip(key)
            .map(|(name, value)| (Arc::clone(name), value.to_value()))
            .collect()
    }

    fn change(&mut self, diff: Diff) -> Change {
        let position = Position::Sequence(self.next_sequence);
        self.next_sequence += 1;
        let table = self.output_table.clone();
        match diff {
            Diff::Added { key, row } => Change::insert(position, table, self.row(&key, &row)),
            Diff::Updated { key, before, after } => Change::update(
                position,
                table,
                None,
                Some(self.row(&key, &before)),
                self.row(&key, &after),
            ),
            Diff::Deleted { key, before } => Change::delete(
                position,
                table,
                Some(self.key_row(&key)),
                Some(self.row(&key, &before)),
            ),
        }
    }
}

fn key_columns(plan: &Plan) -> Vec<Arc<str>> {
    match &plan.output {
        Output::Project { .. } => plan
            .tables
            .iter()
            .flat_map(|t| {
                t.kept[..t.key_len()]
                    .iter()
                    .map(move |c| Arc::from(format!("_key.{}.{c}", t.alias)))
            })
            .collect(),
        Output::Group { keys, .. } => (1..=keys.len())
            .map(|n| Arc::from(format!("_key.{n}")))
            .collect(),
    }
}
