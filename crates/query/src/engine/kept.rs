//! A kept input row, hashed and compared by its key columns (the first ones), so a table's
//! rows are a set looked up by key: each row is stored once, its key not copied beside it.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

use crate::datum::{Datum, Tuple};

/// An input row as the query keeps it; equal to another when their keys are.
#[derive(Debug)]
pub(crate) struct KeptRow {
    /// The kept columns, key columns first.
    pub(crate) tuple: Tuple,
    key_len: usize,
}

impl KeptRow {
    pub(crate) fn new(tuple: Tuple, key_len: usize) -> Self {
        Self { tuple, key_len }
    }

    /// The key columns.
    pub(crate) fn key(&self) -> &[Datum] {
        &self.tuple[..self.key_len]
    }
}

// Hash and equality are the key's, as `Borrow` requires: a row is found by its key alone.
impl Hash for KeptRow {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialEq for KeptRow {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for KeptRow {}

impl Borrow<[Datum]> for KeptRow {
    fn borrow(&self) -> &[Datum] {
        self.key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datum::Set;

    #[test]
    fn rows_are_found_and_replaced_by_key() {
        let row = |id, x| KeptRow::new(smallvec::smallvec![Datum::Int(id), Datum::Int(x)], 1);
        let mut rows: Set<KeptRow> = Set::default();
        rows.insert(row(1, 10));
        rows.insert(row(2, 20));
        let old = rows.replace(row(1, 11)).map(|r| r.tuple);
        assert_eq!(old.as_deref(), Some(&[Datum::Int(1), Datum::Int(10)][..]));
        let held = rows.get(&[Datum::Int(1)][..]).map(|r| &r.tuple[..]);
        assert_eq!(held, Some(&[Datum::Int(1), Datum::Int(11)][..]));
        assert!(rows.take(&[Datum::Int(2)][..]).is_some());
        assert_eq!(rows.len(), 1);
    }
}
