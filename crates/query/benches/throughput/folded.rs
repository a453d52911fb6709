//! The hand-written loops' result: typed keys and values in a `HashMap`, folded per batch into
//! the same diffs the query emits (one per touched key: insert, update with before and after,
//! delete with key and before), built as the same `Change`s.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::sync::Arc;

use surefoot_core_model::{Change, Position, Row, TableRef, Value};

/// A keyed result of `i64` columns and the batch's diffs to it.
pub(crate) struct Folded<K, V> {
    table: TableRef,
    /// Output column names, then the key column names.
    columns: Vec<Arc<str>>,
    keys: Vec<Arc<str>>,
    result: HashMap<K, V>,
    /// The value before the batch of each key it touched, in the order first touched.
    before: HashMap<K, Option<V>>,
    order: Vec<K>,
    sequence: u64,
}

/// How a key and a value read as output columns.
pub(crate) trait Columns {
    /// Appends the columns' values.
    fn values(&self, out: &mut Vec<i64>);
}

impl Columns for i64 {
    fn values(&self, out: &mut Vec<i64>) {
        out.push(*self);
    }
}

impl Columns for (i64, i64) {
    fn values(&self, out: &mut Vec<i64>) {
        out.extend([self.0, self.1]);
    }
}

impl Columns for (i64, i64, i64) {
    fn values(&self, out: &mut Vec<i64>) {
        out.extend([self.0, self.1, self.2]);
    }
}

impl<K: Hash + Eq + Copy + Columns, V: Copy + PartialEq + Columns> Folded<K, V> {
    pub(crate) fn new(columns: &[&str], keys: &[&str]) -> Self {
        Self {
            table: TableRef::new("query", "q"),
            columns: columns.iter().map(|c| Arc::from(*c)).collect(),
            keys: keys.iter().map(|c| Arc::from(*c)).collect(),
            result: HashMap::new(),
            before: HashMap::new(),
            order: Vec::new(),
            sequence: 0,
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.result.get(key)
    }

    /// Sets (or, with `None`, removes) the row of `key`.
    pub(crate) fn set(&mut self, key: K, value: Option<V>) {
        let old = match value {
            Some(value) => self.result.insert(key, value),
            None => self.result.remove(&key),
        };
        if let Entry::Vacant(entry) = self.before.entry(key) {
            entry.insert(old);
            self.order.push(key);
        }
    }

    fn row(&self, key: &K, value: &V) -> Row {
        let mut values = Vec::with_capacity(self.columns.len() + self.keys.len());
        value.values(&mut values);
        key.values(&mut values);
        let names = self.columns.iter().chain(&self.keys);
        let mut row = Row::with_capacity(values.len());
        for (name, value) in names.zip(values) {
            row.push(Arc::clone(name), Value::Int64(value));
        }
        row
    }

    fn key_row(&self, key: &K) -> Row {
        let mut values = Vec::with_capacity(self.keys.len());
        key.values(&mut values);
        let mut row = Row::with_capacity(values.len());
        for (name, value) in self.keys.iter().zip(values) {
            row.push(Arc::clone(name), Value::Int64(value));
        }
        row
    }

    /// Ends the batch: the diffs of the keys it touched whose row changed.
    pub(crate) fn finish(&mut self) -> Vec<Change> {
        let mut diffs = Vec::new();
        for key in std::mem::take(&mut self.order) {
            let before = self.before.remove(&key).flatten();
            let after = self.result.get(&key).copied();
            let position = Position::Sequence(self.sequence);
            let table = self.table.clone();
            let diff = match (before, after) {
                (None, Some(after)) => Change::insert(position, table, self.row(&key, &after)),
                (Some(before), Some(after)) if before != after => Change::update(
                    position,
                    table,
                    None,
                    Some(self.row(&key, &before)),
                    self.row(&key, &after),
                ),
                (Some(before), None) => Change::delete(
                    position,
                    table,
                    Some(self.key_row(&key)),
                    Some(self.row(&key, &before)),
                ),
                _ => continue,
            };
            self.sequence += 1;
            diffs.push(diff);
        }
        diffs
    }
}
