//! Unit tests of the value parser: PostgreSQL's exact output forms, special values, type names
//! and rejected text.

use bytes::Bytes;
use chrono::{NaiveDate, TimeZone, Utc};
use surefoot_core_model::Value;

use crate::pgoutput::{
    Oid, TupleValue, TypeInfo, TypeNames, ValueParseError, built_in_type_name, oids, parse_text,
    parse_tuple_value,
};

fn parse(oid: Oid, text: &str) -> Result<Value, ValueParseError> {
    parse_text(oid, text.as_bytes(), &TypeNames::new())
}

fn other(type_name: &str, text: &str) -> Value {
    Value::Other {
        type_name: type_name.to_owned(),
        text: text.to_owned(),
    }
}

#[test]
fn postgres_output_forms_parse() {
    let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
    let cases = [
        (oids::BOOL, "t", Value::Bool(true)),
        (oids::FLOAT8, "1e+100", Value::Float64(1e100)),
        (oids::FLOAT8, "-Infinity", Value::Float64(f64::NEG_INFINITY)),
        (oids::FLOAT4, "1.5e-07", Value::Float32(1.5e-7)),
        (
            oids::NUMERIC,
            "-12.3400",
            Value::Numeric("-12.3400".parse().unwrap()),
        ),
        (
            oids::BYTEA,
            "\\xdeadbeef",
            Value::Bytes(vec![0xde, 0xad, 0xbe, 0xef]),
        ),
        (
            oids::JSONB,
            r#"{"a": [1, 2]}"#,
            Value::Json(serde_json::json!({"a": [1, 2]})),
        ),
        (oids::BPCHAR, "ab  ", Value::Text("ab  ".to_owned())),
        (oids::DATE, "2024-01-02", Value::Date(date(2024, 1, 2))),
        (oids::DATE, "0001-01-01 BC", Value::Date(date(0, 1, 1))),
        (
            oids::TIMESTAMP,
            "2024-01-02 03:04:05.5",
            Value::Timestamp(date(2024, 1, 2).and_hms_milli_opt(3, 4, 5, 500).unwrap()),
        ),
        (
            oids::TIMESTAMPTZ,
            "2024-01-02 03:04:05.123456+00",
            Value::TimestampTz(
                Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap()
                    + chrono::TimeDelta::microseconds(123_456),
            ),
        ),
        (
            oids::TIMESTAMPTZ,
            "2024-01-02 08:34:05+05:30",
            Value::TimestampTz(Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap()),
        ),
        (
            oids::UUID,
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            Value::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".parse().unwrap()),
        ),
    ];
    for (oid, text, expected) in cases {
        assert_eq!(parse(oid, text).unwrap(), expected, "{text}");
    }
    assert!(matches!(parse(oids::FLOAT8, "NaN"), Ok(Value::Float64(v)) if v.is_nan()));
}

#[test]
fn values_chrono_cannot_hold_are_kept_as_text_with_their_type() {
    let cases = [
        (oids::DATE, "infinity", "date"),
        (oids::DATE, "-infinity", "date"),
        (oids::TIME, "24:00:00", "time"),
        (oids::TIMESTAMP, "infinity", "timestamp"),
        (oids::TIMESTAMPTZ, "-infinity", "timestamptz"),
        (oids::DATE, "5874897-12-31", "date"),
    ];
    for (oid, text, name) in cases {
        assert_eq!(parse(oid, text).unwrap(), other(name, text));
    }
}

#[test]
fn other_types_are_named_from_type_messages_built_ins_or_oid() {
    assert_eq!(
        parse(869, "10.0.0.1/8").unwrap(),
        other("inet", "10.0.0.1/8")
    );
    assert_eq!(parse(1007, "{1,2}").unwrap(), other("int4[]", "{1,2}"));
    assert_eq!(parse(99_999, "x").unwrap(), other("oid:99999", "x"));
    let mut types = TypeNames::new();
    types.learn(&TypeInfo {
        id: 99_999,
        namespace: "public".to_owned(),
        name: "mood".to_owned(),
    });
    types.learn(&TypeInfo {
        id: 99_998,
        namespace: "pg_catalog".to_owned(),
        name: "thing".to_owned(),
    });
    let mood = parse_text(99_999, b"happy", &types).unwrap();
    assert_eq!(mood, other("public.mood", "happy"));
    assert_eq!(types.name(99_998), "thing");
    types.clear();
    assert_eq!(types.name(99_999), "oid:99999");
    assert_eq!(built_in_type_name(oids::JSONB), Some("jsonb"));
    assert_eq!(built_in_type_name(12), None);
}

#[test]
fn text_that_does_not_parse_for_its_type_is_an_error() {
    let rejected = [
        (oids::BOOL, "true"),
        (oids::INT2, "70000"),
        (oids::INT4, "1.5"),
        (oids::INT8, ""),
        (oids::FLOAT8, "one"),
        (oids::FLOAT4, "1,5"),
        (oids::NUMERIC, "1e5"),
        (oids::BYTEA, "\\xabc"),
        (oids::JSON, "{"),
        (oids::DATE, "01/02/2024"),
        (oids::TIME, "3pm"),
        (oids::TIMESTAMP, "Tue Jan 02 03:04:05 2024"),
        (oids::TIMESTAMPTZ, "2024-01-02 03:04:05 PST"),
        (oids::UUID, "not-a-uuid"),
    ];
    for (oid, text) in rejected {
        let error = parse(oid, text).expect_err(text);
        assert!(!error.to_string().is_empty());
        let has_source = std::error::Error::source(&error).is_some();
        let expects_source = !matches!(error, ValueParseError::Malformed { .. });
        assert_eq!(has_source, expects_source, "{error:?}");
    }
    let utf8 = parse_text(oids::TEXT, b"\xff", &TypeNames::new()).unwrap_err();
    assert!(matches!(utf8, ValueParseError::InvalidUtf8 { .. }));
    assert!(utf8.to_string().contains("UTF-8"));
}

#[test]
fn error_messages_quote_at_most_64_characters() {
    let long = "x".repeat(1_000);
    let error = parse(oids::BOOL, &long).unwrap_err();
    let message = error.to_string();
    assert!(message.len() < 120, "{message}");
    let ValueParseError::Malformed { text } = error else {
        panic!("not malformed");
    };
    assert_eq!(text, long);
}

#[test]
fn tuple_values_map_null_unchanged_text_and_reject_binary() {
    let types = TypeNames::new();
    let parse = |value: TupleValue| parse_tuple_value(oids::INT4, &value, &types);
    assert_eq!(parse(TupleValue::Null).unwrap(), Value::Null);
    assert_eq!(parse(TupleValue::UnchangedToast).unwrap(), Value::Unchanged);
    let text = TupleValue::Text(Bytes::from_static(b"7"));
    assert_eq!(parse(text).unwrap(), Value::Int32(7));
    let binary = parse(TupleValue::Binary(Bytes::from_static(&[0, 0, 0, 7])));
    assert!(matches!(
        binary,
        Err(ValueParseError::BinaryFormat { len: 4 })
    ));
    assert!(binary.unwrap_err().to_string().contains("binary format"));
}
