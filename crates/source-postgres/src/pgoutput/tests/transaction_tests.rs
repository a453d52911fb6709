//! Unit tests of the transaction assembler and the relation cache.

use std::collections::HashSet;

use surefoot_core_lifecycle::{Classify, ErrorClass};
use surefoot_core_model::{Lsn, Operation, Position, Row, TableRef, Value};

use super::samples::{
    self, COMMIT_LSN, EVENTS, USERS, begin, commit, events_relation, insert_user, text, tuple,
    users_relation,
};
use crate::pgoutput::{
    Assembled, AssemblyError, Commit, CompletedTransaction, Delete, Insert, Message, MessageKind,
    OldTuple, Origin, Relation, RelationCache, RowError, Truncate, TruncateOptions, TupleValue,
    TypeInfo, Update, ValueParseError,
};

fn assembler() -> crate::pgoutput::TransactionAssembler {
    let mut assembler = crate::pgoutput::TransactionAssembler::new();
    for relation in [users_relation(), events_relation()] {
        assert_eq!(assembler.feed(Message::Relation(relation)).unwrap(), None);
    }
    assembler
}

/// Feeds Begin, `changes` and Commit; returns the completed transaction.
fn run(changes: Vec<Message>) -> Result<CompletedTransaction, AssemblyError> {
    let mut assembler = assembler();
    assembler.feed(begin())?;
    for change in changes {
        assert_eq!(assembler.feed(change)?, None);
    }
    match assembler.feed(commit())? {
        Some(Assembled::Transaction(transaction)) => Ok(transaction),
        other => panic!("commit gave {other:?}"),
    }
}

fn users() -> TableRef {
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

fn protocol_error(messages: Vec<Message>) -> AssemblyError {
    let mut assembler = assembler();
    for message in messages {
        if let Err(error) = assembler.feed(message) {
            return error;
        }
    }
    panic!("no error");
}

#[test]
fn protocol_violations_are_typed_errors() {
    let outside = |message: Message| {
        let kind = message.kind();
        let error = protocol_error(vec![message]);
        assert!(
            matches!(error, AssemblyError::OutsideTransaction { message } if message == kind),
            "{error:?}"
        );
        assert_eq!(error.class(), ErrorClass::Permanent);
        assert!(error.to_string().contains("outside a transaction"));
    };
    outside(insert_user(1, "a"));
    outside(Message::Truncate(Truncate {
        options: TruncateOptions::default(),
        relation_ids: vec![99],
    }));
    outside(commit());
    outside(Message::Origin(Origin {
        commit_lsn: Lsn(1),
        name: String::new(),
    }));
    outside(Message::Message(samples::heartbeat(true)));

    let nested = protocol_error(vec![begin(), begin()]);
    assert!(
        matches!(nested, AssemblyError::NestedBegin { open_final_lsn, new_final_lsn }
        if open_final_lsn == COMMIT_LSN && new_final_lsn == COMMIT_LSN)
    );
    assert!(nested.to_string().contains("is open"));

    let other_commit = Message::Commit(Commit {
        flags: 0,
        commit_lsn: Lsn(1),
        end_lsn: Lsn(2),
        commit_time: samples::commit_time(),
    });
    let mismatch = protocol_error(vec![begin(), other_commit]);
    assert!(matches!(
        mismatch,
        AssemblyError::CommitLsnMismatch { begin_final_lsn, commit_lsn }
            if begin_final_lsn == COMMIT_LSN && commit_lsn == Lsn(1)
    ));
    assert!(mismatch.to_string().contains("0/1"));
}

#[test]
fn unknown_relations_are_errors_and_reset_forgets_everything() {
    let unknown = Message::Insert(Insert {
        relation_id: 4_242,
        new: tuple(vec![]),
    });
    let error = protocol_error(vec![begin(), unknown]);
    assert!(matches!(
        &error,
        AssemblyError::UnknownRelation { message: MessageKind::Insert, source } if source.relation_id == 4_242
    ));
    assert!(error.to_string().contains("relation 4242"));
    assert!(std::error::Error::source(&error).is_some());

    let mut assembler = assembler();
    assembler.feed(begin()).unwrap();
    assert_eq!(assembler.relations().len(), 2);
    assembler.reset();
    assert!(!assembler.in_transaction());
    assert!(assembler.relations().is_empty());
    assembler.feed(begin()).unwrap();
    let relearn = assembler.feed(insert_user(1, "a"));
    assert!(matches!(
        relearn,
        Err(AssemblyError::UnknownRelation { .. })
    ));
    let truncate = Message::Truncate(Truncate {
        options: TruncateOptions::default(),
        relation_ids: vec![USERS],
    });
    assert!(matches!(
        assembler.feed(truncate),
        Err(AssemblyError::UnknownRelation {
            message: MessageKind::Truncate,
            ..
        })
    ));
}

fn row_error(change: Message) -> RowError {
    match run(vec![change]) {
        Err(AssemblyError::Row { source, .. }) => source,
        other => panic!("expected a row error, got {other:?}"),
    }
}

#[test]
fn tuples_that_do_not_fit_their_relation_are_errors() {
    let short = row_error(Message::Insert(Insert {
        relation_id: USERS,
        new: tuple(vec![text("1")]),
    }));
    assert!(matches!(
        &short,
        RowError::ColumnCountMismatch {
            expected: 3,
            received: 1,
            ..
        }
    ));
    assert!(short.to_string().contains("public.users has 1 columns"));
    assert_eq!(short.class(), ErrorClass::Permanent);

    let bad_value = row_error(Message::Update(Update {
        relation_id: USERS,
        old: None,
        new: tuple(vec![text("x"), TupleValue::Null, TupleValue::Null]),
    }));
    let RowError::Value(error) = &bad_value else {
        panic!("not a value error: {bad_value:?}");
    };
    assert_eq!(error.table, users());
    assert_eq!(&*error.column, "id");
    assert_eq!(error.type_name, "int8");
    assert!(matches!(error.source, ValueParseError::Integer { .. }));
    assert!(
        bad_value
            .to_string()
            .contains("public.users.id (type int8)")
    );

    let mut keyless = users_relation();
    keyless
        .columns
        .iter_mut()
        .for_each(|column| column.flags = 0);
    let mut assembler = assembler();
    assembler.feed(Message::Relation(keyless)).unwrap();
    assembler.feed(begin()).unwrap();
    let delete = Message::Delete(Delete {
        relation_id: USERS,
        old: OldTuple::Key(tuple(vec![text("1"), TupleValue::Null, TupleValue::Null])),
    });
    let error = assembler.feed(delete).unwrap_err();
    assert!(matches!(
        &error,
        AssemblyError::Row {
            message: MessageKind::Delete,
            source: RowError::NoKeyColumns { .. }
        }
    ));
    assert!(error.to_string().contains("marks no key column"));
}

#[test]
fn relation_cache_maps_pg_catalog_and_learns_types() {
    let mut cache = RelationCache::new();
    cache.learn_relation(Relation {
        namespace: String::new(),
        ..users_relation()
    });
    cache.learn_type(&TypeInfo {
        id: 70_000,
        namespace: "app".to_owned(),
        name: "mood".to_owned(),
    });
    let relation = cache.get(USERS).unwrap();
    assert_eq!(relation.table, TableRef::new("pg_catalog", "users"));
    assert!(relation.columns[0].is_key && !relation.columns[1].is_key);
    assert_eq!(cache.types().name(70_000), "app.mood");
    assert_eq!(cache.len(), 1);
    cache.clear();
    assert!(cache.is_empty());
    assert_eq!(cache.types().name(70_000), "oid:70000");
    let missing = cache.get(USERS).unwrap_err();
    assert_eq!(missing.relation_id, USERS);
    assert_eq!(missing.class(), ErrorClass::Permanent);
}

#[test]
fn type_messages_name_uninterpreted_columns() {
    let mut assembler = crate::pgoutput::TransactionAssembler::new();
    let type_info = TypeInfo {
        id: 70_000,
        namespace: "public".to_owned(),
        name: "mood".to_owned(),
    };
    assembler.feed(Message::Type(type_info)).unwrap();
    let mut relation = users_relation();
    relation.columns[2].type_oid = 70_000;
    assembler.feed(Message::Relation(relation)).unwrap();
    assembler.feed(begin()).unwrap();
    let insert = Message::Insert(Insert {
        relation_id: USERS,
        new: tuple(vec![text("1"), text("a"), text("happy")]),
    });
    assembler.feed(insert).unwrap();
    let Some(Assembled::Transaction(transaction)) = assembler.feed(commit()).unwrap() else {
        panic!("no transaction");
    };
    let mood = transaction.changes[0].after().unwrap().get("bio").cloned();
    let expected = Value::Other {
        type_name: "public.mood".to_owned(),
        text: "happy".to_owned(),
    };
    assert_eq!(mood, Some(expected));
}
