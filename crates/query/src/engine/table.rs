//! An input table's rows as the query keeps them, and the Z-set deltas its changes make.
//!
//! PostgreSQL sends only the key for deletes and key-changing updates (replica identity
//! default), and `Unchanged` for unchanged TOASTed columns: the query keeps the columns it
//! needs of every row so it can retract the old row and fill in what the change left out.

use std::cell::Cell;
use std::sync::Arc;

use surefoot_core_model::{Change, Operation, Row, Value};

use crate::datum::{Datum, Map, Tuple};
use crate::error::EvalError;
use crate::plan::PlanTable;

/// A weighted tuple: `+1` added, `-1` removed.
pub(crate) type Delta = (Tuple, i64);

/// What a batch did to one input table's kept rows, for a durable copy of them.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Touched {
    /// The table was emptied (TRUNCATE) before the rows below.
    pub(crate) truncated: bool,
    /// Keys changed since the last [`TableInput::take_touched`], with the row now kept (`None`:
    /// removed).
    pub(crate) rows: Vec<(Tuple, Option<Tuple>)>,
}

/// One input table's kept rows, by key.
#[derive(Debug)]
pub(crate) struct TableInput {
    name: String,
    kept: Vec<Arc<str>>,
    /// Per kept column, where it was found in the last row: rows of one table usually list
    /// their columns in the same order, so the lookup starts there.
    found_at: Vec<Cell<usize>>,
    key_len: usize,
    rows: Map<Tuple, Tuple>,
    /// Whether changed keys are recorded (for a durable copy of the rows).
    tracking: bool,
    /// Keys changed since the last `take_touched`, when tracking.
    touched: Vec<Tuple>,
    truncated: bool,
}

impl TableInput {
    pub(crate) fn new(table: &PlanTable) -> Self {
        Self {
            name: table.schema.table.to_string(),
            kept: table.kept.clone(),
            found_at: table.kept.iter().map(|_| Cell::new(0)).collect(),
            key_len: table.key_len(),
            rows: Map::default(),
            tracking: false,
            touched: Vec::new(),
            truncated: false,
        }
    }

    /// Records the keys every change touches from now on, for [`TableInput::take_touched`].
    pub(crate) fn track(&mut self) {
        self.tracking = true;
    }

    /// The keys changed since the last call, each with the row now kept; clears the record.
    pub(crate) fn take_touched(&mut self) -> Touched {
        let mut keys = std::mem::take(&mut self.touched);
        keys.sort();
        keys.dedup();
        let rows = keys
            .into_iter()
            .map(|key| {
                let row = self.rows.get(&key).cloned();
                (key, row)
            })
            .collect();
        Touched {
            truncated: std::mem::take(&mut self.truncated),
            rows,
        }
    }

    /// Puts back a row kept before a restart, appending its delta; it is not recorded as
    /// touched (it is already durable).
    pub(crate) fn restore(&mut self, row: Tuple, out: &mut Vec<Delta>) -> Result<(), EvalError> {
        if row.len() != self.kept.len() {
            return Err(EvalError::MissingColumn {
                table: self.name.clone(),
                column: format!(
                    "{} kept columns, the stored row has {}",
                    self.kept.len(),
                    row.len()
                ),
            });
        }
        let key = Tuple::from(&row[..self.key_len]);
        if let Some(old) = self.rows.insert(key, row.clone()) {
            out.push((old, -1));
        }
        out.push((row, 1));
        Ok(())
    }

    fn touch(&mut self, key: &[Datum]) {
        if self.tracking {
            self.touched.push(Tuple::from(key));
        }
    }

    /// Number of kept columns.
    pub(crate) fn width(&self) -> usize {
        self.kept.len()
    }

    /// Rows kept.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Applies one change, appending the deltas it makes.
    pub(crate) fn apply(&mut self, change: &Change, out: &mut Vec<Delta>) -> Result<(), EvalError> {
        match &change.operation {
            Operation::Insert { after } => {
                let row = self.extract(after, None)?;
                let key = Tuple::from(&row[..self.key_len]);
                self.touch(&key);
                if let Some(old) = self.rows.insert(key, row.clone()) {
                    // An insert over a key the query holds: the source re-sent it or the table
                    // was changed behind it; the new row replaces the old one.
                    out.push((old, -1));
                }
                out.push((row, 1));
            }
            Operation::Update { key, before, after } => {
                let old_key = match key.as_ref().or(before.as_ref()) {
                    Some(old) => self.extract_key(old)?,
                    None => self.extract_key(after)?,
                };
                let Some(held) = self.rows.get(&old_key) else {
                    return Err(self.missing("update", &old_key));
                };
                let new = self.extract(after, Some(held))?;
                self.touch(&old_key);
                self.touch(&new[..self.key_len]);
                if new[..self.key_len] == old_key[..] {
                    // The common case: the key stays; replace the row in place.
                    if let Some(slot) = self.rows.get_mut(&old_key)
                        && *slot != new
                    {
                        let old = std::mem::replace(slot, new.clone());
                        out.push((old, -1));
                        out.push((new, 1));
                    }
                    return Ok(());
                }
                let Some(old) = self.rows.remove(&old_key) else {
                    return Err(self.missing("update", &old_key));
                };
                let new_key = Tuple::from(&new[..self.key_len]);
                if let Some(displaced) = self.rows.insert(new_key, new.clone()) {
                    out.push((displaced, -1));
                }
                out.push((old, -1));
                out.push((new, 1));
            }
            Operation::Delete { key, before } => {
                let Some(old_row) = key.as_ref().or(before.as_ref()) else {
                    return Err(EvalError::MissingColumn {
                        table: self.name.clone(),
                        column: "the key of a delete".into(),
                    });
                };
                let old_key = self.extract_key(old_row)?;
                let Some(old) = self.rows.remove(&old_key) else {
                    return Err(self.missing("delete", &old_key));
                };
                self.touch(&old_key);
                out.push((old, -1));
            }
            Operation::Truncate => {
                self.touched.clear();
                self.truncated = true;
                out.extend(self.rows.drain().map(|(_, row)| (row, -1)));
            }
        }
        Ok(())
    }

    fn missing(&self, operation: &'static str, key: &Tuple) -> EvalError {
        EvalError::MissingRow {
            operation,
            table: self.name.clone(),
            key: format!("{key:?}"),
        }
    }

    fn extract_key(&self, row: &Row) -> Result<Tuple, EvalError> {
        self.kept[..self.key_len]
            .iter()
            .enumerate()
            .map(|(index, _)| self.value(row, index, None))
            .collect()
    }

    /// The kept columns of `row`; a column it lacks or sends as `Unchanged` comes from `old`.
    fn extract(&self, row: &Row, old: Option<&Tuple>) -> Result<Tuple, EvalError> {
        self.kept
            .iter()
            .enumerate()
            .map(|(index, _)| self.value(row, index, old.map(|old| &old[index])))
            .collect()
    }

    /// The value of kept column `index` in `row`.
    fn column<'r>(&self, row: &'r Row, index: usize) -> Option<&'r Value> {
        let name = &*self.kept[index];
        let columns = row.columns();
        let hint = self.found_at[index].get();
        if let Some(column) = columns.get(hint)
            && &*column.name == name
        {
            return Some(&column.value);
        }
        let found = columns.iter().position(|column| &*column.name == name)?;
        self.found_at[index].set(found);
        Some(&columns[found].value)
    }

    fn value(&self, row: &Row, index: usize, old: Option<&Datum>) -> Result<Datum, EvalError> {
        match self
            .column(row, index)
            .and_then(Datum::from_value)
            .or_else(|| old.cloned())
        {
            Some(datum) => Ok(datum),
            None => Err(EvalError::MissingColumn {
                table: self.name.clone(),
                column: self.kept[index].to_string(),
            }),
        }
    }
}
