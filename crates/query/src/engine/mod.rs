//! Incremental evaluation of a [`Plan`] over Z-set deltas.
//!
//! Each change to an input table becomes deltas of that table's kept tuples; they flow through
//! the join stages after it (the stages before it are not affected), then the filter, then the
//! projection or the grouping. The result is kept by key, so each batch ends with one diff per
//! key it touched: added, updated (before and after) or deleted.

mod entries;
mod group;
mod join;
mod output;
mod table;

use surefoot_core_model::Change;

use crate::datum::{Datum, Map, Tuple};
use crate::error::EvalError;
use crate::expr::{Context, Expr};
use crate::ops::truth;
use crate::plan::{Output, Plan};

pub(crate) use output::Diff;
use output::Results;
pub(crate) use table::Touched;
use table::{Delta, TableInput};

/// A wide tuple (the join of the tables so far) seen as expression input.
struct Wide<'a> {
    tuple: &'a [Datum],
    offsets: &'a [usize],
}

impl Context for Wide<'_> {
    fn column(&self, table: usize, column: usize) -> &Datum {
        &self.tuple[self.offsets[table] + column]
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

    /// Rows of state held: input rows, join indexes, result rows.
    pub(crate) fn state_rows(&self) -> usize {
        self.tables.iter().map(TableInput::len).sum::<usize>()
            + self.joins.iter().map(join::JoinOp::len).sum::<usize>()
            + self.results.len()
    }

    /// The current result, by key.
    pub(crate) fn result(&self) -> &Map<Tuple, Tuple> {
        self.results.current()
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
    /// result; the diffs they make are the result already emitted, so they are dropped.
    pub(crate) fn restore(&mut self, index: usize, rows: Vec<Tuple>) -> Result<(), EvalError> {
        for row in rows {
            let mut deltas = std::mem::take(&mut self.scratch.0);
            self.tables[index].restore(row, &mut deltas)?;
            let propagated = self.propagate(index, &mut deltas);
            self.scratch.0 = deltas;
            propagated?;
        }
        self.results.finish(&self.plan).map(drop)
    }

    /// Applies the changes of one batch and returns its diffs, by key.
    pub(crate) fn apply(
        &mut self,
        changes: &[&Change],
        is_input: impl Fn(&Change, usize) -> bool,
    ) -> Result<Vec<Diff>, EvalError> {
        for change in changes.iter().copied() {
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
    /// `deltas` empty.
    fn propagate(&mut self, index: usize, deltas: &mut Vec<Delta>) -> Result<(), EvalError> {
        if deltas.is_empty() {
            return Ok(());
        }
        let mut joined = std::mem::take(&mut self.scratch.1);
        for stage in index.saturating_sub(1)..self.joins.len() {
            if deltas.is_empty() {
                break;
            }
            joined.clear();
            if stage + 1 == index {
                self.joins[stage].right_delta(deltas.drain(..), &mut joined);
            } else {
                self.joins[stage].left_delta(deltas.drain(..), &mut joined);
            }
            std::mem::swap(deltas, &mut joined);
        }
        self.scratch.1 = joined;
        self.emit(deltas.drain(..))
    }

    /// Filters the join's deltas and folds them into the result.
    fn emit(&mut self, deltas: impl Iterator<Item = Delta>) -> Result<(), EvalError> {
        for (tuple, weight) in deltas {
            let wide = Wide {
                tuple: &tuple,
                offsets: &self.offsets,
            };
            if let Some(filter) = &self.plan.filter
                && truth(&filter.eval(&wide)?)? != Some(true)
            {
                continue;
            }
            match &self.plan.output {
                Output::Project { columns } => {
                    let row = columns
                        .iter()
                        .map(|c| c.expr.eval(&wide))
                        .collect::<Result<Tuple, _>>()?;
                    self.results.add_row(&tuple, row, weight)?;
                }
                Output::Group {
                    keys, aggregates, ..
                } => {
                    let key = keys
                        .iter()
                        .map(|k| k.eval(&wide))
                        .collect::<Result<Tuple, _>>()?;
                    let args = aggregates
                        .iter()
                        .map(|a| {
                            a.arg
                                .as_ref()
                                .map_or(Ok(Datum::Null), |e: &Expr| e.eval(&wide))
                        })
                        .collect::<Result<Tuple, _>>()?;
                    self.results.add_to_group(key, aggregates, &args, weight)?;
                }
            }
        }
        Ok(())
    }
}
