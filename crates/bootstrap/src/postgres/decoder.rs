//! A column's value decoder, chosen once per table from the column's type.
//!
//! The common types (integers and text) are decoded directly; when that fails, and for every
//! other type, source-postgres's `parse_text` decodes the value, so a value or an error is
//! exactly what the stream would give for the same text.

use surefoot_core_model::Value;
use surefoot_source_postgres::pgoutput::{TypeNames, ValueParseError, oids, parse_text};

/// How one column's COPY text becomes a [`Value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnDecoder {
    /// `smallint`.
    Int16,
    /// `integer`.
    Int32,
    /// `bigint`.
    Int64,
    /// `text`, `varchar`, `bpchar`, `name`.
    Text,
    /// Any other type, by its oid.
    Other(u32),
}

impl ColumnDecoder {
    /// The decoder for a column of type `type_oid`.
    pub(crate) fn for_type(type_oid: u32) -> Self {
        match type_oid {
            oids::INT2 => Self::Int16,
            oids::INT4 => Self::Int32,
            oids::INT8 => Self::Int64,
            oids::TEXT | oids::VARCHAR | oids::BPCHAR | oids::NAME => Self::Text,
            other => Self::Other(other),
        }
    }

    /// The type this decoder reads.
    fn type_oid(self) -> u32 {
        match self {
            Self::Int16 => oids::INT2,
            Self::Int32 => oids::INT4,
            Self::Int64 => oids::INT8,
            Self::Text => oids::TEXT,
            Self::Other(oid) => oid,
        }
    }

    /// The value of `text` (a column's unescaped COPY text).
    #[inline]
    pub(crate) fn decode(self, text: &[u8], types: &TypeNames) -> Result<Value, ValueParseError> {
        let fast = match self {
            Self::Int16 => decimal(text)
                .and_then(|value| i16::try_from(value).ok())
                .map(Value::Int16),
            Self::Int32 => decimal(text)
                .and_then(|value| i32::try_from(value).ok())
                .map(Value::Int32),
            Self::Int64 => decimal(text).map(Value::Int64),
            Self::Text => std::str::from_utf8(text)
                .ok()
                .map(|text| Value::Text(text.to_owned())),
            Self::Other(_) => None,
        };
        match fast {
            Some(value) => Ok(value),
            None => parse_text(self.type_oid(), text, types),
        }
    }
}

/// `text` as a decimal integer if it is an optional `-` and 1 to 18 ASCII digits (which cannot
/// overflow an `i64`); anything else is left to `parse_text`.
fn decimal(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut value: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(digit - b'0');
    }
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every decoder gives what `parse_text` gives, values and errors alike.
    #[test]
    fn decoders_agree_with_parse_text() {
        let types = TypeNames::new();
        let cases: [(u32, &[u8]); 22] = [
            (oids::INT2, b"-32768"),
            (oids::INT2, b"-32769"),
            (oids::INT2, b"0"),
            (oids::INT4, b"-"),
            (oids::INT4, b"+7"),
            (oids::INT4, b"-0012"),
            (oids::INT8, b"999999999999999999"),
            (oids::INT8, b"9223372036854775807"),
            (oids::INT8, b"9223372036854775808"),
            (oids::INT2, b"32768"),
            (oids::INT4, b"2147483647"),
            (oids::INT4, b"12x"),
            (oids::INT8, b"-9223372036854775808"),
            (oids::INT8, b""),
            (oids::INT8, b"\xff1"),
            (oids::TEXT, b"caf\xc3\xa9"),
            (oids::TEXT, b"\xff"),
            (oids::VARCHAR, b"v"),
            (oids::BPCHAR, b"b  "),
            (oids::NAME, b"n"),
            (oids::BOOL, b"t"),
            (oids::UUID, b"not a uuid"),
        ];
        for (oid, text) in cases {
            let decoder = ColumnDecoder::for_type(oid);
            let ours = decoder.decode(text, &types);
            let theirs = parse_text(oid, text, &types);
            assert_eq!(
                format!("{ours:?}"),
                format!("{theirs:?}"),
                "type {oid}, text {text:?}"
            );
        }
        assert_eq!(
            ColumnDecoder::for_type(oids::BOOL),
            ColumnDecoder::Other(16)
        );
    }
}
