//! Tuples into [`Row`]s, using a cached relation's column names and types.

use std::sync::Arc;

use surefoot_core_lifecycle::{Classify, ErrorClass};
use surefoot_core_model::{Row, TableRef};

use super::messages::Oid;
use super::relations::{CachedColumn, CachedRelation};
use super::tuple::{TupleData, TupleValue};
use super::type_names::TypeNames;
use super::values::{ValueParseError, parse_tuple_value};

/// A column's value does not parse as its type.
#[derive(Debug, thiserror::Error)]
#[error("{table}.{column} (type {type_name}): {source}")]
pub struct ColumnValueError {
    /// The table.
    pub table: TableRef,
    /// The column.
    pub column: Arc<str>,
    /// The column's type OID.
    pub type_oid: Oid,
    /// The column's type name.
    pub type_name: String,
    /// Why the value does not parse.
    #[source]
    pub source: ValueParseError,
}

/// Why a tuple does not make a row of its relation.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    /// The tuple has a different number of columns than the Relation message described.
    #[error("a tuple of {table} has {received} columns, its Relation message described {expected}")]
    ColumnCountMismatch {
        /// The table.
        table: TableRef,
        /// Columns the Relation message described.
        expected: usize,
        /// Columns the tuple has.
        received: usize,
    },
    /// The server sent a key tuple (`K`) for a table without key columns.
    #[error("a key tuple arrived for {table}, whose Relation message marks no key column")]
    NoKeyColumns {
        /// The table.
        table: TableRef,
    },
    /// A value does not parse as its column's type.
    #[error(transparent)]
    Value(#[from] Box<ColumnValueError>),
}

impl Classify for RowError {
    /// Permanent: the same bytes arrive again after a reconnect.
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

impl CachedRelation {
    /// The whole row a tuple carries (`N`, or `O` for replica identity `FULL`).
    pub fn row(&self, tuple: &TupleData, types: &TypeNames) -> Result<Row, RowError> {
        self.check_column_count(tuple)?;
        let pairs = self.columns.iter().zip(&tuple.values);
        self.collect_row(pairs, types)
    }

    /// The key columns of a key tuple (`K`); the other columns are null in it and left out.
    pub fn key_row(&self, tuple: &TupleData, types: &TypeNames) -> Result<Row, RowError> {
        self.check_column_count(tuple)?;
        if !self.columns.iter().any(|column| column.is_key) {
            return Err(RowError::NoKeyColumns {
                table: self.table.clone(),
            });
        }
        let pairs = self.columns.iter().zip(&tuple.values);
        self.collect_row(pairs.filter(|(column, _)| column.is_key), types)
    }

    fn check_column_count(&self, tuple: &TupleData) -> Result<(), RowError> {
        if tuple.values.len() == self.columns.len() {
            return Ok(());
        }
        Err(RowError::ColumnCountMismatch {
            table: self.table.clone(),
            expected: self.columns.len(),
            received: tuple.values.len(),
        })
    }

    fn collect_row<'a>(
        &self,
        pairs: impl Iterator<Item = (&'a CachedColumn, &'a TupleValue)>,
        types: &TypeNames,
    ) -> Result<Row, RowError> {
        let mut row = Row::with_capacity(self.columns.len());
        for (column, value) in pairs {
            let value = parse_tuple_value(column.type_oid, value, types)
                .map_err(|source| self.value_error(column, types, source))?;
            row.push(Arc::clone(&column.name), value);
        }
        Ok(row)
    }

    fn value_error(
        &self,
        column: &CachedColumn,
        types: &TypeNames,
        source: ValueParseError,
    ) -> RowError {
        RowError::Value(Box::new(ColumnValueError {
            table: self.table.clone(),
            column: Arc::clone(&column.name),
            type_oid: column.type_oid,
            type_name: types.name(column.type_oid).into_owned(),
            source,
        }))
    }
}
