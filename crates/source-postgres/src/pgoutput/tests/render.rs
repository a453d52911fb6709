//! PostgreSQL's text output of typed values (DateStyle ISO), written independently of the
//! parser so that round trips test it.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Utc};
use surefoot_core_model::Value;

/// The text PostgreSQL writes for `value`.
pub(crate) fn render(value: &Value) -> String {
    match value {
        Value::Bool(value) => if *value { "t" } else { "f" }.to_owned(),
        Value::Int16(value) => value.to_string(),
        Value::Int32(value) => value.to_string(),
        Value::Int64(value) => value.to_string(),
        Value::Float32(value) => render_float4(*value),
        Value::Float64(value) => render_float(*value),
        Value::Numeric(value) => value.to_string(),
        Value::Text(value) => value.clone(),
        Value::Bytes(bytes) => render_bytea_hex(bytes),
        Value::Json(json) => json.to_string(),
        Value::Date(date) => render_date(*date),
        Value::Time(time) => render_time(*time),
        Value::Timestamp(timestamp) => render_timestamp(*timestamp),
        Value::TimestampTz(timestamp) => render_timestamptz(*timestamp, 0),
        Value::Uuid(uuid) => uuid.hyphenated().to_string(),
        Value::Null | Value::Unchanged | Value::Other { .. } => {
            panic!("{value:?} has no text form")
        }
    }
}

/// `float8out`: shortest exact digits, exponent form outside 1e-4 ..= 1e15.
fn render_float(value: f64) -> String {
    let magnitude = value.abs();
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else if magnitude != 0.0 && !(1e-4..1e15).contains(&magnitude) {
        postgres_exponent(&format!("{value:e}"))
    } else {
        value.to_string()
    }
}

/// `float4out`: the same with the `real`'s own shortest digits.
fn render_float4(value: f32) -> String {
    let magnitude = value.abs();
    if value.is_finite() && magnitude != 0.0 && !(1e-4..1e15).contains(&magnitude) {
        postgres_exponent(&format!("{value:e}"))
    } else if value.is_finite() {
        value.to_string()
    } else {
        render_float(f64::from(value))
    }
}

/// Rust's `1.5e-7` as PostgreSQL's `1.5e-07`.
fn postgres_exponent(text: &str) -> String {
    let (mantissa, exponent) = text.split_once('e').unwrap_or((text, "0"));
    let (sign, digits) = match exponent.strip_prefix('-') {
        Some(digits) => ('-', digits),
        None => ('+', exponent),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

pub(crate) fn render_bytea_hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(2 + bytes.len() * 2);
    text.push_str("\\x");
    for byte in bytes {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

pub(crate) fn render_bytea_escape(bytes: &[u8]) -> String {
    let mut text = String::new();
    for &byte in bytes {
        match byte {
            b'\\' => text.push_str("\\\\"),
            0x20..=0x7e => text.push(char::from(byte)),
            _ => {
                text.push_str(&format!("\\{byte:03o}"));
            }
        }
    }
    text
}

fn render_date(date: NaiveDate) -> String {
    let year = date.year();
    let (shown, era) = if year <= 0 {
        (1 - year, " BC")
    } else {
        (year, "")
    };
    format!("{shown:04}-{:02}-{:02}{era}", date.month(), date.day())
}

fn render_time(time: NaiveTime) -> String {
    let mut text = format!(
        "{:02}:{:02}:{:02}",
        time.hour(),
        time.minute(),
        time.second()
    );
    let micros = time.nanosecond() / 1_000;
    if micros != 0 {
        let fraction = format!("{micros:06}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text
}

fn render_timestamp(timestamp: NaiveDateTime) -> String {
    let date = render_date(timestamp.date());
    let time = render_time(timestamp.time());
    match date.strip_suffix(" BC") {
        Some(date) => format!("{date} {time} BC"),
        None => format!("{date} {time}"),
    }
}

/// `timestamptz` as a session in a zone `offset_seconds` east of UTC writes it.
pub(crate) fn render_timestamptz(timestamp: DateTime<Utc>, offset_seconds: i32) -> String {
    let local = timestamp.naive_utc() + TimeDelta::seconds(i64::from(offset_seconds));
    let with_time = render_timestamp(local);
    let (body, era) = match with_time.strip_suffix(" BC") {
        Some(body) => (body.to_owned(), " BC"),
        None => (with_time, ""),
    };
    format!("{body}{}{era}", render_offset(offset_seconds))
}

fn render_offset(offset_seconds: i32) -> String {
    let sign = if offset_seconds < 0 { '-' } else { '+' };
    let total = offset_seconds.unsigned_abs();
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    let mut text = format!("{sign}{hours:02}");
    if minutes != 0 || seconds != 0 {
        text.push_str(&format!(":{minutes:02}"));
    }
    if seconds != 0 {
        text.push_str(&format!(":{seconds:02}"));
    }
    text
}
