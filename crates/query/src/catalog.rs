//! What the query knows of its input tables: their columns and keys.

use std::sync::Arc;

use surefoot_core_model::TableRef;

/// One input table: its name, columns and primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// The table, as its changes name it.
    pub table: TableRef,
    /// Every column, in table order.
    pub columns: Vec<Arc<str>>,
    /// The primary key (or replica identity) columns; not empty.
    pub key: Vec<Arc<str>>,
}

impl TableSchema {
    /// A table with `columns` and key `key`.
    pub fn new(table: TableRef, columns: &[&str], key: &[&str]) -> Self {
        Self {
            table,
            columns: columns.iter().map(|c| Arc::from(*c)).collect(),
            key: key.iter().map(|c| Arc::from(*c)).collect(),
        }
    }
}

/// The tables a query may read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    tables: Vec<TableSchema>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a table, builder style.
    #[must_use]
    pub fn with(mut self, table: TableSchema) -> Self {
        self.tables.push(table);
        self
    }

    /// The table called `name` in `schema`, or in any schema (`public` first) when `schema` is
    /// `None`.
    pub fn find(&self, schema: Option<&str>, name: &str) -> Option<&TableSchema> {
        let named = |t: &&TableSchema| &*t.table.name == name;
        match schema {
            Some(schema) => self
                .tables
                .iter()
                .filter(named)
                .find(|t| &*t.table.schema == schema),
            None => self
                .tables
                .iter()
                .filter(named)
                .find(|t| &*t.table.schema == "public")
                .or_else(|| self.tables.iter().find(named)),
        }
    }
}
