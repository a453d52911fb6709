//! Unit tests of the assembler's errors and of the relation cache.

use surefoot_core_lifecycle::{Classify, ErrorClass};
use surefoot_core_model::{Lsn, TableRef, Value};

use super::samples::{
    self, COMMIT_LSN, USERS, assembler, begin, commit, insert_user, run, text, tuple,
    users_relation,
};
use super::transaction_tests::users;
use crate::pgoutput::{
    Assembled, AssemblyError, Commit, Delete, Insert, Message, MessageKind, OldTuple, Origin,
    Relation, RelationCache, RowError, TransactionAssembler, Truncate, TruncateOptions, TupleValue,
    TypeInfo, Update, ValueParseError,
};

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
    let mut assembler = TransactionAssembler::new();
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
