//! The query's result by key, and the diffs a batch makes to it.

use crate::datum::{Datum, Map, Set, Tuple};
use crate::engine::Wide;
use crate::engine::group::Group;
use crate::error::EvalError;
use crate::expr::Context;
use crate::ops::truth;
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

struct GroupContext<'a> {
    keys: &'a [Datum],
    aggregates: &'a [Datum],
}

impl Context for GroupContext<'_> {
    fn column(&self, _: usize, _: usize) -> &Datum {
        &Datum::Null
    }
    fn group_key(&self, index: usize) -> &Datum {
        &self.keys[index]
    }
    fn aggregate(&self, index: usize) -> &Datum {
        &self.aggregates[index]
    }
}

/// The result and the work of the batch in progress.
#[derive(Debug)]
pub(crate) struct Results {
    /// Positions of the result key in the wide tuple (projection).
    key_positions: Vec<usize>,
    /// A grouped query without GROUP BY: one row always, even over no input.
    global: bool,
    started: bool,
    current: Map<Tuple, Tuple>,
    /// Projection: the rows of each touched key in this batch, weighted.
    working: Map<Tuple, Vec<(Tuple, i64)>>,
    groups: Map<Tuple, Group>,
    touched: Vec<Tuple>,
    touched_set: Set<Tuple>,
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
            global,
            started: false,
            current: Map::default(),
            working: Map::default(),
            groups: Map::default(),
            touched: Vec::new(),
            touched_set: Set::default(),
        }
    }

    pub(crate) fn current(&self) -> &Map<Tuple, Tuple> {
        &self.current
    }

    pub(crate) fn len(&self) -> usize {
        self.current.len() + self.groups.len()
    }

    fn touch(&mut self, key: &Tuple) -> bool {
        if self.touched_set.insert(key.clone()) {
            self.touched.push(key.clone());
            true
        } else {
            false
        }
    }

    /// A projected row with its weight, keyed by the wide tuple's table keys.
    pub(crate) fn add_row(
        &mut self,
        wide: &Wide<'_>,
        row: Tuple,
        weight: i64,
    ) -> Result<(), EvalError> {
        let key: Tuple = self
            .key_positions
            .iter()
            .map(|p| wide.at(*p).clone())
            .collect();
        // The working rows double as the set of keys touched in this batch.
        let entries = match self.working.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                self.touched.push(entry.key().clone());
                let start = self
                    .current
                    .get(entry.key())
                    .map(|row| vec![(row.clone(), 1)]);
                entry.insert(start.unwrap_or_default())
            }
        };
        match entries.iter_mut().find(|(r, _)| *r == row) {
            Some(entry) => entry.1 += weight,
            None => entries.push((row, weight)),
        }
        entries.retain(|(_, w)| *w != 0);
        Ok(())
    }

    /// An input row with its weight into its group.
    pub(crate) fn add_to_group(
        &mut self,
        key: Tuple,
        aggregates: &[Aggregate],
        args: &[Datum],
        weight: i64,
    ) -> Result<(), EvalError> {
        self.touch(&key);
        self.groups
            .entry(key)
            .or_insert_with(|| Group::new(aggregates))
            .add(aggregates, args, weight)
    }

    /// Ends the batch: one diff per touched key whose row changed.
    pub(crate) fn finish(&mut self, plan: &Plan) -> Result<Vec<Diff>, EvalError> {
        if !self.started {
            self.started = true;
            if self.global
                && let Output::Group { aggregates, .. } = &plan.output
            {
                self.touch(&Tuple::new());
                self.groups
                    .entry(Tuple::new())
                    .or_insert_with(|| Group::new(aggregates));
            }
        }
        let touched = std::mem::take(&mut self.touched);
        self.touched_set.clear();
        let mut diffs = Vec::new();
        for key in touched {
            let after = match &plan.output {
                Output::Project { .. } => self.project_after(&key)?,
                Output::Group {
                    aggregates,
                    having,
                    columns,
                    ..
                } => self.group_after(&key, aggregates, having.as_ref(), columns)?,
            };
            let before = match &after {
                Some(row) => match self.current.get_mut(&key) {
                    Some(held) if held == row => continue,
                    Some(held) => Some(std::mem::replace(held, row.clone())),
                    None => self.current.insert(key.clone(), row.clone()),
                },
                None => self.current.remove(&key),
            };
            match (before, after) {
                (None, Some(row)) => diffs.push(Diff::Added { key, row }),
                (Some(before), None) => diffs.push(Diff::Deleted { key, before }),
                (Some(before), Some(after)) if before != after => {
                    diffs.push(Diff::Updated { key, before, after });
                }
                _ => {}
            }
        }
        Ok(diffs)
    }

    fn project_after(&mut self, key: &Tuple) -> Result<Option<Tuple>, EvalError> {
        let entries = self.working.remove(key).unwrap_or_default();
        match entries.as_slice() {
            [] => Ok(None),
            [(row, 1)] => Ok(Some(row.clone())),
            other => Err(EvalError::Inconsistent(format!(
                "result key {key:?} holds {other:?}"
            ))),
        }
    }

    fn group_after(
        &mut self,
        key: &Tuple,
        aggregates: &[Aggregate],
        having: Option<&crate::expr::Expr>,
        columns: &[crate::plan::OutputColumn],
    ) -> Result<Option<Tuple>, EvalError> {
        let Some(group) = self.groups.get(key) else {
            return Ok(None);
        };
        if group.rows < 0 {
            return Err(EvalError::Inconsistent(format!(
                "group {key:?} has {} rows",
                group.rows
            )));
        }
        if group.rows == 0 && !self.global {
            self.groups.remove(key);
            return Ok(None);
        }
        let values = group.values(aggregates)?;
        let context = GroupContext {
            keys: key,
            aggregates: &values,
        };
        if let Some(having) = having
            && truth(&having.eval(&context)?)? != Some(true)
        {
            return Ok(None);
        }
        columns
            .iter()
            .map(|c| c.expr.eval(&context))
            .collect::<Result<Tuple, _>>()
            .map(Some)
    }
}
