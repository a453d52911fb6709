//! Property tests of the value parser: a typed value, rendered as PostgreSQL writes it, parses
//! back to the same value, for every supported type.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use surefoot_core_model::{Numeric, Value};

use super::render::{render, render_bytea_escape, render_timestamptz};
use crate::pgoutput::cursor::timestamp_from_postgres_micros;
use crate::pgoutput::{Oid, TypeNames, oids, parse_text};

/// Days chrono's dates hold comfortably on either side of 1970.
const DAY_RANGE: i64 = 90_000_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;

fn date() -> impl Strategy<Value = NaiveDate> {
    (-DAY_RANGE..DAY_RANGE).prop_map(|days| {
        NaiveDate::from_num_days_from_ce_opt(i32::try_from(days).unwrap_or(0))
            .unwrap_or_else(|| panic!("day {days} out of range"))
    })
}

fn time() -> impl Strategy<Value = NaiveTime> {
    (0..MICROS_PER_DAY).prop_map(|micros| {
        let seconds = u32::try_from(micros / 1_000_000).unwrap_or(0);
        let nanos = u32::try_from(micros % 1_000_000 * 1_000).unwrap_or(0);
        NaiveTime::from_num_seconds_from_midnight_opt(seconds, nanos)
            .unwrap_or_else(|| panic!("{micros} µs is not a time of day"))
    })
}

fn timestamp_tz() -> impl Strategy<Value = DateTime<Utc>> {
    (-6_000_000_000_000_000_000..6_000_000_000_000_000_000i64).prop_map(|micros| {
        timestamp_from_postgres_micros(micros).unwrap_or_else(|| panic!("{micros} out of range"))
    })
}

fn numeric() -> impl Strategy<Value = Numeric> {
    let finite =
        ("-?[0-9]{1,40}", proptest::option::of("[0-9]{0,30}")).prop_map(|(whole, fraction)| {
            match fraction {
                Some(fraction) => format!("{whole}.{fraction}"),
                None => whole,
            }
        });
    prop_oneof![
        8 => finite,
        1 => Just("NaN".to_owned()),
        1 => Just("Infinity".to_owned()),
        1 => Just("-Infinity".to_owned()),
    ]
    .prop_map(|text| {
        text.parse()
            .unwrap_or_else(|_| panic!("{text} is not numeric"))
    })
}

fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,8}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            btree_map(".{0,6}", inner, 0..4)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

fn float64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
    ]
}

fn float32() -> impl Strategy<Value = f32> {
    prop_oneof![
        any::<f32>(),
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY)
    ]
}

/// A typed value and the OID of a column type that holds it.
fn typed_value() -> impl Strategy<Value = (Oid, Value)> {
    prop_oneof![
        any::<bool>().prop_map(|v| (oids::BOOL, Value::Bool(v))),
        any::<i16>().prop_map(|v| (oids::INT2, Value::Int16(v))),
        any::<i32>().prop_map(|v| (oids::INT4, Value::Int32(v))),
        any::<i64>().prop_map(|v| (oids::INT8, Value::Int64(v))),
        float32().prop_map(|v| (oids::FLOAT4, Value::Float32(v))),
        float64().prop_map(|v| (oids::FLOAT8, Value::Float64(v))),
        numeric().prop_map(|v| (oids::NUMERIC, Value::Numeric(v))),
        (
            prop::sample::select(vec![oids::TEXT, oids::VARCHAR, oids::BPCHAR, oids::NAME]),
            ".{0,24}"
        )
            .prop_map(|(oid, v)| (oid, Value::Text(v))),
        vec(any::<u8>(), 0..48).prop_map(|v| (oids::BYTEA, Value::Bytes(v))),
        (prop::sample::select(vec![oids::JSON, oids::JSONB]), json())
            .prop_map(|(oid, v)| (oid, Value::Json(v))),
        date().prop_map(|v| (oids::DATE, Value::Date(v))),
        time().prop_map(|v| (oids::TIME, Value::Time(v))),
        (date(), time())
            .prop_map(|(d, t)| (oids::TIMESTAMP, Value::Timestamp(NaiveDateTime::new(d, t)))),
        timestamp_tz().prop_map(|v| (oids::TIMESTAMPTZ, Value::TimestampTz(v))),
        any::<u128>().prop_map(|v| (oids::UUID, Value::Uuid(uuid::Uuid::from_u128(v)))),
    ]
}

/// Equality that treats NaN as equal to NaN, as the text round trip does.
fn same_value(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Float32(a), Value::Float32(b)) => {
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
        }
        (Value::Float64(a), Value::Float64(b)) => {
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
        }
        _ => left == right,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn every_supported_type_round_trips_through_postgres_text((oid, value) in typed_value()) {
        let text = render(&value);
        let parsed = parse_text(oid, text.as_bytes(), &TypeNames::new());
        let parsed = parsed.map_err(|error| TestCaseError::fail(format!("{text:?}: {error}")))?;
        prop_assert!(same_value(&parsed, &value), "{:?} -> {:?} -> {:?}", value, text, parsed);
    }

    #[test]
    fn timestamptz_in_any_session_offset_is_the_same_instant(
        instant in timestamp_tz(),
        offset in -57_599..57_600i32,
    ) {
        let text = render_timestamptz(instant, offset);
        let parsed = parse_text(oids::TIMESTAMPTZ, text.as_bytes(), &TypeNames::new());
        prop_assert!(matches!(parsed, Ok(Value::TimestampTz(back)) if back == instant), "{}", text);
    }

    #[test]
    fn bytea_in_escape_form_round_trips(bytes in vec(any::<u8>(), 0..48)) {
        let text = render_bytea_escape(&bytes);
        let parsed = parse_text(oids::BYTEA, text.as_bytes(), &TypeNames::new());
        prop_assert!(matches!(parsed, Ok(Value::Bytes(back)) if back == bytes), "{}", text);
    }

    #[test]
    fn uninterpreted_types_keep_their_text_and_name(oid in 0..100_000u32, text in ".{0,16}") {
        let types = TypeNames::new();
        let name = types.name(oid).into_owned();
        let value = parse_text(oid, text.as_bytes(), &types);
        match value {
            Ok(Value::Other { type_name, text: kept }) => {
                prop_assert_eq!(type_name, name);
                prop_assert_eq!(kept, text);
            }
            // Interpreted types: any outcome but a panic, and never an `Other` posing as text.
            Ok(_) | Err(_) => prop_assert!(interpreted(oid), "{oid} was interpreted"),
        }
    }
}

fn interpreted(oid: Oid) -> bool {
    [
        oids::BOOL,
        oids::BYTEA,
        oids::NAME,
        oids::INT8,
        oids::INT2,
        oids::INT4,
        oids::TEXT,
        oids::JSON,
        oids::FLOAT4,
        oids::FLOAT8,
        oids::BPCHAR,
        oids::VARCHAR,
        oids::DATE,
        oids::TIME,
        oids::TIMESTAMP,
        oids::TIMESTAMPTZ,
        oids::NUMERIC,
        oids::UUID,
        oids::JSONB,
    ]
    .contains(&oid)
}
