//! A durable query's state survives its process: reopened on the same store it holds the same
//! result, continues its sequence, sends again what was not acknowledged, skips what it had
//! applied, and refuses a store made for another query.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::Path;

use surefoot_core_lifecycle::{Classify, ErrorClass};
use surefoot_core_model::{AckToken, Batch, Change, Lsn, Position, Row, SourceId, TableRef, Value};
use surefoot_query::{Catalog, DurableError, DurableQuery, TableSchema};

const SQL: &str = "SELECT o.customer, count(*) AS n, sum(o.amount) AS total \
     FROM orders o JOIN customers c ON o.customer = c.id WHERE c.active GROUP BY o.customer";

fn orders() -> TableRef {
    TableRef::new("public", "orders")
}

fn customers() -> TableRef {
    TableRef::new("public", "customers")
}

fn catalog() -> Catalog {
    Catalog::new()
        .with(TableSchema::new(
            orders(),
            &["id", "customer", "amount"],
            &["id"],
        ))
        .with(TableSchema::new(customers(), &["id", "active"], &["id"]))
}

fn open(path: &Path) -> DurableQuery {
    DurableQuery::open(path, "q", SQL, &catalog()).unwrap()
}

fn order(id: i32, customer: i32, amount: i32) -> Row {
    Row::new()
        .with("id", Value::Int32(id))
        .with("customer", Value::Int32(customer))
        .with("amount", Value::Int32(amount))
}

fn customer(id: i32, active: bool) -> Row {
    Row::new()
        .with("id", Value::Int32(id))
        .with("active", Value::Bool(active))
}

/// A source transaction at `lsn`.
fn batch(lsn: u64, changes: Vec<Change>) -> Batch {
    let changes: Vec<Change> = changes
        .into_iter()
        .enumerate()
        .map(|(i, mut change)| {
            change.position = Position::postgres(Lsn(lsn), i as u32 + 1);
            change
        })
        .collect();
    Batch {
        source: SourceId::new("pg"),
        first: changes[0].position,
        last: changes[changes.len() - 1].position,
        commit_time: None,
        changes: changes.into(),
        ack: AckToken::detached(),
    }
}

fn insert(table: TableRef, row: Row) -> Change {
    Change::insert(Position::Sequence(0), table, row)
}

fn delete(table: TableRef, id: i32) -> Change {
    let key = Row::new().with("id", Value::Int32(id));
    Change::delete(Position::Sequence(0), table, Some(key), None)
}

fn sorted(mut rows: Vec<Row>) -> Vec<String> {
    let mut shown: Vec<String> = rows.drain(..).map(|row| format!("{row:?}")).collect();
    shown.sort();
    shown
}

#[test]
fn a_reopened_query_holds_its_result_continues_its_sequence_and_resends_what_was_unacknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.redb");
    let mut query = open(&path);
    let first = query
        .process(batch(
            0x10,
            vec![
                insert(customers(), customer(1, true)),
                insert(customers(), customer(2, true)),
                insert(orders(), order(10, 1, 5)),
                insert(orders(), order(11, 2, 7)),
            ],
        ))
        .unwrap()
        .unwrap();
    assert_eq!(first.first, Position::Sequence(1));
    first.ack.delivered();
    // Delivered and trimmed from the log by the next write.
    let second = query
        .process(batch(
            0x20,
            vec![
                insert(orders(), order(12, 1, 1)),
                delete(orders(), 11),
                insert(customers(), customer(3, false)),
            ],
        ))
        .unwrap()
        .unwrap();
    let sent = second.changes.clone();
    let result = sorted(query.query().result().unwrap());
    let next = query.query().next_sequence();
    // The process dies with the second result batch unacknowledged.
    drop(second);
    drop(query);

    let mut reopened = open(&path);
    assert_eq!(sorted(reopened.query().result().unwrap()), result);
    assert_eq!(reopened.query().next_sequence(), next);
    let resent = reopened.unacknowledged();
    assert_eq!(
        resent.len(),
        1,
        "only the unacknowledged batch is sent again"
    );
    assert_eq!(resent[0].changes, sent, "sent again as it was");
    assert!(reopened.unacknowledged().is_empty());
    // The source redelivers from before the second batch: it is skipped, nothing repeated.
    let redelivered = reopened
        .process(batch(0x20, vec![insert(orders(), order(12, 1, 1))]))
        .unwrap();
    assert!(redelivered.is_none());
    // New work continues the sequence, joining rows kept from before the restart.
    let third = reopened
        .process(batch(0x30, vec![insert(orders(), order(13, 2, 4))]))
        .unwrap()
        .unwrap();
    assert_eq!(third.first, Position::Sequence(next));
    assert_eq!(third.changes.len(), 1);
    for batch in resent {
        batch.ack.delivered();
    }
    third.ack.delivered();
    let truncate = Change {
        position: Position::Sequence(0),
        table: orders(),
        operation: surefoot_core_model::Operation::Truncate,
    };
    let emptied = reopened
        .process(batch(0x40, vec![truncate]))
        .unwrap()
        .unwrap();
    emptied.ack.delivered();
    let after_truncate = sorted(reopened.query().result().unwrap());
    drop(reopened);

    let mut last = open(&path);
    assert_eq!(sorted(last.query().result().unwrap()), after_truncate);
    assert!(last.query().result().unwrap().is_empty());
    assert!(
        last.unacknowledged().len() <= 1,
        "delivered batches are trimmed from the log (the last one by the next write)"
    );
}

#[test]
fn a_store_made_for_another_query_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.redb");
    drop(open(&path));
    let other = "SELECT o.customer, count(*) AS n FROM orders o GROUP BY o.customer";
    let error = DurableQuery::open(&path, "q", other, &catalog()).unwrap_err();
    assert!(matches!(error, DurableError::Changed { .. }), "{error}");
    assert_eq!(error.class(), ErrorClass::Configuration);
    assert!(
        error.to_string().contains("made for another query"),
        "{error}"
    );
}

#[test]
fn batches_processed_together_commit_once_and_reopen_like_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = || {
        vec![
            batch(
                0x10,
                vec![
                    insert(customers(), customer(1, true)),
                    insert(orders(), order(10, 1, 5)),
                ],
            ),
            // Changes nothing the result shows: no result batch, but its rows are kept.
            batch(0x20, vec![insert(customers(), customer(2, false))]),
            batch(
                0x30,
                vec![insert(orders(), order(11, 2, 9)), delete(orders(), 10)],
            ),
            batch(0x40, vec![insert(orders(), order(12, 1, 3))]),
        ]
    };
    let together_path = dir.path().join("together.redb");
    let mut together = open(&together_path);
    let results = together.process_batches(inputs()).unwrap();
    let sequences: Vec<Position> = results.iter().map(|b| b.first).collect();
    let one_path = dir.path().join("one.redb");
    let mut one = open(&one_path);
    let singles: Vec<Batch> = inputs()
        .into_iter()
        .filter_map(|b| one.process(b).unwrap())
        .collect();
    assert_eq!(
        sequences,
        singles.iter().map(|b| b.first).collect::<Vec<_>>(),
        "the same result batches, with the same sequences"
    );
    for (a, b) in results.iter().zip(&singles) {
        assert_eq!(a.changes, b.changes);
    }
    let result = sorted(together.query().result().unwrap());
    assert_eq!(result, sorted(one.query().result().unwrap()));
    let next = together.query().next_sequence();
    drop((results, singles, together, one));

    // Every result was left unacknowledged: reopened, the group's store resends them all,
    // holds the same state, skips the redelivered inputs and continues the sequence.
    let mut reopened = open(&together_path);
    assert_eq!(sorted(reopened.query().result().unwrap()), result);
    assert_eq!(reopened.unacknowledged().len(), sequences.len());
    assert!(reopened.process_batches(inputs()).unwrap().is_empty());
    let more = reopened
        .process_batches(vec![batch(0x50, vec![insert(orders(), order(13, 1, 1))])])
        .unwrap();
    assert_eq!(more[0].first, Position::Sequence(next));
}
