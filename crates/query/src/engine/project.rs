//! A projection's result by key, and the weighted rows a batch adds to the keys it touches.
//!
//! Each key's slot holds its result row and, while a batch touches it, where that batch's
//! rows for it are: one lookup per delta, and at the end of the batch the rows are weighed
//! against the held row (weight 1) without copying it.

use smallvec::SmallVec;

use crate::datum::{Map, Tuple};
use crate::engine::output::Diff;
use crate::error::EvalError;

/// The rows a batch added to one key, with their net weights (none zero).
type Rows = SmallVec<[(Tuple, i64); 2]>;

#[derive(Debug)]
struct Slot {
    /// The result row as of the last batch; `None` only while a batch touches the key.
    row: Option<Tuple>,
    /// `1 +` the index of this batch's rows for the key; 0 while untouched.
    work: usize,
}

/// A projection's result and the batch in progress.
#[derive(Debug, Default)]
pub(crate) struct Projected {
    current: Map<Tuple, Slot>,
    /// The keys the batch touched, in order, with their rows.
    work: Vec<(Tuple, Rows)>,
    /// The index in `work` of the key last added to: an update's retraction and addition
    /// usually share a key, and the second finds it without a lookup.
    last: Option<usize>,
}

impl Projected {
    /// The result rows by key.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (&Tuple, &Tuple)> {
        self.current
            .iter()
            .filter_map(|(key, slot)| Some((key, slot.row.as_ref()?)))
    }

    /// Result rows held.
    pub(crate) fn len(&self) -> usize {
        self.current.len()
    }

    /// Adds `weight` of `row` under `key`.
    pub(crate) fn add(&mut self, key: Tuple, row: Tuple, weight: i64) {
        let index = match self.last {
            Some(last) if self.work[last].0 == key => last,
            _ => self.touch(key),
        };
        self.last = Some(index);
        let rows = &mut self.work[index].1;
        match rows.iter().position(|(held, _)| *held == row) {
            Some(place) => {
                rows[place].1 += weight;
                if rows[place].1 == 0 {
                    rows.swap_remove(place);
                }
            }
            None => rows.push((row, weight)),
        }
    }

    /// The index in `work` of `key`'s rows, made on its first touch in the batch.
    fn touch(&mut self, key: Tuple) -> usize {
        let work = &mut self.work;
        let mut start = |key: &Tuple| {
            work.push((key.clone(), Rows::new()));
            work.len()
        };
        let index = match self.current.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut entry) => {
                if entry.get().work == 0 {
                    entry.get_mut().work = start(entry.key());
                }
                entry.get().work
            }
            std::collections::hash_map::Entry::Vacant(entry) => {
                let index = start(entry.key());
                entry.insert(Slot {
                    row: None,
                    work: index,
                });
                index
            }
        };
        index - 1
    }

    /// Ends the batch: appends one diff per touched key whose row changed.
    pub(crate) fn finish(&mut self, diffs: &mut Vec<Diff>) -> Result<(), EvalError> {
        let mut outcome = Ok(());
        self.last = None;
        for (key, rows) in self.work.drain(..) {
            let Some(slot) = self.current.get_mut(&key) else {
                continue;
            };
            slot.work = 0;
            if outcome.is_err() {
                continue;
            }
            let after = match settle(&key, slot.row.as_ref(), rows) {
                Ok(Settled::Same) if slot.row.is_some() => continue,
                Ok(Settled::Same) => None,
                Ok(Settled::Row(row)) => row,
                Err(error) => {
                    outcome = Err(error);
                    continue;
                }
            };
            match (slot.row.take(), after) {
                (None, Some(row)) => {
                    slot.row = Some(row.clone());
                    diffs.push(Diff::Added { key, row });
                }
                (Some(before), Some(after)) => {
                    slot.row = Some(after.clone());
                    diffs.push(Diff::Updated { key, before, after });
                }
                (Some(before), None) => {
                    self.current.remove(&key);
                    diffs.push(Diff::Deleted { key, before });
                }
                // Added and retracted within the batch: the key was never in the result.
                (None, None) => {
                    self.current.remove(&key);
                }
            }
        }
        outcome
    }
}

/// What a touched key's rows come to.
enum Settled {
    /// The held row (or none) stays.
    Same,
    /// The key's row is now this (`None`: no row).
    Row(Option<Tuple>),
}

/// Weighs a key's batch rows against its held row (weight 1): a key ends with one row of
/// weight 1 or none, anything else is an inconsistency.
fn settle(key: &Tuple, held: Option<&Tuple>, mut rows: Rows) -> Result<Settled, EvalError> {
    let mut held_weight = i64::from(held.is_some());
    if let Some(held) = held
        && let Some(place) = rows.iter().position(|(row, _)| row == held)
    {
        held_weight += rows.swap_remove(place).1;
    }
    match (held_weight, rows.as_slice()) {
        (1, []) => Ok(Settled::Same),
        (0, []) if held.is_none() => Ok(Settled::Same),
        (0, []) => Ok(Settled::Row(None)),
        (0, [(_, 1)]) => Ok(Settled::Row(rows.pop().map(|(row, _)| row))),
        _ => Err(EvalError::Inconsistent(format!(
            "result key {key:?} holds {:?} beside {rows:?}",
            held.map(|row| (row, held_weight))
        ))),
    }
}
