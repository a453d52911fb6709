//! The typed path for bodies that are valid, which is nearly all of them: serde straight into
//! rows, with no intermediate JSON tree per change. It answers only "valid, here are the
//! changes" or "not sure"; the field-by-field validation in the parent module names the problems.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value as Json;
use surefoot_core_model::Row;

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
            let value: Json = map.next_value()?;
            row.push(name.as_ref(), value_of(value));
        }
        if row.is_empty() {
            return Err(serde::de::Error::custom("empty row"));
        }
        Ok(TypedRow(row))
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
