//! TupleData: the column values of one row as pgoutput sends them.

use bytes::Bytes;

use super::cursor::Cursor;
use super::decode_error::{DecodeError, Field};

/// One column's value in a tuple, before it is interpreted by type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    /// `n`: SQL NULL.
    Null,
    /// `u`: an unchanged TOASTed value the server did not send.
    UnchangedToast,
    /// `t`: the value in the type's text output format (bytes as sent, not yet checked as UTF-8).
    Text(Bytes),
    /// `b`: the value in the type's binary format (surefoot requests text, so this is kept as is).
    Binary(Bytes),
}

impl TupleValue {
    /// The kind byte of this value on the wire.
    pub fn kind_byte(&self) -> u8 {
        match self {
            TupleValue::Null => b'n',
            TupleValue::UnchangedToast => b'u',
            TupleValue::Text(_) => b't',
            TupleValue::Binary(_) => b'b',
        }
    }
}

/// The column values of one row, in the relation's column order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TupleData {
    /// One value per column.
    pub values: Vec<TupleValue>,
}

/// Reads one TupleData: an `Int16` column count, then a kind byte (and for `t`/`b` a length and
/// the bytes) per column.
pub(crate) fn read_tuple(cursor: &mut Cursor) -> Result<TupleData, DecodeError> {
    let count = cursor.u16(Field::ColumnCount)?;
    // Every column takes at least one byte: never reserve more than the input can hold.
    let mut values = Vec::with_capacity(usize::from(count).min(cursor.remaining()));
    for index in 0..count {
        values.push(read_value(cursor, index)?);
    }
    Ok(TupleData { values })
}

fn read_value(cursor: &mut Cursor, index: u16) -> Result<TupleValue, DecodeError> {
    match cursor.u8(Field::ValueKind(index))? {
        b'n' => Ok(TupleValue::Null),
        b'u' => Ok(TupleValue::UnchangedToast),
        b't' => Ok(TupleValue::Text(read_counted_bytes(cursor, index)?)),
        b'b' => Ok(TupleValue::Binary(read_counted_bytes(cursor, index)?)),
        other => Err(cursor.unexpected(Field::ValueKind(index), other)),
    }
}

fn read_counted_bytes(cursor: &mut Cursor, index: u16) -> Result<Bytes, DecodeError> {
    let len = cursor.length(Field::ValueLength(index))?;
    cursor.bytes(Field::Value(index), len)
}
