//! The differential harness: random transactions applied to a real PostgreSQL and, as the
//! changes its logical replication would send (replica identity default), to a continuous
//! query; after every transaction the folded diffs must equal PostgreSQL's answer.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use surefoot_core_model::{
    AckOutcome, AckToken, Batch, Change, Lsn, Operation, Position, Row, SourceId, TableRef, Value,
};
use surefoot_query::{Catalog, ContinuousQuery, TableSchema};
use surefoot_test_support::{PgClient, PgServer};

/// A column's generated value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Int(i32),
    Text(&'static str),
    Null,
}

/// The three tables: name, non-key columns, and whether each is text.
pub(crate) const TABLES: [(&str, [(&str, bool); 3]); 3] = [
    ("a", [("g", false), ("x", false), ("s", true)]),
    ("b", [("a_id", false), ("y", false), ("t", true)]),
    ("c", [("b_id", false), ("z", false), ("u", true)]),
];

const WORDS: [&str; 5] = ["ab", "ba", "abc", "Xy", ""];

/// One generated operation; ids are small so keys collide and joins match.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Insert {
        table: usize,
        id: i32,
        cells: Vec<Cell>,
    },
    Update {
        table: usize,
        id: i32,
        new_id: Option<i32>,
        cells: Vec<Cell>,
        toast: bool,
    },
    Delete {
        table: usize,
        id: i32,
    },
    Truncate {
        table: usize,
    },
}

fn cell(is_text: bool, column: usize) -> BoxedStrategy<Cell> {
    if is_text {
        prop_oneof![
            1 => Just(Cell::Null),
            5 => proptest::sample::select(&WORDS[..]).prop_map(Cell::Text),
        ]
        .boxed()
    } else {
        // The first column links or groups (0..6), the second is a measure (-4..6).
        let range = if column == 0 { 0..6 } else { -4..6 };
        prop_oneof![1 => Just(Cell::Null), 6 => range.prop_map(Cell::Int)].boxed()
    }
}

fn cells(table: usize) -> BoxedStrategy<Vec<Cell>> {
    let [a, b, c] = TABLES[table].1;
    (cell(a.1, 0), cell(b.1, 1), cell(c.1, 2))
        .prop_map(|(a, b, c)| vec![a, b, c])
        .boxed()
}

fn op() -> impl Strategy<Value = Op> {
    (0..3usize).prop_flat_map(|table| {
        prop_oneof![
            4 => (0..6i32, cells(table)).prop_map(move |(id, cells)| Op::Insert { table, id, cells }),
            3 => (0..6i32, proptest::option::weighted(0.3, 0..6i32), cells(table), any::<bool>())
                .prop_map(move |(id, new_id, cells, toast)| Op::Update { table, id, new_id, cells, toast }),
            2 => (0..6i32).prop_map(move |id| Op::Delete { table, id }),
            1 => Just(Op::Truncate { table }),
        ]
    })
}

/// Transactions of operations; `true` coalesces a transaction with the next into one batch
/// (a source may coalesce whole transactions, never split one).
pub(crate) fn transactions() -> impl Strategy<Value = Vec<(Vec<Op>, bool)>> {
    proptest::collection::vec(
        (
            proptest::collection::vec(op(), 1..7),
            proptest::bool::weighted(0.2),
        ),
        1..9,
    )
}

/// The tables' catalog.
pub(crate) fn catalog() -> Catalog {
    TABLES
        .iter()
        .fold(Catalog::new(), |catalog, (name, columns)| {
            let names: Vec<&str> = std::iter::once("id")
                .chain(columns.iter().map(|c| c.0))
                .collect();
            catalog.with(TableSchema::new(
                TableRef::new("public", *name),
                &names,
                &["id"],
            ))
        })
}

fn create_sql() -> String {
    TABLES
        .iter()
        .map(|(name, columns)| {
            let columns: Vec<String> = columns
                .iter()
                .map(|(c, text)| format!("{c} {}", if *text { "text" } else { "int" }))
                .collect();
            format!(
                "CREATE TABLE {name} (id int PRIMARY KEY, {});",
                columns.join(", ")
            )
        })
        .collect()
}

fn literal(cell: &Cell) -> String {
    match cell {
        Cell::Int(i) => i.to_string(),
        Cell::Text(t) => format!("'{t}'"),
        Cell::Null => "NULL".into(),
    }
}

fn value(cell: &Cell) -> Value {
    match cell {
        Cell::Int(i) => Value::Int32(*i),
        Cell::Text(t) => Value::Text((*t).to_owned()),
        Cell::Null => Value::Null,
    }
}

type Tables = [BTreeMap<i32, Vec<Cell>>; 3];

fn row(table: usize, id: i32, cells: &[Cell], unchanged: Option<&[Cell]>) -> Row {
    let mut row = Row::new().with("id", Value::Int32(id));
    for (index, (name, is_text)) in TABLES[table].1.iter().enumerate() {
        // PostgreSQL omits an unchanged TOASTed value from an update: simulate it for text.
        let same = unchanged.is_some_and(|old| *is_text && old[index] == cells[index]);
        row.push(
            *name,
            if same {
                Value::Unchanged
            } else {
                value(&cells[index])
            },
        );
    }
    row
}

fn table_ref(table: usize) -> TableRef {
    TableRef::new("public", TABLES[table].0)
}

/// Applies `op` to the model, returning its SQL and the change replication would send.
fn apply(tables: &mut Tables, op: &Op, position: Position) -> Option<(String, Change)> {
    let key = |id: i32| Row::new().with("id", Value::Int32(id));
    match op {
        Op::Insert { table, id, cells } if tables[*table].contains_key(id) => apply(
            tables,
            &Op::Update {
                table: *table,
                id: *id,
                new_id: None,
                cells: cells.clone(),
                toast: false,
            },
            position,
        ),
        Op::Insert { table, id, cells } => {
            tables[*table].insert(*id, cells.clone());
            let values: Vec<String> = cells.iter().map(literal).collect();
            let sql = format!(
                "INSERT INTO {} VALUES ({id}, {})",
                TABLES[*table].0,
                values.join(", ")
            );
            Some((
                sql,
                Change::insert(position, table_ref(*table), row(*table, *id, cells, None)),
            ))
        }
        Op::Update {
            table,
            id,
            new_id,
            cells,
            toast,
        } => {
            let old = tables[*table].remove(id)?;
            let new_id = match new_id {
                Some(n) if *n != *id && !tables[*table].contains_key(n) => *n,
                _ => *id,
            };
            tables[*table].insert(new_id, cells.clone());
            let sets: Vec<String> = TABLES[*table]
                .1
                .iter()
                .zip(cells)
                .map(|((name, _), cell)| format!("{name} = {}", literal(cell)))
                .collect();
            let sql = format!(
                "UPDATE {} SET id = {new_id}, {} WHERE id = {id}",
                TABLES[*table].0,
                sets.join(", ")
            );
            let old_key = (new_id != *id).then(|| key(*id));
            let unchanged = toast.then_some(old.as_slice());
            let after = row(*table, new_id, cells, unchanged);
            Some((
                sql,
                Change::update(position, table_ref(*table), old_key, None, after),
            ))
        }
        Op::Truncate { table } => {
            tables[*table].clear();
            let sql = format!("TRUNCATE {}", TABLES[*table].0);
            Some((sql, Change::truncate(position, table_ref(*table))))
        }
        Op::Delete { table, id } => {
            tables[*table].remove(id)?;
            let sql = format!("DELETE FROM {} WHERE id = {id}", TABLES[*table].0);
            Some((
                sql,
                Change::delete(position, table_ref(*table), Some(key(*id)), None),
            ))
        }
    }
}

/// Text as PostgreSQL's text output would compare: numbers rounded to 6 decimals.
fn normal(text: Option<String>) -> Option<String> {
    text.map(|t| match t.parse::<f64>() {
        Ok(number) if !t.is_empty() => format!("{:.6}", number + 0.0),
        _ => t,
    })
}

fn value_text(value: &Value) -> Option<String> {
    normal(match value {
        Value::Null => None,
        Value::Bool(b) => Some(if *b { "t" } else { "f" }.into()),
        Value::Int16(i) => Some(i.to_string()),
        Value::Int32(i) => Some(i.to_string()),
        Value::Int64(i) => Some(i.to_string()),
        Value::Float64(f) => Some(f.to_string()),
        Value::Numeric(n) => Some(n.to_string()),
        Value::Text(t) => Some(t.clone()),
        other => Some(format!("{other:?}")),
    })
}

type Folded = HashMap<Vec<Option<String>>, Vec<Option<String>>>;

/// Folds one result batch into `folded`, checking each diff against what it replaces.
fn fold(folded: &mut Folded, batch: &Batch, width: usize, next: &mut u64) -> Result<(), String> {
    let split = |row: &Row| -> (Vec<Option<String>>, Vec<Option<String>>) {
        let texts: Vec<Option<String>> =
            row.columns().iter().map(|c| value_text(&c.value)).collect();
        (texts[width..].to_vec(), texts[..width].to_vec())
    };
    for change in batch.changes.iter() {
        if change.position != Position::Sequence(*next) {
            return Err(format!("diff at {} where #{next} was due", change.position));
        }
        *next += 1;
        match &change.operation {
            Operation::Insert { after } => {
                let (key, row) = split(after);
                if let Some(old) = folded.insert(key.clone(), row) {
                    return Err(format!("added {key:?} over {old:?}"));
                }
            }
            Operation::Update { before, after, .. } => {
                let (key, row) = split(after);
                let before = before.as_ref().map(|b| split(b).1);
                let old = folded.insert(key.clone(), row);
                if old.is_none() || old != before {
                    return Err(format!(
                        "updated {key:?}: held {old:?}, diff said {before:?}"
                    ));
                }
            }
            Operation::Delete { before, .. } => {
                let (key, row) = split(before.as_ref().ok_or("delete without before")?);
                if folded.remove(&key) != Some(row) {
                    return Err(format!("deleted {key:?} that was not held so"));
                }
            }
            Operation::Truncate => return Err("a truncate in the result".into()),
        }
    }
    Ok(())
}

/// One server, its tables, and a runner for `sql`.
pub(crate) struct Differential {
    runtime: tokio::runtime::Runtime,
    _server: PgServer,
    client: PgClient,
}

impl Differential {
    pub(crate) fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (server, client) = runtime.block_on(async {
            let server = PgServer::new().await.unwrap();
            let client = server.connect("postgres").await.unwrap();
            client.batch_execute(&create_sql()).await.unwrap();
            (server, client)
        });
        Self {
            runtime,
            _server: server,
            client,
        }
    }

    /// Runs `cases` random cases of `sql`; returns the number of transactions checked.
    pub(crate) fn run(&self, sql: &str, cases: u32) -> u64 {
        ContinuousQuery::new("q", sql, &catalog()).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let checked = std::cell::Cell::new(0u64);
        let result = runner.run(&transactions(), |transactions| {
            let n = self
                .runtime
                .block_on(self.case(sql, &transactions))
                .map_err(TestCaseError::fail)?;
            checked.set(checked.get() + n);
            Ok(())
        });
        if let Err(error) = result {
            panic!("{sql}\n{error}");
        }
        checked.get()
    }

    async fn answer(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let messages = self
            .client
            .simple_query(sql)
            .await
            .map_err(|e| e.to_string())?;
        let mut rows: Vec<Vec<Option<String>>> = messages
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| normal(row.get(i).map(str::to_owned)))
                        .collect(),
                ),
                _ => None,
            })
            .collect();
        rows.sort();
        Ok(rows)
    }

    async fn case(&self, sql: &str, transactions: &[(Vec<Op>, bool)]) -> Result<u64, String> {
        self.client
            .batch_execute("TRUNCATE a, b, c")
            .await
            .map_err(|e| e.to_string())?;
        let mut query = ContinuousQuery::new("q", sql, &catalog()).map_err(|e| e.to_string())?;
        let width = query.columns().len();
        let mut tables: Tables = Default::default();
        let mut folded = Folded::new();
        let mut next = 1;
        let mut changes = Vec::new();
        let mut checked = 0;
        for (number, (ops, coalesce)) in transactions.iter().enumerate() {
            let lsn = Lsn(0x1000 * (number as u64 + 1));
            let mut statements = vec!["BEGIN".to_owned()];
            for (ordinal, op) in ops.iter().enumerate() {
                let position = Position::postgres(lsn, ordinal as u32 + 1);
                if let Some((statement, change)) = apply(&mut tables, op, position) {
                    statements.push(statement);
                    changes.push(change);
                }
            }
            statements.push("COMMIT".into());
            self.client
                .batch_execute(&statements.join(";\n"))
                .await
                .map_err(|e| format!("{e}: {statements:?}"))?;
            if *coalesce && number + 1 < transactions.len() {
                continue;
            }
            let (ack, mut outcome) = AckToken::observed();
            let first = changes
                .first()
                .map_or(Position::postgres(lsn, 0), |c| c.position);
            let last = changes.last().map_or(first, |c| c.position);
            let batch = Batch {
                source: SourceId::new("pg"),
                first,
                last,
                commit_time: None,
                changes: std::mem::take(&mut changes).into(),
                ack,
            };
            if let Some(output) = query.process(batch).map_err(|e| e.to_string())? {
                fold(&mut folded, &output, width, &mut next)?;
                output.ack.delivered();
            }
            match outcome.try_recv() {
                Ok(AckOutcome::Delivered) => {}
                other => return Err(format!("input token after its output settled: {other:?}")),
            }
            let mut ours: Vec<Vec<Option<String>>> = folded.values().cloned().collect();
            ours.sort();
            let theirs = self.answer(sql).await?;
            if ours != theirs {
                return Err(format!(
                    "after transaction {number}: ours {ours:?}\n  PostgreSQL {theirs:?}\n  statements {statements:?}"
                ));
            }
            let mut current: Vec<Vec<Option<String>>> = query
                .result()
                .map_err(|e| e.to_string())?
                .iter()
                .map(|row| {
                    let texts = row.columns().iter().map(|c| value_text(&c.value));
                    texts.take(width).collect()
                })
                .collect();
            current.sort();
            if current != ours {
                return Err(format!(
                    "after transaction {number}: the current result {current:?}\n  the folded diffs {ours:?}"
                ));
            }
            checked += 1;
        }
        Ok(checked)
    }
}
