//! proptest strategies for every message type.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use proptest::collection::vec;
use proptest::prelude::*;
use surefoot_core_model::Lsn;

use crate::pgoutput::cursor::timestamp_from_postgres_micros;
use crate::pgoutput::{
    Begin, Commit, Delete, Insert, LogicalMessage, Message, OldTuple, Origin, Relation,
    RelationColumn, ReplicaIdentity, Truncate, TruncateOptions, TupleData, TupleValue, TypeInfo,
    Update,
};

/// About ±190,000 years around 2000 in microseconds: inside what chrono holds.
const MICROS_RANGE: i64 = 6_000_000_000_000_000_000;

pub(crate) fn lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn)
}

pub(crate) fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    (-MICROS_RANGE..MICROS_RANGE).prop_map(|micros| {
        timestamp_from_postgres_micros(micros).unwrap_or_else(|| panic!("{micros} out of range"))
    })
}

/// Names: any text without NUL, including multi-byte characters.
pub(crate) fn name() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,12}"
}

fn payload() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

pub(crate) fn tuple_value() -> impl Strategy<Value = TupleValue> {
    prop_oneof![
        1 => Just(TupleValue::Null),
        1 => Just(TupleValue::UnchangedToast),
        3 => payload().prop_map(TupleValue::Text),
        1 => payload().prop_map(TupleValue::Binary),
    ]
}

pub(crate) fn tuple() -> impl Strategy<Value = TupleData> {
    vec(tuple_value(), 0..8).prop_map(|values| TupleData { values })
}

fn old_tuple() -> impl Strategy<Value = OldTuple> {
    prop_oneof![
        tuple().prop_map(OldTuple::Key),
        tuple().prop_map(OldTuple::Full)
    ]
}

fn replica_identity() -> impl Strategy<Value = ReplicaIdentity> {
    prop_oneof![
        Just(ReplicaIdentity::Default),
        Just(ReplicaIdentity::Nothing),
        Just(ReplicaIdentity::Full),
        Just(ReplicaIdentity::Index),
    ]
}

fn relation_column() -> impl Strategy<Value = RelationColumn> {
    (any::<u8>(), name(), any::<u32>(), any::<i32>()).prop_map(
        |(flags, name, type_oid, type_modifier)| RelationColumn {
            flags,
            name,
            type_oid,
            type_modifier,
        },
    )
}

fn relation() -> impl Strategy<Value = Relation> {
    (
        any::<u32>(),
        name(),
        name(),
        replica_identity(),
        vec(relation_column(), 0..6),
    )
        .prop_map(
            |(id, namespace, name, replica_identity, columns)| Relation {
                id,
                namespace,
                name,
                replica_identity,
                columns,
            },
        )
}

fn begin() -> impl Strategy<Value = Begin> {
    (lsn(), timestamp(), any::<u32>()).prop_map(|(final_lsn, commit_time, xid)| Begin {
        final_lsn,
        commit_time,
        xid,
    })
}

fn commit() -> impl Strategy<Value = Commit> {
    (any::<u8>(), lsn(), lsn(), timestamp()).prop_map(
        |(flags, commit_lsn, end_lsn, commit_time)| Commit {
            flags,
            commit_lsn,
            end_lsn,
            commit_time,
        },
    )
}

fn logical_message() -> impl Strategy<Value = LogicalMessage> {
    (any::<u8>(), lsn(), name(), payload()).prop_map(|(flags, lsn, prefix, content)| {
        LogicalMessage {
            flags,
            lsn,
            prefix,
            content,
        }
    })
}

fn change_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u32>(), tuple())
            .prop_map(|(relation_id, new)| Message::Insert(Insert { relation_id, new })),
        (any::<u32>(), proptest::option::of(old_tuple()), tuple()).prop_map(
            |(relation_id, old, new)| Message::Update(Update {
                relation_id,
                old,
                new
            })
        ),
        (any::<u32>(), old_tuple())
            .prop_map(|(relation_id, old)| Message::Delete(Delete { relation_id, old })),
        (any::<u8>(), vec(any::<u32>(), 0..6)).prop_map(|(options, relation_ids)| {
            Message::Truncate(Truncate {
                options: TruncateOptions(options),
                relation_ids,
            })
        }),
    ]
}

/// Any message of protocol version 1.
pub(crate) fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        1 => begin().prop_map(Message::Begin),
        1 => commit().prop_map(Message::Commit),
        1 => (lsn(), name()).prop_map(|(commit_lsn, name)| Message::Origin(Origin { commit_lsn, name })),
        1 => relation().prop_map(Message::Relation),
        1 => (any::<u32>(), name(), name()).prop_map(|(id, namespace, name)| {
            Message::Type(TypeInfo {
                id,
                namespace,
                name,
            })
        }),
        4 => change_message(),
        1 => logical_message().prop_map(Message::Message),
    ]
}
