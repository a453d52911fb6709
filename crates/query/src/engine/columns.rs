//! Reading an input table's kept columns out of a change's row.

use std::cell::Cell;
use std::sync::Arc;

use surefoot_core_model::{Row, Value};

use crate::catalog::same_name;
use crate::datum::{Datum, Tuple};
use crate::error::EvalError;
use crate::plan::PlanTable;

/// The kept columns of one input table, found by name in each row.
#[derive(Debug)]
pub(crate) struct Columns {
    table: String,
    kept: Vec<Arc<str>>,
    /// Per kept column, where it was found in the last row: rows of one table usually list
    /// their columns in the same order, so the lookup starts there.
    found_at: Vec<Cell<usize>>,
    key_len: usize,
}

impl Columns {
    pub(crate) fn new(table: &PlanTable) -> Self {
        Self {
            table: table.schema.table.to_string(),
            kept: table.kept.clone(),
            found_at: table.kept.iter().map(|_| Cell::new(0)).collect(),
            key_len: table.key_len(),
        }
    }

    /// The table's name, for errors.
    pub(crate) fn table(&self) -> &str {
        &self.table
    }

    /// Number of kept columns.
    pub(crate) fn len(&self) -> usize {
        self.kept.len()
    }

    /// Number of key columns (the first kept ones).
    pub(crate) fn key_len(&self) -> usize {
        self.key_len
    }

    /// The value of kept column `index` in `row`.
    fn value<'r>(&self, row: &'r Row, index: usize) -> Option<&'r Value> {
        let name = &*self.kept[index];
        let columns = row.columns();
        let hint = self.found_at[index].get();
        if let Some(column) = columns.get(hint)
            && same_name(&column.name, name)
        {
            return Some(&column.value);
        }
        let found = columns
            .iter()
            .position(|column| same_name(&column.name, name))?;
        self.found_at[index].set(found);
        Some(&columns[found].value)
    }

    /// Kept column `index` of `row` as a datum; `None` when the row lacks it or sends it as
    /// `Unchanged`.
    fn datum(&self, row: &Row, index: usize) -> Option<Datum> {
        self.value(row, index).and_then(Datum::from_value)
    }

    /// Appends every kept column of `row` to `out`, NULL where the row lacks one; returns the
    /// first column it lacked, if any (see [`Columns::fill`]).
    pub(crate) fn read(&self, row: &Row, out: &mut Tuple) -> Option<usize> {
        let mut lacking = None;
        out.reserve(self.kept.len());
        for index in 0..self.kept.len() {
            match self.datum(row, index) {
                Some(datum) => out.push(datum),
                None => {
                    lacking = lacking.or(Some(index));
                    out.push(Datum::Null);
                }
            }
        }
        lacking
    }

    /// Replaces the columns [`Columns::read`] found lacking in `row` by those of `held`.
    pub(crate) fn fill(&self, row: &Row, out: &mut Tuple, held: &[Datum]) {
        for index in 0..self.kept.len() {
            if self.datum(row, index).is_none() {
                out[index] = held[index].clone();
            }
        }
    }

    /// The key columns of `row`.
    pub(crate) fn key(&self, row: &Row) -> Result<Tuple, EvalError> {
        (0..self.key_len)
            .map(|index| self.datum(row, index).ok_or_else(|| self.lacking(index)))
            .collect()
    }

    /// The error for a row that lacks kept column `index`.
    pub(crate) fn lacking(&self, index: usize) -> EvalError {
        EvalError::MissingColumn {
            table: self.table.clone(),
            column: self.kept[index].to_string(),
        }
    }
}
