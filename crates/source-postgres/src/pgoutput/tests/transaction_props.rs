//! Property test of the whole decoder: random transactions, encoded to wire bytes, decoded and
//! assembled, give exactly the expected changes at positions (commit LSN, 0..n).

use proptest::collection::vec;
use proptest::prelude::*;
use surefoot_core_model::{Change, Lsn, Position, Row, TableRef, Value};

use super::samples::{USERS, commit_time, text, tuple, users_relation};
use crate::pgoutput::encode::encode;
use crate::pgoutput::{
    Assembled, Begin, Commit, Delete, Insert, Message, OldTuple, TransactionAssembler, Truncate,
    TruncateOptions, TupleValue, Update, decode,
};

#[derive(Debug, Clone)]
enum RowOp {
    Insert {
        id: i64,
        name: Option<String>,
    },
    Update {
        old_id: Option<i64>,
        id: i64,
        name: Option<String>,
    },
    Delete {
        id: i64,
    },
    Truncate,
}

fn row_op() -> impl Strategy<Value = RowOp> {
    let name = proptest::option::of(".{0,8}");
    prop_oneof![
        4 => (any::<i64>(), name.clone()).prop_map(|(id, name)| RowOp::Insert { id, name }),
        2 => (proptest::option::of(any::<i64>()), any::<i64>(), name)
            .prop_map(|(old_id, id, name)| RowOp::Update { old_id, id, name }),
        2 => any::<i64>().prop_map(|id| RowOp::Delete { id }),
        1 => Just(RowOp::Truncate),
    ]
}

fn name_value(name: Option<&String>) -> (TupleValue, Value) {
    match name {
        Some(name) => (text(name), Value::Text(name.clone())),
        None => (TupleValue::Null, Value::Null),
    }
}

fn key_tuple(id: i64) -> OldTuple {
    OldTuple::Key(tuple(vec![
        text(&id.to_string()),
        TupleValue::Null,
        TupleValue::Null,
    ]))
}

/// The message for `op` and the change it must become at `position`.
fn message_and_change(op: &RowOp, position: Position) -> (Message, Change) {
    let table = TableRef::new("public", "users");
    let key_row = |id: i64| Row::new().with("id", Value::Int64(id));
    match op {
        RowOp::Insert { id, name } => {
            let (name_tuple, name_value) = name_value(name.as_ref());
            let new = tuple(vec![text(&id.to_string()), name_tuple, TupleValue::Null]);
            let after = key_row(*id)
                .with("name", name_value)
                .with("bio", Value::Null);
            let message = Message::Insert(Insert {
                relation_id: USERS,
                new,
            });
            (message, Change::insert(position, table, after))
        }
        RowOp::Update { old_id, id, name } => {
            let (name_tuple, name_value) = name_value(name.as_ref());
            let new = tuple(vec![
                text(&id.to_string()),
                name_tuple,
                TupleValue::UnchangedToast,
            ]);
            let after = key_row(*id)
                .with("name", name_value)
                .with("bio", Value::Unchanged);
            let old = old_id.map(key_tuple);
            let message = Message::Update(Update {
                relation_id: USERS,
                old,
                new,
            });
            (
                message,
                Change::update(position, table, old_id.map(key_row), None, after),
            )
        }
        RowOp::Delete { id } => {
            let message = Message::Delete(Delete {
                relation_id: USERS,
                old: key_tuple(*id),
            });
            (
                message,
                Change::delete(position, table, Some(key_row(*id)), None),
            )
        }
        RowOp::Truncate => {
            let message = Message::Truncate(Truncate {
                options: TruncateOptions::default(),
                relation_ids: vec![USERS],
            });
            (message, Change::truncate(position, table))
        }
    }
}

/// Encodes, decodes and feeds one message.
fn feed_wire(
    assembler: &mut TransactionAssembler,
    message: &Message,
) -> Result<Option<Assembled>, TestCaseError> {
    let decoded = decode(&encode(message)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    assembler
        .feed(decoded)
        .map_err(|e| TestCaseError::fail(e.to_string()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_transactions_assemble_into_the_expected_changes(
        ops in vec(row_op(), 0..64),
        final_lsn in 1..u64::MAX,
    ) {
        let commit_lsn = Lsn(final_lsn);
        let mut assembler = TransactionAssembler::new();
        feed_wire(&mut assembler, &Message::Relation(users_relation()))?;
        let begin = Begin { final_lsn: commit_lsn, commit_time: commit_time(), xid: 1 };
        feed_wire(&mut assembler, &Message::Begin(begin))?;
        let mut expected = Vec::new();
        for (ordinal, op) in (0..).zip(&ops) {
            let (message, change) = message_and_change(op, Position::postgres(commit_lsn, ordinal));
            prop_assert_eq!(feed_wire(&mut assembler, &message)?, None);
            expected.push(change);
        }
        let commit = Commit {
            flags: 0,
            commit_lsn,
            end_lsn: Lsn(final_lsn.saturating_add(1)),
            commit_time: commit_time(),
        };
        let Some(Assembled::Transaction(transaction)) =
            feed_wire(&mut assembler, &Message::Commit(commit))?
        else {
            return Err(TestCaseError::fail("no transaction at commit"));
        };
        prop_assert_eq!(transaction.changes, expected);
    }
}
