//! An input table's kept rows, found by their key columns (the first ones). Each row is stored
//! once, its key not copied beside it, and a row is changed where it lies: an update finds its
//! row by key and swaps the new one in, without moving either through the table.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::datum::{Datum, Tuple};

/// The rows of one input table, by key.
#[derive(Debug, Default)]
pub(crate) struct KeptRows {
    rows: HashTable<Tuple>,
    key_len: usize,
    hasher: foldhash::fast::RandomState,
}

/// What an update found under its key.
#[derive(Debug, PartialEq)]
pub(crate) enum Updated {
    /// No row holds the key.
    Missing,
    /// The row held equals the new one; nothing changed.
    Same,
    /// The row held before, now replaced.
    Replaced(Tuple),
}

impl KeptRows {
    /// An empty table of rows whose first `key_len` columns are the key.
    pub(crate) fn new(key_len: usize) -> Self {
        Self {
            key_len,
            ..Self::default()
        }
    }

    fn hash(&self, key: &[Datum]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Rows held.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// The row of `key`.
    pub(crate) fn get(&self, key: &[Datum]) -> Option<&Tuple> {
        let key_len = self.key_len;
        self.rows.find(self.hash(key), |row| row[..key_len] == *key)
    }

    /// Removes and returns the row of `key`.
    pub(crate) fn take(&mut self, key: &[Datum]) -> Option<Tuple> {
        let key_len = self.key_len;
        let hash = self.hash(key);
        match self.rows.find_entry(hash, |row| row[..key_len] == *key) {
            Ok(entry) => Some(entry.remove().0),
            Err(_) => None,
        }
    }

    /// Keeps `row`, returning the row it replaces under its key, if any.
    pub(crate) fn replace(&mut self, row: Tuple) -> Option<Tuple> {
        let key_len = self.key_len;
        let hash = self.hash(&row[..key_len]);
        let hasher = &self.hasher;
        let entry = self.rows.entry(
            hash,
            |held| held[..key_len] == row[..key_len],
            |held| hasher.hash_one(&held[..key_len]),
        );
        match entry {
            Entry::Occupied(mut held) => Some(std::mem::replace(held.get_mut(), row)),
            Entry::Vacant(vacant) => {
                vacant.insert(row);
                None
            }
        }
    }

    /// Replaces the row under `row`'s key by `row`, in place, unless it is the same.
    pub(crate) fn update(&mut self, row: &Tuple) -> Updated {
        let key_len = self.key_len;
        let hash = self.hash(&row[..key_len]);
        let Some(held) = self
            .rows
            .find_mut(hash, |held| held[..key_len] == row[..key_len])
        else {
            return Updated::Missing;
        };
        if held == row {
            return Updated::Same;
        }
        Updated::Replaced(std::mem::replace(held, row.clone()))
    }

    /// Removes every row, returning them.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Tuple> + '_ {
        self.rows.drain()
    }

    /// The rows, in no order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Tuple> {
        self.rows.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, x: i64) -> Tuple {
        smallvec::smallvec![Datum::Int(id), Datum::Int(x)]
    }

    #[test]
    fn rows_are_found_replaced_and_updated_by_key() {
        let mut rows = KeptRows::new(1);
        assert_eq!(rows.replace(row(1, 10)), None);
        assert_eq!(rows.replace(row(2, 20)), None);
        assert_eq!(rows.replace(row(1, 11)), Some(row(1, 10)));
        assert_eq!(rows.get(&[Datum::Int(1)]), Some(&row(1, 11)));
        assert_eq!(rows.update(&row(1, 11)), Updated::Same);
        assert_eq!(rows.update(&row(1, 12)), Updated::Replaced(row(1, 11)));
        assert_eq!(rows.update(&row(3, 30)), Updated::Missing);
        assert_eq!(rows.take(&[Datum::Int(2)]), Some(row(2, 20)));
        assert_eq!(rows.take(&[Datum::Int(2)]), None);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows.drain().collect::<Vec<_>>(), vec![row(1, 12)]);
        assert_eq!(rows.len(), 0);
    }

    #[test]
    fn a_key_of_a_number_finds_the_row_of_an_equal_number_of_another_kind() {
        let mut rows = KeptRows::new(1);
        rows.replace(row(7, 1));
        assert!(rows.get(&[Datum::Float(7.0)]).is_some());
    }
}
