//! The wire format of posted changes, parsed and validated as a whole.
//!
//! One change is a JSON object:
//!
//! ```json
//! {"table": "public.orders", "op": "insert", "after": {"id": 7, "total": "12.50"}}
//! ```
//!
//! - `table`: `name` (schema `public`) or `schema.name`;
//! - `op`: `insert` (needs `after`), `update` (needs `after`; `key` and `before` optional),
//!   `delete` (needs `key` or `before`) or `truncate` (no rows);
//! - rows are JSON objects; `null`, booleans, integers, floats and strings become the matching
//!   [`Value`]; arrays and objects become [`Value::Json`]. Unknown fields are refused.
//!
//! A batch is a JSON array of such objects, or NDJSON (one object per line). Validation never
//! stops at the first problem: every problem is returned with its path (`[3].after`,
//! `line 4.op`), up to [`MAX_PROBLEMS`].

mod fast;

use serde::Serialize;
use serde_json::{Map, Value as Json};
use surefoot_core_model::{Operation, Row, TableRef, Value};

/// Problems reported at most per request.
pub const MAX_PROBLEMS: usize = 50;

/// One problem in a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Where: `body`, `[3].op`, `line 2.after.id`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A change as posted, before the source gives it a position.
#[derive(Debug, Clone, PartialEq)]
pub struct PostedChange {
    /// The table.
    pub table: TableRef,
    /// What happened.
    pub operation: Operation,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Malformed or invalid content (`400`).
    Invalid(Vec<Problem>),
    /// More changes than allowed (`413`).
    TooMany {
        /// Changes in the body (at least).
        count: usize,
        /// The limit.
        limit: usize,
    },
}

/// How a body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON object.
    Single,
    /// A JSON array of objects.
    Array,
    /// One JSON object per non-empty line.
    Ndjson,
}

/// Parses and validates a whole body: all of it is returned, or none of it.
pub fn parse(body: &[u8], framing: Framing, limit: usize) -> Result<Vec<PostedChange>, Rejection> {
    // Valid bodies take the typed path; anything it refuses is validated again field by field
    // to name every problem.
    if let Some(changes) = fast::parse(body, framing) {
        check_count(changes.len(), limit)?;
        return Ok(changes);
    }
    validate(body, framing, limit)
}

/// Validates field by field, naming every problem.
fn validate(body: &[u8], framing: Framing, limit: usize) -> Result<Vec<PostedChange>, Rejection> {
    let items = split(body, framing, limit)?;
    let mut problems = Vec::new();
    let mut changes = Vec::with_capacity(items.len());
    for (path, item) in items {
        if let Some(change) = change(&path, item, &mut problems) {
            changes.push(change);
        }
    }
    if problems.is_empty() {
        Ok(changes)
    } else {
        problems.truncate(MAX_PROBLEMS);
        Err(Rejection::Invalid(problems))
    }
}

fn invalid(path: &str, message: impl Into<String>) -> Rejection {
    Rejection::Invalid(vec![problem(path, message)])
}

fn problem(path: &str, message: impl Into<String>) -> Problem {
    Problem {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// The body's items with their paths.
fn split(body: &[u8], framing: Framing, limit: usize) -> Result<Vec<(String, Json)>, Rejection> {
    let items = match framing {
        Framing::Single => vec![("body".to_owned(), json(body, "body")?)],
        Framing::Array => match json(body, "body")? {
            Json::Array(items) => {
                check_count(items.len(), limit)?;
                let paths = (0..items.len()).map(|index| format!("[{index}]"));
                paths.zip(items).collect()
            }
            _ => return Err(invalid("body", "expected a JSON array of changes")),
        },
        Framing::Ndjson => ndjson(body, limit)?,
    };
    if items.is_empty() {
        return Err(invalid("body", "the batch holds no change"));
    }
    Ok(items)
}

fn check_count(count: usize, limit: usize) -> Result<(), Rejection> {
    if count > limit {
        Err(Rejection::TooMany { count, limit })
    } else {
        Ok(())
    }
}

fn json(bytes: &[u8], path: &str) -> Result<Json, Rejection> {
    serde_json::from_slice(bytes).map_err(|error| invalid(path, format!("not JSON: {error}")))
}

fn ndjson(body: &[u8], limit: usize) -> Result<Vec<(String, Json)>, Rejection> {
    let lines = body.split(|byte| *byte == b'\n').enumerate();
    let lines = lines.filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace));
    let lines: Vec<(usize, &[u8])> = lines.collect();
    check_count(lines.len(), limit)?;
    let mut items = Vec::with_capacity(lines.len());
    let mut problems = Vec::new();
    for (index, line) in lines {
        let path = format!("line {}", index + 1);
        match serde_json::from_slice(line) {
            Ok(item) => items.push((path, item)),
            Err(error) if problems.len() < MAX_PROBLEMS => {
                problems.push(problem(&path, format!("not JSON: {error}")));
            }
            Err(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(items)
    } else {
        Err(Rejection::Invalid(problems))
    }
}

fn change(path: &str, item: Json, problems: &mut Vec<Problem>) -> Option<PostedChange> {
    let Json::Object(mut fields) = item else {
        problems.push(problem(path, "expected a JSON object"));
        return None;
    };
    let before = problems.len();
    let table = table(path, fields.remove("table"), problems);
    let op = op(path, fields.remove("op"), problems);
    let after = row(path, "after", fields.remove("after"), problems);
    let key = row(path, "key", fields.remove("key"), problems);
    let old = row(path, "before", fields.remove("before"), problems);
    for name in fields.keys() {
        problems.push(problem(&format!("{path}.{name}"), "unknown field"));
    }
    let operation = operation(path, op?, after, key, old, problems);
    if problems.len() > before {
        return None;
    }
    Some(PostedChange {
        table: table?,
        operation: operation?,
    })
}

/// `name` (schema `public`) or `schema.name`, each part non-empty and at most 63 bytes.
fn table_ref(text: &str) -> Option<TableRef> {
    let (schema, name) = text.split_once('.').unwrap_or(("public", text));
    let valid = |part: &str| !part.is_empty() && !part.contains('.') && part.len() <= 63;
    (valid(schema) && valid(name)).then(|| TableRef::new(schema, name))
}

fn table(path: &str, value: Option<Json>, problems: &mut Vec<Problem>) -> Option<TableRef> {
    let path = format!("{path}.table");
    let Some(Json::String(text)) = value else {
        problems.push(problem(&path, "required: a string `name` or `schema.name`"));
        return None;
    };
    if let Some(table) = table_ref(&text) {
        Some(table)
    } else {
        let message = format!(
            "`{text}` is not `name` or `schema.name` (non-empty parts of at most 63 bytes)"
        );
        problems.push(problem(&path, message));
        None
    }
}

#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
}

fn op(path: &str, value: Option<Json>, problems: &mut Vec<Problem>) -> Option<Op> {
    let path = format!("{path}.op");
    let op = match value.as_ref().and_then(Json::as_str) {
        Some("insert") => Op::Insert,
        Some("update") => Op::Update,
        Some("delete") => Op::Delete,
        Some("truncate") => Op::Truncate,
        _ => {
            let message = "required: one of insert, update, delete, truncate";
            problems.push(problem(&path, message));
            return None;
        }
    };
    Some(op)
}

fn operation(
    path: &str,
    op: Op,
    after: Option<Row>,
    key: Option<Row>,
    before: Option<Row>,
    problems: &mut Vec<Problem>,
) -> Option<Operation> {
    let mut refuse = |field: &str, message: &str| {
        problems.push(problem(&format!("{path}.{field}"), message));
        None
    };
    match op {
        Op::Insert if key.is_some() || before.is_some() => {
            refuse("op", "an insert carries only `after`")
        }
        Op::Insert => match after {
            Some(after) => Some(Operation::Insert { after }),
            None => refuse("after", "required for an insert"),
        },
        Op::Update => match after {
            Some(after) => Some(Operation::Update { key, before, after }),
            None => refuse("after", "required for an update"),
        },
        Op::Delete if after.is_some() => refuse("after", "a delete has no `after`"),
        Op::Delete if key.is_none() && before.is_none() => {
            refuse("key", "a delete needs `key` or `before`")
        }
        Op::Delete => Some(Operation::Delete { key, before }),
        Op::Truncate if after.is_some() || key.is_some() || before.is_some() => {
            refuse("op", "a truncate carries no row")
        }
        Op::Truncate => Some(Operation::Truncate),
    }
}

fn row(path: &str, field: &str, value: Option<Json>, problems: &mut Vec<Problem>) -> Option<Row> {
    let path = format!("{path}.{field}");
    match value {
        None => None,
        Some(Json::Object(columns)) => columns_to_row(&path, columns, problems),
        Some(_) => {
            problems.push(problem(&path, "expected an object of column values"));
            None
        }
    }
}

fn columns_to_row(
    path: &str,
    columns: Map<String, Json>,
    problems: &mut Vec<Problem>,
) -> Option<Row> {
    if columns.is_empty() {
        problems.push(problem(path, "a row needs at least one column"));
        return None;
    }
    let mut row = Row::with_capacity(columns.len());
    let mut ok = true;
    for (name, value) in columns {
        if name.is_empty() {
            problems.push(problem(path, "a column name must not be empty"));
            ok = false;
            continue;
        }
        row.push(name, value_of(value));
    }
    ok.then_some(row)
}

pub(crate) fn value_of(json: Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(flag) => Value::Bool(flag),
        Json::Number(number) => match (number.as_i64(), number.as_f64()) {
            (Some(integer), _) => Value::Int64(integer),
            (None, Some(float)) if number.is_f64() => Value::Float64(float),
            // A u64 past i64::MAX: kept exact as decimal text.
            _ => {
                let text = number.to_string();
                match text.parse() {
                    Ok(numeric) => Value::Numeric(numeric),
                    Err(_) => Value::Other {
                        type_name: "numeric".to_owned(),
                        text,
                    },
                }
            }
        },
        Json::String(text) => Value::Text(text),
        other => Value::Json(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(rejection: Rejection) -> Vec<String> {
        match rejection {
            Rejection::Invalid(problems) => problems.into_iter().map(|p| p.path).collect(),
            Rejection::TooMany { .. } => panic!("not a validation failure"),
        }
    }

    #[test]
    fn a_valid_array_parses_whole() {
        let body = br#"[{"table":"orders","op":"insert","after":{"id":1,"n":"x","f":1.5,"big":18446744073709551615}},
            {"table":"s.t","op":"delete","key":{"id":1}},{"table":"t","op":"truncate"},
            {"table":"t","op":"update","after":{"id":2,"doc":{"a":[1]}}}]"#;
        let changes = parse(body, Framing::Array, 10).unwrap();
        assert_eq!(changes.len(), 4);
        assert_eq!(changes[0].table, TableRef::new("public", "orders"));
        let Operation::Insert { after } = &changes[0].operation else {
            panic!("not an insert")
        };
        assert_eq!(after.get("id"), Some(&Value::Int64(1)));
        assert_eq!(after.get("f"), Some(&Value::Float64(1.5)));
        assert!(matches!(after.get("big"), Some(Value::Numeric(_))));
        assert_eq!(changes[1].table, TableRef::new("s", "t"));
    }

    #[test]
    fn the_typed_path_agrees_with_the_field_by_field_one() {
        let bodies: [(&[u8], Framing); 4] = [
            (br#"[{"table":"a.b","op":"update","after":{"x":null,"y":[1]},"key":{"x":1},"before":{"x":true}}]"#, Framing::Array),
            (br#"{"table":"t","op":"delete","before":{"id":"\u00e9"}}"#, Framing::Single),
            (b"{\"table\":\"t\",\"op\":\"truncate\"}\n{\"table\":\"t\",\"op\":\"insert\",\"after\":{\"f\":-1.5e3}}\n", Framing::Ndjson),
            (br#"[{"table":"t","op":"insert","after":{"big":18446744073709551615,"s":"x"}}]"#, Framing::Array),
        ];
        for (body, framing) in bodies {
            let typed = fast::parse(body, framing).expect("typed path refused a valid body");
            assert_eq!(typed, validate(body, framing, 10).unwrap());
        }
        assert!(
            fast::parse(
                br#"[{"table":"t","op":"insert","after":{}}]"#,
                Framing::Array
            )
            .is_none()
        );
        assert!(
            fast::parse(
                br#"{"table":"t","op":"insert","after":{"":1}}"#,
                Framing::Single
            )
            .is_none()
        );
        assert!(fast::parse(b"[]", Framing::Array).is_none());
    }

    #[test]
    fn every_problem_is_named_by_its_path() {
        let body = br#"[{"table":"","op":"insert","after":{"id":1}},
            {"table":"t","op":"upsert"},
            {"table":"t","op":"insert"},
            {"table":"t","op":"delete","extra":1},
            7]"#;
        let found = paths(parse(body, Framing::Array, 10).unwrap_err());
        assert_eq!(
            found,
            [
                "[0].table",
                "[1].op",
                "[2].after",
                "[3].extra",
                "[3].key",
                "[4]"
            ]
        );
    }

    #[test]
    fn ndjson_lines_are_numbered_and_blank_lines_skipped() {
        let body = b"{\"table\":\"t\",\"op\":\"truncate\"}\n\n{\"table\":\"t\"\n";
        let found = paths(parse(body, Framing::Ndjson, 10).unwrap_err());
        assert_eq!(found, ["line 3"]);
        let good =
            b"{\"table\":\"t\",\"op\":\"truncate\"}\n\n{\"table\":\"t\",\"op\":\"truncate\"}";
        assert_eq!(parse(good, Framing::Ndjson, 10).unwrap().len(), 2);
    }

    #[test]
    fn too_many_changes_and_empty_batches_are_refused() {
        let body = br#"[{"table":"t","op":"truncate"},{"table":"t","op":"truncate"}]"#;
        assert_eq!(
            parse(body, Framing::Array, 1).unwrap_err(),
            Rejection::TooMany { count: 2, limit: 1 }
        );
        assert_eq!(
            paths(parse(b"[]", Framing::Array, 1).unwrap_err()),
            ["body"]
        );
        assert_eq!(
            paths(parse(b"{}", Framing::Array, 1).unwrap_err()),
            ["body"]
        );
        assert_eq!(paths(parse(b"", Framing::Ndjson, 1).unwrap_err()), ["body"]);
        assert_eq!(
            paths(parse(b"{", Framing::Single, 1).unwrap_err()),
            ["body"]
        );
    }
}
