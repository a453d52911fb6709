//! Text-format column values into typed [`Value`]s, by type OID.
//!
//! The text is what the type's output function writes with the session settings the source
//! uses (`DateStyle=ISO`, `bytea_output=hex`). A value that is not in its type's form is a
//! [`ValueParseError`], never passed on as text. Types surefoot does not interpret, and values of
//! interpreted types that the Rust types cannot hold (`infinity` dates, `24:00:00`), become
//! [`Value::Other`] with the type's name and the text exactly as sent.

use std::num::{ParseFloatError, ParseIntError};
use std::str::Utf8Error;

use surefoot_core_model::{Numeric, NumericParseError, Value};

use super::bytea::parse_bytea;
use super::messages::Oid;
use super::temporal::{self, Temporal};
use super::tuple::TupleValue;
use super::type_names::{TypeNames, oids};

/// Why a column's text is not a value of its type.
#[derive(Debug, thiserror::Error)]
pub enum ValueParseError {
    /// The text is not UTF-8.
    #[error("the value is not valid UTF-8")]
    InvalidUtf8 {
        /// Where the UTF-8 is broken.
        #[source]
        source: Utf8Error,
    },
    /// The text is not in the type's output form.
    #[error("`{}` is not in the type's text form", excerpt(text))]
    Malformed {
        /// The rejected text.
        text: String,
    },
    /// The text is not an integer of the column's width.
    #[error("`{}` is not an integer of this width", excerpt(text))]
    Integer {
        /// The rejected text.
        text: String,
        /// Why it did not parse.
        #[source]
        source: ParseIntError,
    },
    /// The text is not a floating-point number.
    #[error("`{}` is not a floating-point number", excerpt(text))]
    Float {
        /// The rejected text.
        text: String,
        /// Why it did not parse.
        #[source]
        source: ParseFloatError,
    },
    /// The text is not a decimal number.
    #[error("not a numeric value")]
    Numeric {
        /// Why it did not parse (holds the text).
        #[source]
        source: NumericParseError,
    },
    /// The text is not JSON.
    #[error("not a JSON document")]
    Json {
        /// Where the JSON is broken.
        #[source]
        source: serde_json::Error,
    },
    /// The text is not a UUID.
    #[error("`{}` is not a UUID", excerpt(text))]
    Uuid {
        /// The rejected text.
        text: String,
        /// Why it did not parse.
        #[source]
        source: uuid::Error,
    },
    /// The server sent the value in binary format, which surefoot never requests.
    #[error("the value came in binary format ({len} bytes), but text format was requested")]
    BinaryFormat {
        /// The length of the binary value.
        len: usize,
    },
}

/// At most 64 characters of `text`, for messages; the error keeps all of it.
fn excerpt(text: &str) -> &str {
    text.char_indices()
        .nth(64)
        .map_or(text, |(end, _)| &text[..end])
}

/// The typed value of one tuple column of type `type_oid`.
pub fn parse_tuple_value(
    type_oid: Oid,
    value: &TupleValue,
    types: &TypeNames,
) -> Result<Value, ValueParseError> {
    match value {
        TupleValue::Null => Ok(Value::Null),
        TupleValue::UnchangedToast => Ok(Value::Unchanged),
        TupleValue::Text(bytes) => parse_text(type_oid, bytes, types),
        TupleValue::Binary(bytes) => Err(ValueParseError::BinaryFormat { len: bytes.len() }),
    }
}

/// The typed value of `text`, the text output of a value of type `type_oid`.
pub fn parse_text(type_oid: Oid, text: &[u8], types: &TypeNames) -> Result<Value, ValueParseError> {
    let text =
        std::str::from_utf8(text).map_err(|source| ValueParseError::InvalidUtf8 { source })?;
    let value = match type_oid {
        oids::BOOL => Value::Bool(parse_bool(text)?),
        oids::INT2 => Value::Int16(parse_integer(text)?),
        oids::INT4 => Value::Int32(parse_integer(text)?),
        oids::INT8 => Value::Int64(parse_integer(text)?),
        oids::FLOAT4 => Value::Float32(parse_float(text)?),
        oids::FLOAT8 => Value::Float64(parse_float(text)?),
        oids::NUMERIC => Value::Numeric(parse_numeric(text)?),
        oids::TEXT | oids::VARCHAR | oids::BPCHAR | oids::NAME => Value::Text(text.to_owned()),
        oids::BYTEA => Value::Bytes(parse_bytea(text).ok_or_else(|| malformed(text))?),
        oids::JSON | oids::JSONB => Value::Json(parse_json(text)?),
        oids::UUID => Value::Uuid(parse_uuid(text)?),
        oids::DATE => temporal_value(
            temporal::parse_date(text),
            Value::Date,
            type_oid,
            text,
            types,
        )?,
        oids::TIME => temporal_value(
            temporal::parse_time(text),
            Value::Time,
            type_oid,
            text,
            types,
        )?,
        oids::TIMESTAMP => temporal_value(
            temporal::parse_timestamp(text),
            Value::Timestamp,
            type_oid,
            text,
            types,
        )?,
        oids::TIMESTAMPTZ => temporal_value(
            temporal::parse_timestamptz(text),
            Value::TimestampTz,
            type_oid,
            text,
            types,
        )?,
        _ => other(type_oid, text, types),
    };
    Ok(value)
}

fn other(type_oid: Oid, text: &str, types: &TypeNames) -> Value {
    Value::Other {
        type_name: types.name(type_oid).into_owned(),
        text: text.to_owned(),
    }
}

fn malformed(text: &str) -> ValueParseError {
    ValueParseError::Malformed {
        text: text.to_owned(),
    }
}

fn temporal_value<T>(
    parsed: Option<Temporal<T>>,
    wrap: fn(T) -> Value,
    type_oid: Oid,
    text: &str,
    types: &TypeNames,
) -> Result<Value, ValueParseError> {
    match parsed {
        Some(Temporal::Value(value)) => Ok(wrap(value)),
        Some(Temporal::Special) => Ok(other(type_oid, text, types)),
        None => Err(malformed(text)),
    }
}

fn parse_bool(text: &str) -> Result<bool, ValueParseError> {
    match text {
        "t" => Ok(true),
        "f" => Ok(false),
        _ => Err(malformed(text)),
    }
}

fn parse_integer<T: std::str::FromStr<Err = ParseIntError>>(
    text: &str,
) -> Result<T, ValueParseError> {
    text.parse().map_err(|source| ValueParseError::Integer {
        text: text.to_owned(),
        source,
    })
}

/// PostgreSQL writes `NaN`, `Infinity` and `-Infinity`; Rust's parser reads those too.
fn parse_float<T: std::str::FromStr<Err = ParseFloatError>>(
    text: &str,
) -> Result<T, ValueParseError> {
    text.parse().map_err(|source| ValueParseError::Float {
        text: text.to_owned(),
        source,
    })
}

fn parse_numeric(text: &str) -> Result<Numeric, ValueParseError> {
    text.parse()
        .map_err(|source| ValueParseError::Numeric { source })
}

fn parse_json(text: &str) -> Result<serde_json::Value, ValueParseError> {
    serde_json::from_str(text).map_err(|source| ValueParseError::Json { source })
}

fn parse_uuid(text: &str) -> Result<uuid::Uuid, ValueParseError> {
    uuid::Uuid::try_parse(text).map_err(|source| ValueParseError::Uuid {
        text: text.to_owned(),
        source,
    })
}
