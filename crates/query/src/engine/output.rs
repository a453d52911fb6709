//! The query's result by key, and the diffs a batch makes to it.

use crate::datum::{Datum, Tuple};
use crate::engine::Wide;
use crate::engine::grouped::{Grouped, Shape};
use crate::engine::project::Projected;
use crate::error::EvalError;
use crate::plan::{Aggregate, Output, Plan};

/// One change to the result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Diff {
    /// A new result row.
    Added {
        /// Its key.
        key: Tuple,
        /// The row.
        row: Tuple,
    },
    /// A result row that changed.
    Updated {
        /// Its key.
        key: Tuple,
        /// The row before.
        before: Tuple,
        /// The row after.
        after: Tuple,
    },
    /// A result row that went away.
    Deleted {
        /// Its key.
        key: Tuple,
        /// The row before.
        before: Tuple,
    },
}

/// The result and the work of the batch in progress.
#[derive(Debug)]
pub(crate) struct Results {
    /// Positions of the result key in the wide tuple (projection).
    key_positions: Vec<usize>,
    projected: Projected,
    grouped: Grouped,
}

impl Results {
    pub(crate) fn new(plan: &Plan, offsets: &[usize]) -> Self {
        let key_positions = plan
            .tables
            .iter()
            .zip(offsets)
            .flat_map(|(table, offset)| (0..table.key_len()).map(move |c| offset + c))
            .collect();
        let global = matches!(&plan.output, Output::Group { keys, .. } if keys.is_empty());
        Self {
            key_positions,
            projected: Projected::default(),
            grouped: Grouped::new(global),
        }
    }

    /// A grouped result's rows by key (a projection's result is not held: see `project`).
    pub(crate) fn group_rows(&self) -> impl Iterator<Item = (&Tuple, &Tuple)> {
        self.grouped.rows()
    }

    pub(crate) fn len(&self) -> usize {
        self.projected.len() + self.grouped.len()
    }

    /// A projected row with its weight, keyed by the wide tuple's table keys.
    pub(crate) fn add_row(&mut self, wide: &Wide<'_>, row: Tuple, weight: i64) {
        let mut key = Tuple::with_capacity(self.key_positions.len());
        for position in &self.key_positions {
            key.push(wide.at(*position).clone());
        }
        self.projected.add(key, row, weight);
    }

    /// An input row with its weight into its group.
    pub(crate) fn add_to_group(
        &mut self,
        key: Tuple,
        aggregates: &[Aggregate],
        args: &[Datum],
        weight: i64,
    ) -> Result<(), EvalError> {
        self.grouped.add(key, aggregates, args, weight)
    }

    /// Ends the batch: one diff per touched key whose row changed.
    pub(crate) fn finish(&mut self, plan: &Plan) -> Result<Vec<Diff>, EvalError> {
        let mut diffs = Vec::with_capacity(self.projected.touched() + self.grouped.touched());
        match &plan.output {
            Output::Project { .. } => self.projected.finish(&mut diffs)?,
            Output::Group {
                aggregates,
                having,
                columns,
                ..
            } => {
                let shape = Shape {
                    aggregates,
                    having: having.as_ref(),
                    columns,
                };
                self.grouped.finish(&shape, &mut diffs)?;
            }
        }
        Ok(diffs)
    }
}
