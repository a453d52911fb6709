//! What a decoded change costs in memory, for the transaction memory bound.
//!
//! An estimate that errs high rather than low: the change itself, every column slot, and the
//! heap bytes of every value. Column and table names are shared with the relation cache and
//! counted once there, not per change.

use std::mem::size_of;

use surefoot_core_model::{Change, Operation, Row, Value};

/// Bytes `change` holds: the value and everything it owns.
pub(crate) fn change_bytes(change: &Change) -> usize {
    let rows = match &change.operation {
        Operation::Insert { after } => row_bytes(after),
        Operation::Update { key, before, after } => {
            optional_row_bytes(key.as_ref())
                + optional_row_bytes(before.as_ref())
                + row_bytes(after)
        }
        Operation::Delete { key, before } => {
            optional_row_bytes(key.as_ref()) + optional_row_bytes(before.as_ref())
        }
        Operation::Truncate => 0,
    };
    size_of::<Change>() + rows
}

/// Bytes of all `changes`.
pub(crate) fn changes_bytes(changes: &[Change]) -> usize {
    changes.iter().map(change_bytes).sum()
}

fn optional_row_bytes(row: Option<&Row>) -> usize {
    row.map_or(0, row_bytes)
}

fn row_bytes(row: &Row) -> usize {
    let columns = row.columns();
    std::mem::size_of_val(columns)
        + columns
            .iter()
            .map(|column| value_heap_bytes(&column.value))
            .sum::<usize>()
}

/// Heap bytes a value owns beyond its own size.
fn value_heap_bytes(value: &Value) -> usize {
    match value {
        Value::Text(text) => text.capacity(),
        Value::Bytes(bytes) => bytes.capacity(),
        Value::Numeric(numeric) => numeric.as_str().len(),
        Value::Json(json) => json_heap_bytes(json),
        Value::Other { type_name, text } => type_name.capacity() + text.capacity(),
        _ => 0,
    }
}

fn json_heap_bytes(json: &serde_json::Value) -> usize {
    use serde_json::Value as Json;
    match json {
        Json::String(text) => text.capacity(),
        Json::Array(items) => items
            .iter()
            .map(|item| size_of::<Json>() + json_heap_bytes(item))
            .sum(),
        Json::Object(map) => map
            .iter()
            .map(|(key, item)| {
                // Each entry: its key string, the value, and the map's node overhead.
                key.capacity() + size_of::<String>() + size_of::<Json>() * 2 + json_heap_bytes(item)
            })
            .sum(),
        Json::Null | Json::Bool(_) | Json::Number(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use surefoot_core_model::{Column, Lsn, Position, TableRef};

    use super::*;

    fn at(ordinal: u32) -> Position {
        Position::postgres(Lsn(16), ordinal)
    }

    #[test]
    fn every_owned_byte_is_counted() {
        let table = TableRef::new("public", "t");
        let row = Row::new()
            .with("id", Value::Int32(1))
            .with("note", Value::Text("x".repeat(100)))
            .with("raw", Value::Bytes(vec![0; 50]))
            .with("doc", Value::Json(serde_json::json!({"k": ["ab", 1]})))
            .with("n", Value::Numeric("1.50".parse().unwrap()))
            .with(
                "ip",
                Value::Other {
                    type_name: "inet".into(),
                    text: "10.0.0.1".into(),
                },
            );
        let insert = Change::insert(at(0), table.clone(), row.clone());
        let inline = size_of::<Change>() + 6 * size_of::<Column>();
        assert!(change_bytes(&insert) >= inline + 100 + 50 + 4 + 4 + 8 + 2);
        let update = Change::update(at(1), table.clone(), Some(row.clone()), None, row.clone());
        assert_eq!(
            change_bytes(&update),
            size_of::<Change>() + 2 * (change_bytes(&insert) - size_of::<Change>())
        );
        let delete = Change::delete(at(2), table.clone(), None, Some(row));
        assert_eq!(change_bytes(&delete), change_bytes(&insert));
        let truncate = Change::truncate(at(3), table);
        assert_eq!(change_bytes(&truncate), size_of::<Change>());
        let all = [insert, update, delete, truncate];
        assert_eq!(
            changes_bytes(&all),
            all.iter().map(change_bytes).sum::<usize>()
        );
    }
}
