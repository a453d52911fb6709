//! Unit tests of the transaction assembler: positions, rows, old tuples, truncates, messages.

use std::collections::HashSet;

use surefoot_core_model::{Lsn, Operation, Position, Row, TableRef, Value};

use super::samples::{
    self, COMMIT_LSN, EVENTS, USERS, assembler, begin, commit, insert_user, run, text, tuple,
};
use crate::pgoutput::{
    Assembled, Delete, Message, OldTuple, Origin, Truncate, TruncateOptions, TupleValue, Update,
};

pub(super) fn users() -> TableRef {
    TableRef::new("public", "users")
}

#[test]
fn a_thousand_row_transaction_yields_a_thousand_distinct_positions() {
    let inserts = (0..1_000).map(|id| insert_user(id, "row")).collect();
    let transaction = run(inserts).unwrap();
    assert_eq!(transaction.changes.len(), 1_000);
    let positions: HashSet<Position> = transaction.changes.iter().map(|c| c.position).collect();
    assert_eq!(positions.len(), 1_000);
    for (ordinal, change) in (0..).zip(&transaction.changes) {
        assert_eq!(change.position, Position::postgres(COMMIT_LSN, ordinal));
    }
    assert_eq!(transaction.commit_lsn, COMMIT_LSN);
    assert_eq!(transaction.end_lsn, Lsn(COMMIT_LSN.0 + 0x30));
    assert_eq!(transaction.commit_time, samples::commit_time());
    assert_eq!(transaction.xid, 742);
}

#[test]
fn inserts_become_typed_rows_with_shared_column_names() {
    let transaction = run(vec![insert_user(7, "ada"), insert_user(8, "bob")]).unwrap();
    let expected = Row::new()
        .with("id", Value::Int64(7))
        .with("name", Value::Text("ada".into()))
        .with("bio", Value::Null);
    assert_eq!(
        transaction.changes[0].operation,
        Operation::Insert { after: expected }
    );
    assert_eq!(transaction.changes[0].table, users());
    let names = |index: usize| {
        transaction.changes[index].after().unwrap().columns()[0]
            .name
            .clone()
    };
    assert!(std::sync::Arc::ptr_eq(&names(0), &names(1)));
}

#[test]
fn updates_carry_key_before_and_unchanged_toast() {
    let key_update = Message::Update(Update {
        relation_id: USERS,
        old: Some(OldTuple::Key(tuple(vec![
            text("1"),
            TupleValue::Null,
            TupleValue::Null,
        ]))),
        new: tuple(vec![text("2"), text("ada"), TupleValue::UnchangedToast]),
    });
    let plain_update = Message::Update(Update {
        relation_id: USERS,
        old: None,
        new: tuple(vec![text("2"), text("eve"), text("bio")]),
    });
    let full_update = Message::Update(Update {
        relation_id: EVENTS,
        old: Some(OldTuple::Full(tuple(vec![text("1"), text("{}")]))),
        new: tuple(vec![text("1"), text("[1]")]),
    });
    let transaction = run(vec![key_update, plain_update, full_update]).unwrap();
    let Operation::Update { key, before, after } = &transaction.changes[0].operation else {
        panic!("not an update");
    };
    assert_eq!(key.as_ref(), Some(&Row::new().with("id", Value::Int64(1))));
    assert_eq!(before, &None);
    assert_eq!(after.get("bio"), Some(&Value::Unchanged));
    let Operation::Update { key, before, .. } = &transaction.changes[1].operation else {
        panic!("not an update");
    };
    assert_eq!((key, before), (&None, &None));
    let full_before = Row::new()
        .with("id", Value::Int32(1))
        .with("payload", Value::Json(serde_json::json!({})));
    assert_eq!(transaction.changes[2].before(), Some(&full_before));
    assert_eq!(transaction.changes[2].old_key(), None);
    assert_eq!(
        transaction.changes[2].table,
        TableRef::new("audit", "events")
    );
}

#[test]
fn deletes_carry_key_or_whole_old_row() {
    let by_key = Message::Delete(Delete {
        relation_id: USERS,
        old: OldTuple::Key(tuple(vec![text("5"), TupleValue::Null, TupleValue::Null])),
    });
    let full = Message::Delete(Delete {
        relation_id: EVENTS,
        old: OldTuple::Full(tuple(vec![text("9"), TupleValue::Null])),
    });
    let transaction = run(vec![by_key, full]).unwrap();
    let key = Row::new().with("id", Value::Int64(5));
    assert_eq!(
        transaction.changes[0].operation,
        Operation::Delete {
            key: Some(key),
            before: None
        }
    );
    let before = Row::new()
        .with("id", Value::Int32(9))
        .with("payload", Value::Null);
    assert_eq!(
        transaction.changes[1].operation,
        Operation::Delete {
            key: None,
            before: Some(before)
        }
    );
}

#[test]
fn a_truncate_of_n_tables_is_n_changes() {
    let truncate = Message::Truncate(Truncate {
        options: TruncateOptions::default(),
        relation_ids: vec![USERS, EVENTS, USERS],
    });
    let transaction = run(vec![insert_user(1, "a"), truncate]).unwrap();
    let truncated: Vec<(u32, String)> = transaction.changes[1..]
        .iter()
        .map(|change| {
            assert_eq!(change.operation, Operation::Truncate);
            let Position::Postgres { ordinal, .. } = change.position else {
                panic!("not a postgres position");
            };
            (ordinal, change.table.to_string())
        })
        .collect();
    let expected = [
        (1, "public.users"),
        (2, "audit.events"),
        (3, "public.users"),
    ];
    let expected: Vec<(u32, String)> = expected.map(|(o, t)| (o, t.to_owned())).to_vec();
    assert_eq!(truncated, expected);
}

#[test]
fn origins_and_logical_messages_are_recorded_or_handed_out() {
    let mut assembler = assembler();
    let heartbeat = Message::Message(samples::heartbeat(false));
    let handed = assembler.feed(heartbeat.clone()).unwrap();
    assert_eq!(handed, Some(Assembled::Message(samples::heartbeat(false))));
    assembler.feed(begin()).unwrap();
    assert!(assembler.in_transaction());
    let origin = Origin {
        commit_lsn: Lsn(3),
        name: "up".to_owned(),
    };
    assembler.feed(Message::Origin(origin.clone())).unwrap();
    let inside = assembler.feed(heartbeat).unwrap();
    assert_eq!(inside, Some(Assembled::Message(samples::heartbeat(false))));
    let transactional = Message::Message(samples::heartbeat(true));
    assert_eq!(assembler.feed(transactional).unwrap(), None);
    let Some(Assembled::Transaction(transaction)) = assembler.feed(commit()).unwrap() else {
        panic!("no transaction");
    };
    assert!(!assembler.in_transaction());
    assert_eq!(transaction.origins, [origin]);
    assert_eq!(transaction.messages, [samples::heartbeat(true)]);
    assert!(transaction.changes.is_empty());
}

#[test]
fn changes_taken_before_the_commit_keep_the_ordinals_counting() {
    let mut assembler = assembler();
    assembler.feed(begin()).unwrap();
    for id in 0..5 {
        assembler.feed(insert_user(id, "row")).unwrap();
    }
    assert_eq!(assembler.open_changes().len(), 5);
    assembler.discard_changes_from(4);
    let first = assembler.take_changes(3);
    assert_eq!(first.len(), 3);
    assert!(assembler.in_transaction());
    assert!(assembler.take_changes(0).is_empty());
    // The discarded change's message comes again: it gets the ordinal it had.
    assembler.feed(insert_user(4, "row")).unwrap();
    let Some(Assembled::Transaction(rest)) = assembler.feed(commit()).unwrap() else {
        panic!("no transaction at the commit");
    };
    let ordinals: Vec<Position> = first
        .iter()
        .chain(&rest.changes)
        .map(|c| c.position)
        .collect();
    let expected: Vec<Position> = (0..5).map(|o| Position::postgres(COMMIT_LSN, o)).collect();
    assert_eq!(ordinals, expected);
    assert!(assembler.open_changes().is_empty());
    assert!(assembler.take_changes(1).is_empty());
}
