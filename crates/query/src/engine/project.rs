//! A projection's result diffs, folded per batch from the deltas alone.
//!
//! A projection's (or join's) result row is a function of the input rows it comes from, and
//! the deltas that reach the result are exact: a result row that goes away arrives with weight
//! −1, its replacement with +1. So a batch's diff for a key is what its deltas net to: −1 of
//! one row is the row before, +1 of one row the row after, and both an update. The result
//! itself is not held (the input rows and join indexes already determine it): a batch's work is
//! a map of the keys it touched, a few hundred entries that stay in cache, instead of a lookup
//! into a map as large as the result. The current result, when asked for, is evaluated again
//! from the input rows (`Engine::result`).

use smallvec::SmallVec;

use crate::datum::{Map, Tuple};
use crate::engine::output::Diff;
use crate::error::EvalError;

/// The rows a batch added to one key, with their net weights (none zero).
type Rows = SmallVec<[(Tuple, i64); 2]>;

/// A batch's work above this many keys (after a restore, say) is freed rather than kept for
/// the next batch: clearing a map costs its capacity, on every batch after, and the memory
/// would stay taken.
const WORK_KEPT: usize = 4096;

/// The batch in progress of a projection, and the size of its result.
#[derive(Debug, Default)]
pub(crate) struct Projected {
    /// The index in `work` of each key the batch touched.
    index: Map<Tuple, usize>,
    /// The keys the batch touched, in order, with their rows.
    work: Vec<(Tuple, Rows)>,
    /// The index in `work` of the key last added to: an update's retraction and addition
    /// usually share a key, and the second finds it without a lookup.
    last: Option<usize>,
    /// Result rows, counted from the diffs (for the state-size metric).
    len: usize,
}

impl Projected {
    /// Result rows held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Keys the batch in progress touched.
    pub(crate) fn touched(&self) -> usize {
        self.work.len()
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
        *self.index.entry(key).or_insert_with_key(|key| {
            work.push((key.clone(), Rows::new()));
            work.len() - 1
        })
    }

    /// Ends the batch: appends one diff per touched key whose row changed.
    pub(crate) fn finish(&mut self, diffs: &mut Vec<Diff>) -> Result<(), EvalError> {
        self.last = None;
        if self.index.len() > WORK_KEPT {
            self.index = Map::default();
        } else {
            self.index.clear();
        }
        let mut outcome = Ok(());
        for (key, rows) in self.work.drain(..) {
            if outcome.is_err() {
                continue;
            }
            match settle(key, rows) {
                Ok(Some(diff)) => {
                    match &diff {
                        Diff::Added { .. } => self.len += 1,
                        Diff::Deleted { .. } => self.len = self.len.saturating_sub(1),
                        Diff::Updated { .. } => {}
                    }
                    diffs.push(diff);
                }
                Ok(None) => {}
                Err(error) => outcome = Err(error),
            }
        }
        if self.work.capacity() > WORK_KEPT {
            self.work = Vec::new();
        }
        outcome
    }
}

/// A touched key's diff from its rows' net weights: a key loses at most one row and gains at
/// most one; anything else is an inconsistency.
fn settle(key: Tuple, mut rows: Rows) -> Result<Option<Diff>, EvalError> {
    if let [(_, 1), (_, -1)] = rows.as_slice() {
        rows.swap(0, 1);
    }
    if !matches!(
        rows.as_slice(),
        [] | [(_, 1)] | [(_, -1)] | [(_, -1), (_, 1)]
    ) {
        return Err(EvalError::Inconsistent(format!(
            "result key {key:?} nets to {rows:?} in one batch"
        )));
    }
    let mut rows = rows.into_iter();
    Ok(match (rows.next(), rows.next()) {
        (Some((row, 1)), None) => Some(Diff::Added { key, row }),
        (Some((before, _)), None) => Some(Diff::Deleted { key, before }),
        (Some((before, _)), Some((after, _))) => Some(Diff::Updated { key, before, after }),
        (None, _) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datum::Datum;

    fn tuple(values: &[i64]) -> Tuple {
        values.iter().map(|v| Datum::Int(*v)).collect()
    }

    fn batch(deltas: &[(i64, &[i64], i64)]) -> Result<Vec<Diff>, EvalError> {
        let mut projected = Projected::default();
        for (key, row, weight) in deltas {
            projected.add(tuple(&[*key]), tuple(row), *weight);
        }
        let mut diffs = Vec::new();
        projected.finish(&mut diffs).map(|()| diffs)
    }

    #[test]
    fn net_weights_make_one_diff_per_key() {
        let diffs = batch(&[
            (1, &[10], 1),
            (2, &[20], -1),
            (2, &[21], 1),
            (3, &[30], -1),
            (4, &[40], 1),
            (4, &[40], -1),
            (5, &[50], -1),
            (5, &[50], 1),
        ]);
        let expected = vec![
            Diff::Added {
                key: tuple(&[1]),
                row: tuple(&[10]),
            },
            Diff::Updated {
                key: tuple(&[2]),
                before: tuple(&[20]),
                after: tuple(&[21]),
            },
            Diff::Deleted {
                key: tuple(&[3]),
                before: tuple(&[30]),
            },
        ];
        assert_eq!(diffs.ok(), Some(expected));
    }

    #[test]
    fn an_addition_before_the_retraction_is_still_an_update() {
        let diffs = batch(&[(1, &[11], 1), (1, &[10], -1)]);
        let expected = Diff::Updated {
            key: tuple(&[1]),
            before: tuple(&[10]),
            after: tuple(&[11]),
        };
        assert_eq!(diffs.ok(), Some(vec![expected]));
    }

    #[test]
    fn two_rows_under_one_key_are_refused() {
        let diffs = batch(&[(1, &[10], 1), (1, &[11], 1)]);
        assert!(matches!(diffs, Err(EvalError::Inconsistent(_))));
    }

    #[test]
    fn the_count_follows_additions_and_deletions() {
        let mut projected = Projected::default();
        projected.add(tuple(&[1]), tuple(&[10]), 1);
        projected.add(tuple(&[2]), tuple(&[20]), 1);
        projected.finish(&mut Vec::new()).ok();
        projected.add(tuple(&[1]), tuple(&[10]), -1);
        projected.finish(&mut Vec::new()).ok();
        assert_eq!(projected.len(), 1);
    }
}
