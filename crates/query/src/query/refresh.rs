//! Sending the current result of some keys again, as a result batch of its own: what a
//! reaction that refused changes for those keys (and dead-lettered them) applies to become
//! exact for them again, once its cause is fixed. Each key's change has a new sequence, so it
//! orders after everything emitted before: its current row as an update (before and after
//! both the current row), or, for a key no longer in the result, a delete of the key.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use surefoot_core_model::{AckToken, Batch, Change, Position, Row};

use super::ContinuousQuery;

impl ContinuousQuery {
    /// The key columns of `row` (a result row, or a change's key), if it has them all.
    pub fn key_of(&self, row: &Row) -> Option<Row> {
        let mut key = Row::with_capacity(self.key_columns.len());
        for name in &self.key_columns {
            key.push(std::sync::Arc::clone(name), row.get(name)?.clone());
        }
        Some(key)
    }

    /// A result batch with the current state of each of `keys` (see the module docs), whose
    /// token `on_settled` follows like any result batch's; `None` for no keys. Duplicate keys
    /// are sent once.
    pub(crate) fn refresh(&mut self, keys: &[Row], on_settled: AckToken) -> Option<Batch> {
        // By their debug text: values hold floats, so rows do not hash.
        let mut wanted: Vec<&Row> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for key in keys {
            if let Entry::Vacant(slot) = index.entry(format!("{key:?}")) {
                slot.insert(wanted.len());
                wanted.push(key);
            }
        }
        if wanted.is_empty() {
            on_settled.delivered();
            return None;
        }
        let mut current: Vec<Option<Row>> = vec![None; wanted.len()];
        for (key, row) in self.engine.result() {
            let text = format!("{:?}", self.key_row(key));
            if let Some(at) = index.get(&text) {
                current[*at] = Some(self.row(key, row));
            }
        }
        let first = Position::Sequence(self.next_sequence);
        let table = self.output_table.clone();
        let changes: Vec<Change> = wanted
            .into_iter()
            .zip(current)
            .map(|(key, row)| {
                let position = Position::Sequence(self.next_sequence);
                self.next_sequence += 1;
                match row {
                    Some(row) => {
                        Change::update(position, table.clone(), None, Some(row.clone()), row)
                    }
                    None => Change::delete(position, table.clone(), Some(key.clone()), None),
                }
            })
            .collect();
        let last = Position::Sequence(self.next_sequence - 1);
        Some(Batch {
            source: self.id.clone(),
            first,
            last,
            commit_time: None,
            changes: changes.into(),
            ack: self.settler.output(on_settled),
        })
    }
}
