//! Sending the current result of some keys again, as a result batch of its own: what a
//! reaction that refused changes for those keys (and dead-lettered them) applies to become
//! exact for them again, once its cause is fixed. Each key's change has a new sequence, so it
//! orders after everything emitted before: its current row as an update (before and after
//! both the current row), or, for a key no longer in the result, a delete of the key.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use surefoot_core_model::{AckToken, Batch, Change, Position, Row};

use super::ContinuousQuery;
use crate::error::EvalError;

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
    /// are sent once. An error (the state is inconsistent) settles `on_settled` failed.
    pub(crate) fn refresh(
        &mut self,
        keys: &[Row],
        on_settled: AckToken,
    ) -> Result<Option<Batch>, EvalError> {
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
            return Ok(None);
        }
        let result = match self.engine.result() {
            Ok(result) => result,
            Err(error) => {
                on_settled.failed();
                return Err(error);
            }
        };
        let mut current: Vec<Option<Row>> = vec![None; wanted.len()];
        for (key, row) in &result {
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
        Ok(Some(Batch {
            source: self.id.clone(),
            first,
            last,
            commit_time: None,
            changes: changes.into(),
            ack: self.settler.output(on_settled),
        }))
    }
}
