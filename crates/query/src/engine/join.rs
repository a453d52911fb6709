//! A join stage: the tables so far (left) joined to one more table (right) on column
//! equalities, maintained from deltas as ΔL⋈R + L'⋈ΔR with an index on each side.
//!
//! A LEFT JOIN also emits a left row padded with NULLs while no right row matches it; when
//! the first right row for a key arrives the padded rows are retracted, and when the last one
//! goes they come back.

use crate::datum::{Datum, Map, Tuple};
use crate::engine::entries::Entries;
use crate::engine::table::Delta;
use crate::error::EvalError;
use crate::plan::JoinKind;

type Index = Map<Tuple, Entries>;

/// One join stage's state.
#[derive(Debug)]
pub(crate) struct JoinOp {
    kind: JoinKind,
    /// Positions of the key columns in the left (wide) tuple.
    left_key: Vec<usize>,
    /// Positions of the key columns in the right table's tuple.
    right_key: Vec<usize>,
    /// A right tuple of NULLs, padding a LEFT JOIN's unmatched left rows.
    nulls: Tuple,
    left: Index,
    right: Index,
    /// Entries in both indexes.
    entries: usize,
}

fn key_of(tuple: &Tuple, positions: &[usize]) -> Option<Tuple> {
    let key: Tuple = positions.iter().map(|p| tuple[*p].clone()).collect();
    // NULL never equals anything: such a row matches nothing.
    (!key.iter().any(Datum::is_null)).then_some(key)
}

/// Adds `weight` of `tuple` under `key`; returns the change in the number of entries.
fn add(index: &mut Index, key: Tuple, tuple: Tuple, weight: i64) -> isize {
    let Some(entries) = index.get_mut(&key) else {
        index.insert(key, Entries::of(tuple, weight));
        return 1;
    };
    let change = entries.add(tuple, weight);
    if entries.is_empty() {
        index.remove(&key);
    }
    change
}

fn total(index: &Index, key: &Tuple) -> i64 {
    index.get(key).map_or(0, Entries::total)
}

/// The joined tuple of a left and a right part, for a stage whose output feeds another join.
pub(crate) fn concat(left: &[Datum], right: &[Datum]) -> Tuple {
    let mut joined = Tuple::with_capacity(left.len() + right.len());
    joined.extend(left.iter().cloned());
    joined.extend(right.iter().cloned());
    joined
}

/// Receives each joined delta as its left part, its right part and its weight; the parts are
/// borrowed so the last stage's output is evaluated without building the joined tuple.
pub(crate) trait JoinSink {
    /// One joined delta.
    fn joined(&mut self, left: &[Datum], right: &[Datum], weight: i64) -> Result<(), EvalError>;
}

/// Collects joined tuples (for a stage followed by another).
impl JoinSink for Vec<Delta> {
    fn joined(&mut self, left: &[Datum], right: &[Datum], weight: i64) -> Result<(), EvalError> {
        self.push((concat(left, right), weight));
        Ok(())
    }
}

impl JoinOp {
    pub(crate) fn new(
        kind: JoinKind,
        left_key: Vec<usize>,
        right_key: Vec<usize>,
        right_width: usize,
    ) -> Self {
        Self {
            kind,
            left_key,
            right_key,
            nulls: smallvec::smallvec![Datum::Null; right_width],
            left: Index::default(),
            right: Index::default(),
            entries: 0,
        }
    }

    /// Rows of state held (both sides).
    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    fn count(&mut self, change: isize) {
        self.entries = self.entries.saturating_add_signed(change);
    }

    /// Deltas of the left input in, deltas of the join out.
    pub(crate) fn left_delta(
        &mut self,
        deltas: impl Iterator<Item = Delta>,
        out: &mut impl JoinSink,
    ) -> Result<(), EvalError> {
        for (tuple, weight) in deltas {
            let Some(key) = key_of(&tuple, &self.left_key) else {
                if self.kind == JoinKind::Left {
                    out.joined(&tuple, &self.nulls, weight)?;
                }
                continue;
            };
            match self.right.get(&key) {
                Some(matches) if !matches.is_empty() => {
                    for (right, right_weight) in matches.iter() {
                        out.joined(&tuple, right, weight * right_weight)?;
                    }
                }
                _ if self.kind == JoinKind::Left => out.joined(&tuple, &self.nulls, weight)?,
                _ => {}
            }
            let change = add(&mut self.left, key, tuple, weight);
            self.count(change);
        }
        Ok(())
    }

    /// Deltas of the right table in, deltas of the join out.
    pub(crate) fn right_delta(
        &mut self,
        deltas: impl Iterator<Item = Delta>,
        out: &mut impl JoinSink,
    ) -> Result<(), EvalError> {
        for (tuple, weight) in deltas {
            let Some(key) = key_of(&tuple, &self.right_key) else {
                continue;
            };
            if let Some(lefts) = self.left.get(&key) {
                for (left, left_weight) in lefts.iter() {
                    out.joined(left, &tuple, left_weight * weight)?;
                }
            }
            if self.kind == JoinKind::Inner {
                let change = add(&mut self.right, key, tuple, weight);
                self.count(change);
                continue;
            }
            // LEFT JOIN: the padded rows of the left side go when its first match comes and
            // come back when its last match goes.
            let before = total(&self.right, &key);
            let change = add(&mut self.right, key.clone(), tuple, weight);
            self.count(change);
            let after = total(&self.right, &key);
            let sign = match (before == 0, after == 0) {
                (true, false) => -1,
                (false, true) => 1,
                _ => continue,
            };
            if let Some(lefts) = self.left.get(&key) {
                for (left, left_weight) in lefts.iter() {
                    out.joined(left, &self.nulls, sign * left_weight)?;
                }
            }
        }
        Ok(())
    }
}
