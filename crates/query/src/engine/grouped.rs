//! A grouped query's result: its groups by key, each with its aggregates' state and its result
//! row, and the diffs a batch makes to the groups it touched.

use crate::datum::{Datum, Map, Tuple};
use crate::engine::group::Group;
use crate::engine::output::Diff;
use crate::error::EvalError;
use crate::expr::{Context, Expr};
use crate::ops::truth;
use crate::plan::{Aggregate, OutputColumn};

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

/// The touched-key list above this capacity (after a restore) is freed, not kept for the next
/// batch.
const TOUCHED_KEPT: usize = 4096;

/// What a grouped query outputs: its aggregates, HAVING and SELECT columns.
pub(crate) struct Shape<'a> {
    pub(crate) aggregates: &'a [Aggregate],
    pub(crate) having: Option<&'a Expr>,
    pub(crate) columns: &'a [OutputColumn],
}

/// The groups and the batch in progress.
#[derive(Debug, Default)]
pub(crate) struct Grouped {
    /// A grouped query without GROUP BY: one row always, even over no input.
    global: bool,
    started: bool,
    groups: Map<Tuple, Group>,
    /// The keys of the groups the batch touched, in order.
    touched: Vec<Tuple>,
}

impl Grouped {
    pub(crate) fn new(global: bool) -> Self {
        Self {
            global,
            ..Self::default()
        }
    }

    /// The result rows by key.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (&Tuple, &Tuple)> {
        self.groups
            .iter()
            .filter_map(|(key, group)| Some((key, group.row.as_ref()?)))
    }

    /// Groups held.
    pub(crate) fn len(&self) -> usize {
        self.groups.len()
    }

    /// Groups the batch in progress touched.
    pub(crate) fn touched(&self) -> usize {
        self.touched.len()
    }

    /// The group of `key`, made if new, marked touched.
    fn touch(&mut self, key: Tuple, aggregates: &[Aggregate]) -> &mut Group {
        let touched = &mut self.touched;
        let group = match self.groups.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => {
                if !entry.get().touched {
                    touched.push(entry.key().clone());
                }
                entry.into_mut()
            }
            std::collections::hash_map::Entry::Vacant(entry) => {
                touched.push(entry.key().clone());
                entry.insert(Group::new(aggregates))
            }
        };
        group.touched = true;
        group
    }

    /// An input row with its weight into its group.
    pub(crate) fn add(
        &mut self,
        key: Tuple,
        aggregates: &[Aggregate],
        args: &[Datum],
        weight: i64,
    ) -> Result<(), EvalError> {
        self.touch(key, aggregates).add(aggregates, args, weight)
    }

    /// Ends the batch: appends one diff per touched group whose row changed.
    pub(crate) fn finish(
        &mut self,
        shape: &Shape<'_>,
        diffs: &mut Vec<Diff>,
    ) -> Result<(), EvalError> {
        if !self.started {
            self.started = true;
            if self.global {
                self.touch(Tuple::new(), shape.aggregates);
            }
        }
        let mut touched = std::mem::take(&mut self.touched);
        let mut outcome = Ok(());
        for key in touched.drain(..) {
            let Some(group) = self.groups.get_mut(&key) else {
                continue;
            };
            group.touched = false;
            if outcome.is_err() {
                continue;
            }
            let emptied = group.rows == 0 && !self.global;
            let (before, after) = match settle(&key, group, emptied, shape) {
                Ok(Some(change)) => change,
                Ok(None) => continue,
                Err(error) => {
                    outcome = Err(error);
                    continue;
                }
            };
            if emptied {
                self.groups.remove(&key);
            }
            diffs.push(match (before, after) {
                (None, Some(row)) => Diff::Added { key, row },
                (Some(before), None) => Diff::Deleted { key, before },
                (Some(before), Some(after)) => Diff::Updated { key, before, after },
                (None, None) => continue,
            });
        }
        // Kept for the next batch, unless a restore made it as large as the groups.
        if touched.capacity() <= TOUCHED_KEPT {
            self.touched = touched;
        }
        outcome
    }
}

/// A group's result row before and after a batch (`None`: no row).
type BeforeAfter = (Option<Tuple>, Option<Tuple>);

/// A touched group's row before and after, `None` when it did not change; `emptied`: the
/// group has no rows left and goes.
fn settle(
    key: &[Datum],
    group: &mut Group,
    emptied: bool,
    shape: &Shape<'_>,
) -> Result<Option<BeforeAfter>, EvalError> {
    if group.rows < 0 {
        return Err(EvalError::Inconsistent(format!(
            "group {key:?} has {} rows",
            group.rows
        )));
    }
    let after = if emptied {
        None
    } else {
        row_of(key, group, shape)?
    };
    let before = match &after {
        Some(row) if group.row.as_ref() == Some(row) => return Ok(None),
        Some(row) => group.row.replace(row.clone()),
        None => group.row.take(),
    };
    Ok(Some((before, after)))
}

/// A group's result row: `None` when HAVING rejects it.
fn row_of(key: &[Datum], group: &Group, shape: &Shape<'_>) -> Result<Option<Tuple>, EvalError> {
    let values = group.values(shape.aggregates)?;
    let context = GroupContext {
        keys: key,
        aggregates: &values,
    };
    if let Some(having) = shape.having
        && truth(&having.eval(&context)?)? != Some(true)
    {
        return Ok(None);
    }
    let mut row = Tuple::with_capacity(shape.columns.len());
    for column in shape.columns {
        row.push(column.expr.eval(&context)?);
    }
    Ok(Some(row))
}
