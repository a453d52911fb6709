//! Typed column values.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One column's value.
///
/// [`Value::Unchanged`] is not a value of the column: it says the source did not send the value
/// because it did not change (PostgreSQL omits unchanged TOASTed columns from updates). A consumer
/// must leave the stored value as it is; it must never write a placeholder in its place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Value {
    /// SQL NULL.
    Null,
    /// The source did not send this column because it did not change (unchanged TOAST).
    Unchanged,
    /// `boolean`.
    Bool(bool),
    /// `smallint`.
    Int16(i16),
    /// `integer`.
    Int32(i32),
    /// `bigint`.
    Int64(i64),
    /// `real`.
    Float32(f32),
    /// `double precision`.
    Float64(f64),
    /// `numeric`, kept as exact decimal text.
    Numeric(Numeric),
    /// `text`, `varchar`, `char`, `name`.
    Text(String),
    /// `bytea`.
    Bytes(Vec<u8>),
    /// `json` and `jsonb`.
    Json(serde_json::Value),
    /// `date`.
    Date(NaiveDate),
    /// `time` (without time zone).
    Time(NaiveTime),
    /// `timestamp` (without time zone).
    Timestamp(NaiveDateTime),
    /// `timestamptz`, normalised to UTC.
    TimestampTz(DateTime<Utc>),
    /// `uuid`.
    Uuid(Uuid),
    /// A type surefoot does not interpret, kept as the server's text with the type's name.
    Other {
        /// The type's name, e.g. `inet` or `int4[]`.
        type_name: String,
        /// The value as the server wrote it in text form.
        text: String,
    },
}

impl Value {
    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// True for [`Value::Unchanged`].
    pub fn is_unchanged(&self) -> bool {
        matches!(self, Value::Unchanged)
    }
}

/// An exact decimal number in PostgreSQL's text form (`-12.3400`, `NaN`, `Infinity`).
///
/// Kept as text so that no digit is lost to a binary float.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Numeric(String);

/// Why text is not a decimal number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a decimal number (expected digits with an optional sign and fraction, NaN or Infinity)"
)]
pub struct NumericParseError {
    /// The rejected text.
    pub text: String,
}

impl Numeric {
    /// The decimal text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Numeric {
    type Err = NumericParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if is_decimal_text(text) {
            Ok(Numeric(text.to_owned()))
        } else {
            Err(NumericParseError {
                text: text.to_owned(),
            })
        }
    }
}

impl TryFrom<String> for Numeric {
    type Error = NumericParseError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        if is_decimal_text(&text) {
            Ok(Numeric(text))
        } else {
            Err(NumericParseError { text })
        }
    }
}

impl From<Numeric> for String {
    fn from(numeric: Numeric) -> Self {
        numeric.0
    }
}

impl fmt::Display for Numeric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_decimal_text(text: &str) -> bool {
    if matches!(text, "NaN" | "Infinity" | "-Infinity") {
        return true;
    }
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    let has_digit = !whole.is_empty() || fraction.is_some_and(|part| !part.is_empty());
    has_digit && digits(whole) && fraction.is_none_or(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_accepts_postgres_text_and_keeps_every_digit() {
        for text in [
            "0",
            "-12.3400",
            ".5",
            "5.",
            "NaN",
            "Infinity",
            "-Infinity",
            "123456789012345678901234567890.000000000000000000001",
        ] {
            assert_eq!(text.parse::<Numeric>().unwrap().as_str(), text);
        }
        for text in ["", "-", ".", "1e5", "1.2.3", "abc", "+1", " 1"] {
            assert!(text.parse::<Numeric>().is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn values_serialise_with_their_type() {
        let json = serde_json::to_string(&Value::Int64(7)).unwrap();
        assert_eq!(json, r#"{"type":"int64","value":7}"#);
        let unchanged = serde_json::to_string(&Value::Unchanged).unwrap();
        assert_eq!(unchanged, r#"{"type":"unchanged"}"#);
        let back: Value = serde_json::from_str(&unchanged).unwrap();
        assert!(back.is_unchanged());
        let bad = serde_json::from_str::<Value>(r#"{"type":"numeric","value":"1x"}"#);
        assert!(bad.is_err());
    }
}
