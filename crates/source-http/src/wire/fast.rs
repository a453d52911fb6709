//! The typed path for bodies that are valid, which is nearly all of them: serde straight into
//! rows, with no intermediate JSON tree per change. It answers only "valid, here are the
//! changes" or "not sure"; the field-by-field validation in the parent module names the problems.

use std::fmt;

use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;
use surefoot_core_model::{Row, Value};

use super::{Framing, Op, PostedChange, operation, table_ref, value_of};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Typed {
    table: String,
    op: Op,
    #[serde(default)]
    after: Option<TypedRow>,
    #[serde(default)]
    key: Option<TypedRow>,
    #[serde(default)]
    before: Option<TypedRow>,
}

/// A row of at least one column, no column name empty.
struct TypedRow(Row);

impl<'de> Deserialize<'de> for TypedRow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RowVisitor)
    }
}

struct RowVisitor;

impl<'de> Visitor<'de> for RowVisitor {
    type Value = TypedRow;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of column values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TypedRow, A::Error> {
        let mut row = Row::with_capacity(map.size_hint().unwrap_or(4));
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if name.is_empty() {
                return Err(serde::de::Error::custom("empty column name"));
            }
            let TypedValue(value) = map.next_value()?;
            row.push(name.as_ref(), value);
        }
        if row.is_empty() {
            return Err(serde::de::Error::custom("empty row"));
        }
        Ok(TypedRow(row))
    }
}

/// A column value read straight from the JSON token, as [`value_of`] maps it: scalars without
/// building a JSON tree, arrays and objects as [`Value::Json`].
struct TypedValue(Value);

impl<'de> Deserialize<'de> for TypedValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = TypedValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<TypedValue, E> {
        Ok(TypedValue(Value::Null))
    }

    fn visit_bool<E>(self, flag: bool) -> Result<TypedValue, E> {
        Ok(TypedValue(Value::Bool(flag)))
    }

    fn visit_i64<E>(self, number: i64) -> Result<TypedValue, E> {
        Ok(TypedValue(Value::Int64(number)))
    }

    fn visit_u64<E>(self, number: u64) -> Result<TypedValue, E> {
        Ok(TypedValue(value_of(Json::from(number))))
    }

    fn visit_f64<E>(self, number: f64) -> Result<TypedValue, E> {
        Ok(TypedValue(value_of(Json::from(number))))
    }

    fn visit_str<E>(self, text: &str) -> Result<TypedValue, E> {
        Ok(TypedValue(Value::Text(text.to_owned())))
    }

    fn visit_string<E>(self, text: String) -> Result<TypedValue, E> {
        Ok(TypedValue(Value::Text(text)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<TypedValue, A::Error> {
        let json = Json::deserialize(SeqAccessDeserializer::new(seq))?;
        Ok(TypedValue(Value::Json(json)))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TypedValue, A::Error> {
        let json = Json::deserialize(MapAccessDeserializer::new(map))?;
        Ok(TypedValue(Value::Json(json)))
    }
}

/// The changes of a valid body; `None` when anything is wrong (or merely unusual).
pub(super) fn parse(body: &[u8], framing: Framing) -> Option<Vec<PostedChange>> {
    match framing {
        Framing::Single => Some(vec![convert(serde_json::from_slice(body).ok()?)?]),
        Framing::Array => {
            let typed: Vec<Typed> = serde_json::from_slice(body).ok()?;
            if typed.is_empty() {
                return None;
            }
            typed.into_iter().map(convert).collect()
        }
        Framing::Ndjson => {
            let lines = body.split(|byte| *byte == b'\n');
            let lines = lines.filter(|line| !line.iter().all(u8::is_ascii_whitespace));
            let changes: Option<Vec<PostedChange>> = lines
                .map(|line| convert(serde_json::from_slice(line).ok()?))
                .collect();
            changes.filter(|changes| !changes.is_empty())
        }
    }
}

fn convert(typed: Typed) -> Option<PostedChange> {
    let table = table_ref(&typed.table)?;
    let mut problems = Vec::new();
    let rows = |row: Option<TypedRow>| row.map(|TypedRow(row)| row);
    let operation = operation(
        "",
        typed.op,
        rows(typed.after),
        rows(typed.key),
        rows(typed.before),
        &mut problems,
    )?;
    Some(PostedChange { table, operation })
}
