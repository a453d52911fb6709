//! An input table's rows as the query keeps them, and the Z-set deltas its changes make.
//!
//! PostgreSQL sends only the key for deletes and key-changing updates (replica identity
//! default), and `Unchanged` for unchanged TOASTed columns: the query keeps the columns it
//! needs of every row so it can retract the old row and fill in what the change left out.

use surefoot_core_model::{Change, Operation, Row};

use crate::datum::{Datum, Tuple};
use crate::engine::columns::Columns;
use crate::engine::kept::{KeptRows, Updated};
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
    columns: Columns,
    rows: KeptRows,
    /// Whether changed keys are recorded (for a durable copy of the rows).
    tracking: bool,
    /// Keys changed since the last `take_touched`, when tracking.
    touched: Vec<Tuple>,
    truncated: bool,
}

impl TableInput {
    pub(crate) fn new(table: &PlanTable) -> Self {
        Self {
            rows: KeptRows::new(table.key_len()),
            columns: Columns::new(table),
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
                let row = self.rows.get(&key[..]).cloned();
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
        if row.len() != self.columns.len() {
            return Err(EvalError::MissingColumn {
                table: self.columns.table().to_owned(),
                column: format!(
                    "{} kept columns, the stored row has {}",
                    self.columns.len(),
                    row.len()
                ),
            });
        }
        self.keep(row, out);
        Ok(())
    }

    fn touch(&mut self, key: &[Datum]) {
        if self.tracking {
            self.touched.push(Tuple::from(key));
        }
    }

    /// Number of kept columns.
    pub(crate) fn width(&self) -> usize {
        self.columns.len()
    }

    /// The rows kept, in no order.
    pub(crate) fn rows(&self) -> impl Iterator<Item = &Tuple> {
        self.rows.iter()
    }

    /// Rows kept.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Keeps `row`, replacing the row of its key if one is held; appends the deltas.
    fn keep(&mut self, row: Tuple, out: &mut Vec<Delta>) {
        if let Some(old) = self.rows.replace(row.clone()) {
            out.push((old, -1));
        }
        out.push((row, 1));
    }

    /// Applies one change, appending the deltas it makes.
    pub(crate) fn apply(&mut self, change: &Change, out: &mut Vec<Delta>) -> Result<(), EvalError> {
        match &change.operation {
            Operation::Insert { after } => {
                let mut row = Tuple::new();
                if let Some(index) = self.columns.read(after, &mut row) {
                    return Err(self.columns.lacking(index));
                }
                self.touch(&row[..self.columns.key_len()]);
                // An insert over a key the query holds: the source re-sent it or the table was
                // changed behind it; the new row replaces the old one.
                self.keep(row, out);
            }
            Operation::Update { key, before, after } => {
                let old = key.as_ref().or(before.as_ref());
                self.update(old, after, out)?;
            }
            Operation::Delete { key, before } => {
                let Some(old_row) = key.as_ref().or(before.as_ref()) else {
                    return Err(EvalError::MissingColumn {
                        table: self.columns.table().to_owned(),
                        column: "the key of a delete".into(),
                    });
                };
                let old_key = self.columns.key(old_row)?;
                let Some(old) = self.rows.take(&old_key[..]) else {
                    return Err(self.missing("delete", &old_key));
                };
                self.touch(&old_key);
                out.push((old, -1));
            }
            Operation::Truncate => {
                self.touched.clear();
                self.truncated = true;
                out.extend(self.rows.drain().map(|row| (row, -1)));
            }
        }
        Ok(())
    }

    /// An update: `old` names the row's old key when the change sends it (a key change, or
    /// replica identity full); otherwise the key is `after`'s.
    fn update(
        &mut self,
        old: Option<&Row>,
        after: &Row,
        out: &mut Vec<Delta>,
    ) -> Result<(), EvalError> {
        let key_len = self.columns.key_len();
        let old_key = old.map(|old| self.columns.key(old)).transpose()?;
        let mut new = Tuple::new();
        if let Some(index) = self.columns.read(after, &mut new) {
            // Columns the change left out (unchanged TOASTed values) are the held row's.
            let key = old_key.as_deref().unwrap_or(&new[..key_len]);
            if old_key.is_none() && index < key_len {
                return Err(self.columns.lacking(index));
            }
            let Some(held) = self.rows.get(key) else {
                return Err(self.missing("update", key));
            };
            self.columns.fill(after, &mut new, held);
        }
        let old_key = match old_key {
            Some(old_key) if old_key[..] != new[..key_len] => old_key,
            _ => {
                // The common case: the key stays; the row replaces the held one.
                self.touch(&new[..key_len]);
                match self.rows.update(&new) {
                    Updated::Missing => return Err(self.missing("update", &new[..key_len])),
                    Updated::Same => {}
                    Updated::Replaced(held) => {
                        out.push((held, -1));
                        out.push((new, 1));
                    }
                }
                return Ok(());
            }
        };
        self.touch(&old_key);
        self.touch(&new[..key_len]);
        let Some(old) = self.rows.take(&old_key[..]) else {
            return Err(self.missing("update", &old_key));
        };
        if let Some(displaced) = self.rows.replace(new.clone()) {
            out.push((displaced, -1));
        }
        out.push((old, -1));
        out.push((new, 1));
        Ok(())
    }

    fn missing(&self, operation: &'static str, key: &[Datum]) -> EvalError {
        EvalError::MissingRow {
            operation,
            table: self.columns.table().to_owned(),
            key: format!("{key:?}"),
        }
    }
}
