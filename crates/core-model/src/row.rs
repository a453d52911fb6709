//! Rows: named column values in the table's column order.

use std::fmt;
use std::sync::Arc;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::value::Value;

/// One column of a row.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The column's name. Shared, since every row of a table repeats the same names.
    pub name: Arc<str>,
    /// The column's value.
    pub value: Value,
}

/// Named column values, in the table's column order.
///
/// Serialises as a JSON object whose keys keep that order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    columns: Vec<Column>,
}

impl Row {
    /// An empty row.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty row with room for `capacity` columns.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            columns: Vec::with_capacity(capacity),
        }
    }

    /// Appends a column.
    pub fn push(&mut self, name: impl Into<Arc<str>>, value: Value) {
        self.columns.push(Column {
            name: name.into(),
            value,
        });
    }

    /// Appends a column, builder style.
    #[must_use]
    pub fn with(mut self, name: impl Into<Arc<str>>, value: Value) -> Self {
        self.push(name, value);
        self
    }

    /// The value of the column called `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.columns
            .iter()
            .find(|column| &*column.name == name)
            .map(|column| &column.value)
    }

    /// The columns in order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// True when the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Only the columns whose names are in `names`, in the row's order.
    pub fn project(&self, names: &[&str]) -> Row {
        Row {
            columns: self
                .columns
                .iter()
                .filter(|column| names.contains(&&*column.name))
                .cloned()
                .collect(),
        }
    }
}

impl FromIterator<(Arc<str>, Value)> for Row {
    fn from_iter<I: IntoIterator<Item = (Arc<str>, Value)>>(iter: I) -> Self {
        Row {
            columns: iter
                .into_iter()
                .map(|(name, value)| Column { name, value })
                .collect(),
        }
    }
}

impl Serialize for Row {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.columns.len()))?;
        for column in &self.columns {
            map.serialize_entry(&*column.name, &column.value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RowVisitor)
    }
}

struct RowVisitor;

impl<'de> Visitor<'de> for RowVisitor {
    type Value = Row;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object of column names to typed values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
        let mut row = Row::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((name, value)) = map.next_entry::<String, Value>()? {
            if row.get(&name).is_some() {
                return Err(serde::de::Error::custom(format!(
                    "column `{name}` appears twice"
                )));
            }
            row.push(name, value);
        }
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_column_order_and_rejects_duplicates() {
        let row = Row::new()
            .with("zeta", Value::Int32(1))
            .with("alpha", Value::Text("a".into()));
        let json = serde_json::to_string(&row).unwrap();
        assert_eq!(
            json,
            r#"{"zeta":{"type":"int32","value":1},"alpha":{"type":"text","value":"a"}}"#
        );
        let back: Row = serde_json::from_str(&json).unwrap();
        assert_eq!(back, row);
        let twice = r#"{"a":{"type":"null"},"a":{"type":"null"}}"#;
        assert!(serde_json::from_str::<Row>(twice).is_err());
    }

    #[test]
    fn project_keeps_row_order() {
        let row = Row::new()
            .with("a", Value::Int32(1))
            .with("b", Value::Int32(2))
            .with("c", Value::Int32(3));
        let projected = row.project(&["c", "a"]);
        let names: Vec<&str> = projected.columns().iter().map(|c| &*c.name).collect();
        assert_eq!(names, ["a", "c"]);
    }
}
