//! Values in PostgreSQL's text input form, so that whole columns travel as one `text[]`
//! parameter and the server casts them with the target column's own input function (the same
//! conversion `COPY ... FROM STDIN` uses).

use std::fmt::Write;

use surefoot_core_model::{Change, Value};

/// The text form of `value`; `None` is SQL NULL. Never called for [`Value::Unchanged`], whose
/// columns are left out of the statement; it maps to NULL defensively.
pub(crate) fn text_form(value: &Value) -> Option<String> {
    let mut text = String::new();
    write_text(value, &mut text).then_some(text)
}

/// Appends the text form of `value` to `out`. Returns `false`, appending nothing, for SQL NULL
/// (and, defensively, for [`Value::Unchanged`]).
pub(crate) fn write_text(value: &Value, out: &mut String) -> bool {
    // Writing to a `String` cannot fail: the `fmt::Result`s below are always `Ok`.
    let _infallible = match value {
        Value::Null | Value::Unchanged => return false,
        Value::Bool(b) => {
            out.push(if *b { 't' } else { 'f' });
            Ok(())
        }
        Value::Int16(n) => write!(out, "{n}"),
        Value::Int32(n) => write!(out, "{n}"),
        Value::Int64(n) => write!(out, "{n}"),
        Value::Float32(n) => write_float(out, f64::from(*n), n),
        Value::Float64(n) => write_float(out, *n, n),
        Value::Numeric(n) => {
            out.push_str(n.as_str());
            Ok(())
        }
        Value::Text(text) | Value::Other { text, .. } => {
            out.push_str(text);
            Ok(())
        }
        Value::Bytes(bytes) => write_bytea_hex(out, bytes),
        Value::Json(json) => write!(out, "{json}"),
        Value::Date(date) => write!(out, "{date}"),
        Value::Time(time) => write!(out, "{time}"),
        Value::Timestamp(ts) => write!(out, "{ts}"),
        Value::TimestampTz(ts) => {
            out.push_str(&ts.to_rfc3339());
            Ok(())
        }
        Value::Uuid(uuid) => write!(out, "{uuid}"),
    };
    true
}

/// Appends `value` as one field of `COPY`'s text format: `\N` for NULL, backslash escapes for
/// backslash, tab, newline and carriage return. `scratch` is reused between calls so that no
/// value allocates.
pub(crate) fn write_copy_field(value: &Value, out: &mut String, scratch: &mut String) {
    match value {
        Value::Text(text) | Value::Other { text, .. } => escape_copy(out, text),
        _ => {
            scratch.clear();
            if write_text(value, scratch) {
                escape_copy(out, scratch);
            } else {
                out.push_str("\\N");
            }
        }
    }
}

fn escape_copy(out: &mut String, text: &str) {
    if !text
        .bytes()
        .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        out.push_str(text);
        return;
    }
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            other => out.push(other),
        }
    }
}

fn write_float(out: &mut String, value: f64, shortest: impl std::fmt::Display) -> std::fmt::Result {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        return write!(out, "{shortest}");
    }
    Ok(())
}

fn write_bytea_hex(out: &mut String, bytes: &[u8]) -> std::fmt::Result {
    out.reserve(2 + bytes.len() * 2);
    out.push_str("\\x");
    for byte in bytes {
        write!(out, "{byte:02x}")?;
    }
    Ok(())
}

/// A rough size of a change's data in bytes, for the batch byte limit.
pub(crate) fn approx_size(change: &Change) -> usize {
    let row_size = |row: &surefoot_core_model::Row| -> usize {
        row.columns()
            .iter()
            .map(|column| column.name.len() + value_size(&column.value))
            .sum()
    };
    change.after().map_or(0, row_size) + change.old_key().map_or(0, row_size) + 32
}

fn value_size(value: &Value) -> usize {
    match value {
        Value::Text(text) | Value::Other { text, .. } => text.len(),
        Value::Bytes(bytes) => bytes.len(),
        Value::Json(json) => json.to_string().len(),
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_match_postgres_input_syntax() {
        assert_eq!(text_form(&Value::Bool(true)).unwrap(), "t");
        assert_eq!(text_form(&Value::Bytes(vec![0, 255])).unwrap(), "\\x00ff");
        assert_eq!(text_form(&Value::Float64(f64::NAN)).unwrap(), "NaN");
        assert_eq!(
            text_form(&Value::Float32(f32::NEG_INFINITY)).unwrap(),
            "-Infinity"
        );
        assert_eq!(text_form(&Value::Float64(0.1)).unwrap(), "0.1");
        assert_eq!(text_form(&Value::Null), None);
        assert_eq!(text_form(&Value::Unchanged), None);
        let json = serde_json::json!({"a": [1, "x"]});
        assert_eq!(text_form(&Value::Json(json)).unwrap(), r#"{"a":[1,"x"]}"#);
    }

    #[test]
    fn copy_fields_escape_and_mark_nulls() {
        let (mut out, mut scratch) = (String::new(), String::new());
        for value in [
            Value::Int64(-7),
            Value::Text("a\tb\\c\nd\re".into()),
            Value::Null,
            Value::Bytes(vec![1]),
        ] {
            write_copy_field(&value, &mut out, &mut scratch);
            out.push('|');
        }
        assert_eq!(out, "-7|a\\tb\\\\c\\nd\\re|\\N|\\\\x01|");
    }
}
