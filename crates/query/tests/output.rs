//! What a query hands on: result batches with a sequence that continues, input tokens settled
//! in order, changes the query already applied skipped, and a failure that is never silent.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use surefoot_core_model::{
    AckOutcome, AckToken, Batch, Change, Lsn, Operation, Position, Row, SourceId, TableRef, Value,
};
use surefoot_query::{ContinuousQuery, QueryHealth};
use tokio::sync::oneshot;

fn a() -> TableRef {
    TableRef::new("public", "a")
}

fn row(id: i32, x: i32, s: Value) -> Row {
    Row::new()
        .with("id", Value::Int32(id))
        .with("g", Value::Null)
        .with("x", Value::Int32(x))
        .with("s", s)
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn key(id: i32) -> Row {
    Row::new().with("id", Value::Int32(id))
}

/// A batch at LSN `lsn` of `changes` built by `make(position)`, and its token's outcome.
fn batch(lsn: u64, make: &[&dyn Fn(Position) -> Change]) -> (Batch, oneshot::Receiver<AckOutcome>) {
    let changes: Vec<Change> = make
        .iter()
        .enumerate()
        .map(|(i, f)| f(Position::postgres(Lsn(lsn), i as u32 + 1)))
        .collect();
    let (ack, outcome) = AckToken::observed();
    let first = changes[0].position;
    let last = changes[changes.len() - 1].position;
    let batch = Batch {
        source: SourceId::new("pg"),
        first,
        last,
        commit_time: None,
        changes: changes.into(),
        ack,
    };
    (batch, outcome)
}

fn query(sql: &str) -> ContinuousQuery {
    ContinuousQuery::new("q", sql, &common::catalog()).unwrap()
}

#[test]
fn sequence_continues_and_a_batch_without_diffs_settles_after_the_outputs_before_it() {
    let mut query = query("SELECT id, s, x FROM a WHERE x > 0");
    let (first, mut first_outcome) = batch(
        0x10,
        &[&|p| Change::insert(p, a(), row(1, 5, text("ab"))), &|p| {
            Change::insert(p, a(), row(2, 7, text("ba")))
        }],
    );
    let out_first = query.process(first).unwrap().expect("two rows added");
    assert_eq!(out_first.source, SourceId::new("q"));
    assert_eq!(
        (out_first.first, out_first.last),
        (Position::Sequence(1), Position::Sequence(2))
    );
    assert!(
        out_first
            .changes
            .iter()
            .all(|c| matches!(c.operation, Operation::Insert { .. }))
    );

    // Filtered out: no diff, but its token waits for the output ahead of it.
    let (second, mut second_outcome) =
        batch(0x20, &[&|p| Change::insert(p, a(), row(3, -1, text("x")))]);
    assert!(query.process(second).unwrap().is_none());
    assert!(
        second_outcome.try_recv().is_err(),
        "settled before the output ahead of it"
    );

    // A TOAST-unchanged text and a key-only delete: the query fills in and retracts itself.
    let (third, _third_outcome) = batch(
        0x30,
        &[
            &|p| Change::update(p, a(), None, None, row(1, 6, Value::Unchanged)),
            &|p| Change::delete(p, a(), Some(key(2)), None),
        ],
    );
    let out_third = query
        .process(third)
        .unwrap()
        .expect("an update and a delete");
    assert_eq!(
        (out_third.first, out_third.last),
        (Position::Sequence(3), Position::Sequence(4))
    );
    match &out_third.changes[0].operation {
        Operation::Update {
            before: Some(before),
            after,
            ..
        } => {
            assert_eq!(before.get("x"), Some(&Value::Int64(5)));
            assert_eq!(after.get("x"), Some(&Value::Int64(6)));
            assert_eq!(
                after.get("s"),
                Some(&text("ab")),
                "unchanged TOAST value kept"
            );
        }
        other => panic!("expected an update, got {other:?}"),
    }
    assert!(matches!(
        out_third.changes[1].operation,
        Operation::Delete { .. }
    ));

    out_first.ack.delivered();
    assert_eq!(first_outcome.try_recv().unwrap(), AckOutcome::Delivered);
    assert_eq!(second_outcome.try_recv().unwrap(), AckOutcome::Delivered);
    out_third.ack.delivered();
    assert_eq!(query.next_sequence(), 5);
    assert_eq!(query.stats().unsettled, 0);
}

#[test]
fn a_batch_already_applied_is_skipped_and_settled() {
    let mut query = query("SELECT id, x FROM a");
    let make: &[&dyn Fn(Position) -> Change] =
        &[&|p| Change::insert(p, a(), row(1, 5, text("ab")))];
    let (first, _) = batch(0x10, make);
    query.process(first).unwrap().unwrap().ack.delivered();
    let (again, mut again_outcome) = batch(0x10, make);
    assert!(
        query.process(again).unwrap().is_none(),
        "a redelivered batch applied twice"
    );
    assert_eq!(again_outcome.try_recv().unwrap(), AckOutcome::Delivered);
    assert_eq!(query.stats().duplicate_batches, 1);
    assert_eq!(query.result().unwrap().len(), 1);
}

#[test]
fn an_evaluation_error_fails_the_batch_and_the_query_and_refuses_what_follows() {
    let mut query = query("SELECT id, 10 / x AS q FROM a");
    let (bad, mut bad_outcome) = batch(0x10, &[&|p| Change::insert(p, a(), row(1, 0, text("ab")))]);
    let error = query.process(bad).unwrap_err();
    assert!(error.to_string().contains("division by zero"), "{error}");
    assert_eq!(bad_outcome.try_recv().unwrap(), AckOutcome::Failed);
    assert!(
        matches!(query.health(), QueryHealth::Failed { reason } if reason.contains("division by zero"))
    );
    let (next, mut next_outcome) =
        batch(0x20, &[&|p| Change::insert(p, a(), row(2, 1, text("ab")))]);
    assert!(query.process(next).is_err());
    assert_eq!(next_outcome.try_recv().unwrap(), AckOutcome::Failed);
}

#[test]
fn a_delete_of_a_row_the_query_never_saw_is_an_error_not_a_silent_skip() {
    let mut query = query("SELECT id, x FROM a");
    let (gap, mut outcome) = batch(0x10, &[&|p| Change::delete(p, a(), Some(key(9)), None)]);
    let error = query.process(gap).unwrap_err();
    assert!(error.to_string().contains("never saw"), "{error}");
    assert_eq!(outcome.try_recv().unwrap(), AckOutcome::Failed);
}

#[test]
fn a_dropped_result_batch_fails_its_input() {
    let mut query = query("SELECT id, x FROM a");
    let (input, mut outcome) = batch(0x10, &[&|p| Change::insert(p, a(), row(1, 5, text("ab")))]);
    drop(query.process(input).unwrap().unwrap());
    assert_eq!(outcome.try_recv().unwrap(), AckOutcome::Abandoned);
}

#[test]
fn tables_of_the_same_name_from_two_sources_are_told_apart_and_merged_in_arrival_order() {
    use surefoot_query::{Catalog, TableSchema};
    let orders = TableRef::new("public", "orders");
    let schema = |source: &str, name: &str| {
        TableSchema::new(orders.clone(), &["id", "amount"], &["id"])
            .from_source(SourceId::new(source))
            .named(name)
    };
    let catalog = Catalog::new()
        .with(schema("shop", "shop_orders"))
        .with(schema("crm", "crm_orders"));
    let mut query = ContinuousQuery::new(
        "q",
        "SELECT s.id, s.amount, c.amount AS crm_amount \
         FROM shop_orders AS s LEFT JOIN crm_orders AS c ON c.id = s.id",
        &catalog,
    )
    .unwrap();
    let order = |id: i32, amount: i32| {
        Row::new()
            .with("id", Value::Int32(id))
            .with("amount", Value::Int32(amount))
    };
    let from = |source: &str, lsn: u64, row: Row| {
        let change = Change::insert(Position::postgres(Lsn(lsn), 1), orders.clone(), row);
        Batch {
            source: SourceId::new(source),
            first: change.position,
            last: change.position,
            commit_time: None,
            changes: vec![change].into(),
            ack: AckToken::detached(),
        }
    };
    // The CRM's LSNs are far ahead of the shop's: positions are per source, not merged.
    let added = query
        .process(from("shop", 0x10, order(1, 5)))
        .unwrap()
        .unwrap();
    assert_eq!(
        added.changes[0].after().unwrap().get("crm_amount"),
        Some(&Value::Null)
    );
    added.ack.delivered();
    let matched = query
        .process(from("crm", 0x9000, order(1, 7)))
        .unwrap()
        .unwrap();
    let after = matched.changes[0].after().unwrap();
    assert_eq!(after.get("amount"), Some(&Value::Int64(5)));
    assert_eq!(after.get("crm_amount"), Some(&Value::Int64(7)));
    matched.ack.delivered();
    // A later shop batch with a lower LSN than the CRM's is still new for its own source.
    let second = query
        .process(from("shop", 0x20, order(2, 1)))
        .unwrap()
        .unwrap();
    assert_eq!(second.first, Position::Sequence(4));
    second.ack.delivered();
    assert_eq!(query.result().unwrap().len(), 2);
}
