//! Values in PostgreSQL's text input form, so that whole columns travel as one `text[]`
//! parameter and the server casts them with the target column's own input function (the same
//! conversion `COPY ... FROM STDIN` uses).

use std::fmt::Write;

use surefoot_core_model::{Change, Value};

/// The text form of `value`; `None` is SQL NULL. Never called for [`Value::Unchanged`], whose
/// columns are left out of the statement; it maps to NULL defensively.
pub(crate) fn text_form(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null | Value::Unchanged => return None,
        Value::Bool(b) => if *b { "t" } else { "f" }.to_owned(),
        Value::Int16(n) => n.to_string(),
        Value::Int32(n) => n.to_string(),
        Value::Int64(n) => n.to_string(),
        Value::Float32(n) => float_text(f64::from(*n), n.to_string()),
        Value::Float64(n) => float_text(*n, n.to_string()),
        Value::Numeric(n) => n.as_str().to_owned(),
        Value::Text(text) => text.clone(),
        Value::Bytes(bytes) => bytea_hex(bytes),
        Value::Json(json) => json.to_string(),
        Value::Date(date) => date.to_string(),
        Value::Time(time) => time.to_string(),
        Value::Timestamp(ts) => ts.to_string(),
        Value::TimestampTz(ts) => ts.to_rfc3339(),
        Value::Uuid(uuid) => uuid.to_string(),
        Value::Other { text, .. } => text.clone(),
    })
}

fn float_text(value: f64, shortest: String) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else {
        shortest
    }
}

fn bytea_hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(2 + bytes.len() * 2);
    text.push_str("\\x");
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ignored = write!(text, "{byte:02x}");
    }
    text
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
}
