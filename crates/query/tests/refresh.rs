//! The current result of some keys sent again: an update to the current row for a key in the
//! result, a delete for one no longer in it, with new sequences, logged until acknowledged.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use surefoot_core_model::{
    AckToken, Batch, Change, Lsn, Operation, Position, Row, SourceId, TableRef, Value,
};
use surefoot_query::{Catalog, DurableQuery, TableSchema};

const SQL: &str = "SELECT i.id, i.price * 2 AS doubled FROM items i WHERE i.price > 0";

fn catalog() -> Catalog {
    Catalog::new().with(TableSchema::new(
        TableRef::new("public", "items"),
        &["id", "price"],
        &["id"],
    ))
}

fn item(id: i32, price: i32) -> Change {
    let row = Row::new()
        .with("id", Value::Int32(id))
        .with("price", Value::Int32(price));
    Change::insert(
        Position::postgres(Lsn(0x10), id as u32),
        TableRef::new("public", "items"),
        row,
    )
}

#[test]
fn keys_are_sent_again_as_their_current_rows_or_deletes_and_logged_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.redb");
    let mut query = DurableQuery::open(&path, "q", SQL, &catalog()).unwrap();
    let changes = vec![item(1, 5), item(2, 7)];
    let input = Batch {
        source: SourceId::new("pg"),
        first: changes[0].position,
        last: changes[1].position,
        commit_time: None,
        changes: changes.into(),
        ack: AckToken::detached(),
    };
    let first = query.process(input).unwrap().unwrap();
    assert_eq!(first.last, Position::Sequence(2));
    // Keys as a reaction holds them: from the changes it was sent.
    let keys: Vec<Row> = first
        .changes
        .iter()
        .map(|change| query.query().key_of(change.after().unwrap()).unwrap())
        .collect();
    first.ack.delivered();
    let gone = Row::new().with("_key.i.id", Value::Int64(9));

    assert!(query.refresh(&[]).unwrap().is_none());
    let refreshed = query
        .refresh(&[keys[1].clone(), gone.clone(), keys[1].clone()])
        .unwrap()
        .unwrap();
    assert_eq!(
        (refreshed.first, refreshed.last),
        (Position::Sequence(3), Position::Sequence(4))
    );
    match &refreshed.changes[0].operation {
        Operation::Update { before, after, .. } => {
            assert!(
                format!("{:?}", after.get("doubled")).contains("14"),
                "{after:?}"
            );
            assert_eq!(before.as_ref(), Some(after));
        }
        other => panic!("not an update: {other:?}"),
    }
    match &refreshed.changes[1].operation {
        Operation::Delete {
            key: Some(deleted), ..
        } => assert_eq!(deleted, &gone),
        other => panic!("not a delete of the key: {other:?}"),
    }
    assert_eq!(
        query
            .query()
            .key_of(&refreshed.changes[0].after().cloned().unwrap()),
        Some(keys[1].clone())
    );
    let sent = refreshed.changes.clone();
    drop(refreshed);
    drop(query);

    let mut reopened = DurableQuery::open(&path, "q", SQL, &catalog()).unwrap();
    assert_eq!(
        reopened.query().next_sequence(),
        5,
        "the sequence continues after the refresh"
    );
    let resent = reopened.unacknowledged();
    assert_eq!(resent.len(), 1);
    assert_eq!(
        resent[0].changes, sent,
        "an unacknowledged refresh is sent again as it was"
    );
}
