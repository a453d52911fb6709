//! Incremental evaluation of a [`Plan`] over Z-set deltas.
//!
//! Each change to an input table becomes deltas of that table's kept tuples; they flow through
//! the join stages after it (the stages before it are not affected), then the filter, then the
//! projection or the grouping. Results are keyed, so each batch ends with one diff per key it
//! touched: added, updated (before and after) or deleted. Groups hold their result row; a
//! projection's diffs are what the batch's deltas net to, and its result is not held (see
//! `project`).

mod columns;
mod entries;
mod group;
mod grouped;
mod join;
mod kept;
mod output;
mod project;
mod table;

use surefoot_core_model::Change;

use crate::datum::{Datum, Tuple};
use crate::error::EvalError;
use crate::expr::{Context, Expr};
use crate::ops::truth;
use crate::plan::{Output, Plan};

use join::JoinSink;
pub(crate) use output::Diff;
use output::Results;
pub(crate) use table::Touched;
use table::{Delta, TableInput};

/// A wide tuple (the join of the tables so far) seen as expression input, in two parts: the
/// last join stage's left and right tuples, unconcatenated (`right` is empty without a join).
pub(crate) struct Wide<'a> {
    left: &'a [Datum],
    right: &'a [Datum],
    offsets: &'a [usize],
}

impl Wide<'_> {
    /// The value at `position` of the wide tuple.
    pub(crate) fn at(&self, position: usize) -> &Datum {
        match self.left.get(position) {
            Some(datum) => datum,
            None => &self.right[position - self.left.len()],
        }
    }
}

impl Context for Wide<'_> {
    fn column(&self, table: usize, column: usize) -> &Datum {
        self.at(self.offsets[table] + column)
    }
    fn group_key(&self, _: usize) -> &Datum {
        &Datum::Null
    }
    fn aggregate(&self, _: usize) -> &Datum {
        &Datum::Null
    }
}

/// The evaluation state of one query.
#[derive(Debug)]
pub(crate) struct Engine {
    plan: Plan,
    tables: Vec<TableInput>,
    joins: Vec<join::JoinOp>,
    offsets: Vec<usize>,
    results: Results,
    /// Delta buffers reused from change to change (a change's deltas, a join stage's output).
    scratch: (Vec<Delta>, Vec<Delta>),
}

impl Engine {
    pub(crate) fn new(plan: Plan) -> Self {
        let tables: Vec<TableInput> = plan.tables.iter().map(TableInput::new).collect();
        let mut offsets = Vec::with_capacity(tables.len());
        let mut width = 0;
        for table in &tables {
            offsets.push(width);
            width += table.width();
        }
        let joins = plan
            .joins
            .iter()
            .enumerate()
            .map(|(stage, join)| {
                let left = join.left.iter().map(|(t, c)| offsets[*t] + c).collect();
                join::JoinOp::new(
                    join.kind,
                    left,
                    join.right.clone(),
                    tables[stage + 1].width(),
                )
            })
            .collect();
        let results = Results::new(&plan, &offsets);
        Self {
            plan,
            tables,
            joins,
            offsets,
            results,
            scratch: (Vec::new(), Vec::new()),
        }
    }

    /// The plan evaluated.
    pub(crate) fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Rows of state: input rows, join indexes, result rows (a projection counts its result
    /// rows without holding them).
    pub(crate) fn state_rows(&self) -> usize {
        self.tables.iter().map(TableInput::len).sum::<usize>()
            + self.joins.iter().map(join::JoinOp::len).sum::<usize>()
            + self.results.len()
    }

    /// The current result, by key. A grouped result is held; a projection's is not (see
    /// `project`), so it is evaluated again from the kept input rows, in an engine of its own:
    /// work and memory in proportion to the query's state, for the API and repairs, never per
    /// batch.
    pub(crate) fn result(&self) -> Result<Vec<(Tuple, Tuple)>, EvalError> {
        if let Output::Group { .. } = &self.plan.output {
            let rows = self.results.group_rows();
            return Ok(rows.map(|(key, row)| (key.clone(), row.clone())).collect());
        }
        let mut whole = Engine::new(self.plan.clone());
        for (index, table) in self.tables.iter().enumerate() {
            whole.restore(index, table.rows().cloned())?;
        }
        let diffs = whole.results.finish(&whole.plan)?;
        diffs
            .into_iter()
            .map(|diff| match diff {
                Diff::Added { key, row } => Ok((key, row)),
                other => Err(EvalError::Inconsistent(format!(
                    "evaluating the whole result from the input rows made {other:?}"
                ))),
            })
            .collect()
    }

    /// Records the input rows every change touches, for [`Engine::take_touched`].
    pub(crate) fn track(&mut self) {
        self.tables.iter_mut().for_each(TableInput::track);
    }

    /// Per input table (by index), the rows changed since the last call.
    pub(crate) fn take_touched(&mut self) -> Vec<Touched> {
        self.tables
            .iter_mut()
            .map(TableInput::take_touched)
            .collect()
    }

    /// Puts back input rows kept before a restart into table `index`, and folds them into the
    /// result; [`Engine::restored`] ends the restore once every table's rows are back.
    pub(crate) fn restore(
        &mut self,
        index: usize,
        rows: impl IntoIterator<Item = Tuple>,
    ) -> Result<(), EvalError> {
        for row in rows {
            let mut deltas = std::mem::take(&mut self.scratch.0);
            self.tables[index].restore(row, &mut deltas)?;
            let propagated = self.propagate(index, &mut deltas);
            self.scratch.0 = deltas;
            propagated?;
        }
        Ok(())
    }

    /// Ends a restore: the diffs the restored rows make are the result already emitted, so
    /// they are dropped.
    pub(crate) fn restored(&mut self) -> Result<(), EvalError> {
        self.results.finish(&self.plan).map(drop)
    }

    /// Applies the changes of one batch and returns its diffs, by key.
    pub(crate) fn apply<'c>(
        &mut self,
        changes: impl IntoIterator<Item = &'c Change>,
        is_input: impl Fn(&Change, usize) -> bool,
    ) -> Result<Vec<Diff>, EvalError> {
        for change in changes {
            for index in 0..self.tables.len() {
                if is_input(change, index) {
                    self.apply_change(index, change)?;
                }
            }
        }
        self.results.finish(&self.plan)
    }

    fn apply_change(&mut self, index: usize, change: &Change) -> Result<(), EvalError> {
        let mut deltas = std::mem::take(&mut self.scratch.0);
        let applied = self.tables[index].apply(change, &mut deltas);
        let propagated = applied.and_then(|()| self.propagate(index, &mut deltas));
        // Emptied on success; after an error the query fails, so what is left never counts.
        deltas.clear();
        self.scratch.0 = deltas;
        propagated
    }

    /// Sends table `index`'s deltas through the join stages after it into the result, leaving
    /// `deltas` empty. The last stage's output goes straight into the result.
    fn propagate(&mut self, index: usize, deltas: &mut Vec<Delta>) -> Result<(), EvalError> {
        let stages = index.saturating_sub(1)..self.joins.len();
        let Some(last) = stages.clone().last() else {
            let mut sink = ResultSink {
                plan: &self.plan,
                offsets: &self.offsets,
                results: &mut self.results,
            };
            return deltas
                .drain(..)
                .try_for_each(|(tuple, weight)| sink.joined(&tuple, &[], weight));
        };
        let mut joined = std::mem::take(&mut self.scratch.1);
        let mut outcome = Ok(());
        for stage in stages {
            if deltas.is_empty() {
                break;
            }
            let join = &mut self.joins[stage];
            let input = deltas.drain(..);
            outcome = if stage == last {
                let mut sink = ResultSink {
                    plan: &self.plan,
                    offsets: &self.offsets,
                    results: &mut self.results,
                };
                feed(join, stage + 1 == index, input, &mut sink)
            } else {
                joined.clear();
                let fed = feed(join, stage + 1 == index, input, &mut joined);
                std::mem::swap(deltas, &mut joined);
                fed
            };
            if outcome.is_err() {
                break;
            }
        }
        deltas.clear();
        joined.clear();
        self.scratch.1 = joined;
        outcome
    }
}

/// Sends deltas into a join stage: as its right side when they come from the table it adds.
fn feed(
    join: &mut join::JoinOp,
    from_right: bool,
    deltas: impl Iterator<Item = Delta>,
    out: &mut impl JoinSink,
) -> Result<(), EvalError> {
    if from_right {
        join.right_delta(deltas, out)
    } else {
        join.left_delta(deltas, out)
    }
}

/// Filters deltas of the whole join and folds them into the result.
struct ResultSink<'a> {
    plan: &'a Plan,
    offsets: &'a [usize],
    results: &'a mut Results,
}

impl JoinSink for ResultSink<'_> {
    fn joined(&mut self, left: &[Datum], right: &[Datum], weight: i64) -> Result<(), EvalError> {
        let wide = Wide {
            left,
            right,
            offsets: self.offsets,
        };
        if let Some(filter) = &self.plan.filter
            && truth(&filter.eval(&wide)?)? != Some(true)
        {
            return Ok(());
        }
        match &self.plan.output {
            Output::Project { columns } => {
                let row = eval_all(columns.iter().map(|c| &c.expr), &wide)?;
                self.results.add_row(&wide, row, weight);
                Ok(())
            }
            Output::Group {
                keys, aggregates, ..
            } => {
                let key = eval_all(keys.iter(), &wide)?;
                let mut args = Tuple::with_capacity(aggregates.len());
                for aggregate in aggregates {
                    args.push(match &aggregate.arg {
                        Some(arg) => arg.eval(&wide)?,
                        None => Datum::Null,
                    });
                }
                self.results.add_to_group(key, aggregates, &args, weight)
            }
        }
    }
}

/// The values of `exprs`, in order.
fn eval_all<'e>(
    exprs: impl ExactSizeIterator<Item = &'e Expr>,
    wide: &Wide<'_>,
) -> Result<Tuple, EvalError> {
    let mut values = Tuple::with_capacity(exprs.len());
    for expr in exprs {
        values.push(expr.eval(wide)?);
    }
    Ok(values)
}
