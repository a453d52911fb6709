//! The content digest of changes: SHA-256 over a canonical binary encoding, so that a batch
//! delivered again can be compared with what was applied (issue 14, X-4).
//!
//! Each change is encoded as its position (variant tag and fields), its table (schema, name),
//! its operation tag and its rows (`key`, `before`, `after` as the operation has them), each row
//! as its column names and then its values in order, each value its type tag and its bytes
//! (integers and floats as their little-endian bits, text, numeric and bytes as they are, uuid
//! as its 16 bytes, dates, times and JSON as their PostgreSQL text form). Strings are length-prefixed, so no two different
//! changes encode alike. A table, or a row's list of column names, equal to the previous one in
//! the same digest is written as one marker byte instead (a batch mostly repeats both): the
//! encoding stays unambiguous and hashes about half the bytes.

use sha2::{Digest as _, Sha256};
use surefoot_core_model::{Change, Operation, Position, Row, TableRef, Value};

use crate::encode::write_text;

/// A SHA-256 digest.
pub(crate) type Digest = [u8; 32];

/// The digest of `changes`, in order.
pub(crate) fn digest(changes: &[Change]) -> Digest {
    Digester::default().digest(changes)
}

/// Computes digests, reusing its buffers from one to the next.
#[derive(Debug, Default)]
pub(crate) struct Digester {
    buf: Vec<u8>,
    text: String,
}

impl Digester {
    /// The digest of `changes`, in order.
    pub(crate) fn digest(&mut self, changes: &[Change]) -> Digest {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut encoder = Encoder {
            hasher: Sha256::default(),
            buf,
            text: std::mem::take(&mut self.text),
            table: None,
            names: None,
        };
        for change in changes {
            encoder.change(change);
            if encoder.buf.len() >= FLUSH_AT {
                encoder.hasher.update(&encoder.buf);
                encoder.buf.clear();
            }
        }
        encoder.hasher.update(&encoder.buf);
        self.buf = encoder.buf;
        self.text = encoder.text;
        encoder.hasher.finalize().into()
    }
}

/// Bytes encoded before they are hashed.
const FLUSH_AT: usize = 8 << 10;

struct Encoder<'c> {
    hasher: Sha256,
    buf: Vec<u8>,
    text: String,
    /// The table of the previous change.
    table: Option<&'c TableRef>,
    /// The previous row whose column names were written.
    names: Option<&'c Row>,
}

impl<'c> Encoder<'c> {
    fn change(&mut self, change: &'c Change) {
        self.position(change.position);
        if self.table == Some(&change.table) {
            self.buf.push(b'=');
        } else {
            self.buf.push(b't');
            self.bytes(change.table.schema.as_bytes());
            self.bytes(change.table.name.as_bytes());
            self.table = Some(&change.table);
        }
        match &change.operation {
            Operation::Insert { after } => {
                self.buf.push(b'I');
                self.row(Some(after));
            }
            Operation::Update { key, before, after } => {
                self.buf.push(b'U');
                self.row(key.as_ref());
                self.row(before.as_ref());
                self.row(Some(after));
            }
            Operation::Delete { key, before } => {
                self.buf.push(b'D');
                self.row(key.as_ref());
                self.row(before.as_ref());
            }
            Operation::Truncate => self.buf.push(b'T'),
        }
    }

    fn position(&mut self, position: Position) {
        let (tag, major, minor) = match position {
            Position::Postgres {
                commit_lsn,
                ordinal,
            } => (b'p', commit_lsn.0, u64::from(ordinal)),
            Position::Snapshot {
                consistent_point,
                row,
            } => (b's', consistent_point.0, row),
            Position::Sequence(n) => (b'q', n, 0),
        };
        self.buf.push(tag);
        self.buf.extend_from_slice(&major.to_le_bytes());
        self.buf.extend_from_slice(&minor.to_le_bytes());
    }

    fn len(&mut self, len: usize) {
        self.buf.extend_from_slice(&(len as u64).to_le_bytes());
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.len(bytes.len());
        self.buf.extend_from_slice(bytes);
    }

    fn row(&mut self, row: Option<&'c Row>) {
        let Some(row) = row else {
            self.buf.push(0);
            return;
        };
        let same_names = self.names.is_some_and(|names| {
            names.len() == row.len()
                && names
                    .columns()
                    .iter()
                    .zip(row.columns())
                    .all(|(a, b)| a.name == b.name)
        });
        if same_names {
            self.buf.push(b'=');
        } else {
            self.buf.push(b'n');
            self.len(row.len());
            for column in row.columns() {
                self.bytes(column.name.as_bytes());
            }
            self.names = Some(row);
        }
        for column in row.columns() {
            self.value(&column.value);
        }
    }

    fn value(&mut self, value: &Value) {
        self.buf.push(tag(value));
        match value {
            Value::Null | Value::Unchanged => {}
            Value::Bool(b) => self.buf.push(u8::from(*b)),
            Value::Int16(n) => self.buf.extend_from_slice(&n.to_le_bytes()),
            Value::Int32(n) => self.buf.extend_from_slice(&n.to_le_bytes()),
            Value::Int64(n) => self.buf.extend_from_slice(&n.to_le_bytes()),
            Value::Float32(n) => self.buf.extend_from_slice(&n.to_bits().to_le_bytes()),
            Value::Float64(n) => self.buf.extend_from_slice(&n.to_bits().to_le_bytes()),
            Value::Numeric(n) => self.bytes(n.as_str().as_bytes()),
            Value::Text(text) => self.bytes(text.as_bytes()),
            Value::Bytes(bytes) => self.bytes(bytes),
            Value::Uuid(uuid) => self.buf.extend_from_slice(uuid.as_bytes()),
            Value::Other { type_name, text } => {
                self.bytes(type_name.as_bytes());
                self.bytes(text.as_bytes());
            }
            Value::Json(_)
            | Value::Date(_)
            | Value::Time(_)
            | Value::Timestamp(_)
            | Value::TimestampTz(_) => {
                // Their text form, as `COPY` gets it.
                let mut text = std::mem::take(&mut self.text);
                text.clear();
                write_text(value, &mut text);
                self.bytes(text.as_bytes());
                self.text = text;
            }
        }
    }
}

/// A byte per kind of value, so that equal text of different types differs.
fn tag(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Unchanged => 1,
        Value::Bool(_) => 2,
        Value::Int16(_) => 3,
        Value::Int32(_) => 4,
        Value::Int64(_) => 5,
        Value::Float32(_) => 6,
        Value::Float64(_) => 7,
        Value::Numeric(_) => 8,
        Value::Text(_) => 9,
        Value::Bytes(_) => 10,
        Value::Json(_) => 11,
        Value::Date(_) => 12,
        Value::Time(_) => 13,
        Value::Timestamp(_) => 14,
        Value::TimestampTz(_) => 15,
        Value::Uuid(_) => 16,
        Value::Other { .. } => 17,
    }
}

#[cfg(test)]
mod tests {
    use surefoot_core_model::TableRef;

    use super::*;

    fn insert(n: u64, value: Value) -> Change {
        let row = Row::new()
            .with("id", Value::Int64(n as i64))
            .with("v", value);
        Change::insert(Position::Sequence(n), TableRef::new("public", "t"), row)
    }

    #[test]
    fn equal_changes_agree_and_any_difference_shows() {
        let a = [insert(1, Value::Text("x".into())), insert(2, Value::Null)];
        assert_eq!(digest(&a), digest(&a.clone()));
        let others = [
            vec![insert(1, Value::Text("y".into())), insert(2, Value::Null)],
            vec![
                insert(1, Value::Text("x".into())),
                insert(2, Value::Unchanged),
            ],
            vec![insert(1, Value::Int32(1)), insert(2, Value::Null)],
            vec![insert(1, Value::Text("x".into()))],
            vec![insert(2, Value::Null), insert(1, Value::Text("x".into()))],
        ];
        for other in others {
            assert_ne!(digest(&a), digest(&other), "{other:?}");
        }
        // Text that spells another value's boundaries does not collide.
        let glued = [insert(1, Value::Text("ab".into()))];
        let apart = [insert(1, Value::Text("a".into()))];
        assert_ne!(digest(&glued), digest(&apart));
    }
}
