//! Changes: one inserted, updated, deleted or truncated row (or table).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::position::Position;
use crate::row::Row;

/// A table, by schema and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableRef {
    /// The schema, e.g. `public`.
    pub schema: Arc<str>,
    /// The table's name.
    pub name: Arc<str>,
}

impl TableRef {
    /// A table reference.
    pub fn new(schema: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> Self {
        Self {
            schema: schema.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for TableRef {
    /// `schema.name`, unquoted: for messages, never for SQL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// What happened to the row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    /// A new row.
    Insert {
        /// The row as inserted.
        after: Row,
    },
    /// A changed row.
    Update {
        /// The old key columns, when the key changed (PostgreSQL sends them only then).
        key: Option<Row>,
        /// The whole old row, when the table's replica identity is `FULL`.
        before: Option<Row>,
        /// The new row. Columns the source did not send are [`crate::Value::Unchanged`].
        after: Row,
    },
    /// A removed row. At least one of `key` and `before` is present.
    Delete {
        /// The key columns of the removed row.
        key: Option<Row>,
        /// The whole old row, when the table's replica identity is `FULL`.
        before: Option<Row>,
    },
    /// Every row of the table removed at once.
    Truncate,
}

/// One change to one table, at one position of its source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Where the change sits in its source's stream.
    pub position: Position,
    /// The table changed.
    pub table: TableRef,
    /// What happened.
    #[serde(flatten)]
    pub operation: Operation,
}

impl Change {
    /// An insert.
    pub fn insert(position: Position, table: TableRef, after: Row) -> Self {
        Self {
            position,
            table,
            operation: Operation::Insert { after },
        }
    }

    /// An update.
    pub fn update(
        position: Position,
        table: TableRef,
        key: Option<Row>,
        before: Option<Row>,
        after: Row,
    ) -> Self {
        Self {
            position,
            table,
            operation: Operation::Update { key, before, after },
        }
    }

    /// A delete.
    pub fn delete(
        position: Position,
        table: TableRef,
        key: Option<Row>,
        before: Option<Row>,
    ) -> Self {
        Self {
            position,
            table,
            operation: Operation::Delete { key, before },
        }
    }

    /// A truncate of `table`.
    pub fn truncate(position: Position, table: TableRef) -> Self {
        Self {
            position,
            table,
            operation: Operation::Truncate,
        }
    }

    /// The row after the change, for inserts and updates.
    pub fn after(&self) -> Option<&Row> {
        match &self.operation {
            Operation::Insert { after } | Operation::Update { after, .. } => Some(after),
            Operation::Delete { .. } | Operation::Truncate => None,
        }
    }

    /// The row before the change, when the source sent it.
    pub fn before(&self) -> Option<&Row> {
        match &self.operation {
            Operation::Update { before, .. } | Operation::Delete { before, .. } => before.as_ref(),
            Operation::Insert { .. } | Operation::Truncate => None,
        }
    }

    /// The old key columns, when the source sent them.
    pub fn old_key(&self) -> Option<&Row> {
        match &self.operation {
            Operation::Update { key, .. } | Operation::Delete { key, .. } => key.as_ref(),
            Operation::Insert { .. } | Operation::Truncate => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::Lsn;
    use crate::value::Value;

    #[test]
    fn change_json_is_flat_and_round_trips() {
        let change = Change::delete(
            Position::postgres(Lsn(0x10), 3),
            TableRef::new("public", "users"),
            Some(Row::new().with("id", Value::Int64(9))),
            None,
        );
        let json = serde_json::to_value(&change).unwrap();
        assert_eq!(json["op"], "delete");
        assert_eq!(json["position"]["postgres"]["commit_lsn"], "0/10");
        let back: Change = serde_json::from_value(json).unwrap();
        assert_eq!(back, change);
        assert_eq!(
            back.old_key().and_then(|k| k.get("id")),
            Some(&Value::Int64(9))
        );
    }
}
