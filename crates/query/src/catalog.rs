//! What the query knows of its input tables: their columns and keys.

use std::sync::Arc;

use surefoot_core_model::{SourceId, TableRef};

/// One input table: its name, columns and primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// The table, as its changes name it.
    pub table: TableRef,
    /// Every column, in table order.
    pub columns: Vec<Arc<str>>,
    /// The primary key (or replica identity) columns; not empty.
    pub key: Vec<Arc<str>>,
    /// The source whose changes feed this table; `None`: changes to the table from any source.
    /// Two sources may carry tables of the same name: bind each to its source.
    pub source: Option<SourceId>,
    /// The name queries use for the table, when not its own (two sources' `public.orders`,
    /// say, as `shop_orders` and `crm_orders`).
    pub sql_name: Option<Arc<str>>,
}

impl TableSchema {
    /// A table with `columns` and key `key`.
    pub fn new(table: TableRef, columns: &[&str], key: &[&str]) -> Self {
        Self {
            table,
            columns: columns.iter().map(|c| Arc::from(*c)).collect(),
            key: key.iter().map(|c| Arc::from(*c)).collect(),
            source: None,
            sql_name: None,
        }
    }

    /// Binds the table to `source`, builder style.
    #[must_use]
    pub fn from_source(mut self, source: SourceId) -> Self {
        self.source = Some(source);
        self
    }

    /// Names the table `name` in queries, builder style.
    #[must_use]
    pub fn named(mut self, name: &str) -> Self {
        self.sql_name = Some(Arc::from(name));
        self
    }

    /// The name queries use for the table.
    pub fn name_in_sql(&self) -> &str {
        self.sql_name.as_deref().unwrap_or(&self.table.name)
    }

    /// True when `change_table`, sent by `source`, is this table.
    pub fn receives(&self, source: &SourceId, change_table: &TableRef) -> bool {
        // Names first: they tell tables apart sooner than schemas.
        same_name(&self.table.name, &change_table.name)
            && same_name(&self.table.schema, &change_table.schema)
            && self.source.as_ref().is_none_or(|s| s == source)
    }
}

/// Names compared inline: they are short, and a call to `memcmp` costs more than the
/// comparison. Every change is routed, and every kept column found, by such comparisons.
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && (std::ptr::eq(a.as_ptr(), b.as_ptr())
            || std::iter::zip(a.bytes(), b.bytes()).all(|(x, y)| x == y))
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

    /// The table queries call `name` (see [`TableSchema::named`]) in `schema`, or in any schema
    /// (`public` first) when `schema` is `None`.
    pub fn find(&self, schema: Option<&str>, name: &str) -> Option<&TableSchema> {
        let named = |t: &&TableSchema| t.name_in_sql() == name;
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
