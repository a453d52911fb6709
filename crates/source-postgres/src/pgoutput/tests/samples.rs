//! One hand-written message of each kind, shared by the unit tests.

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use surefoot_core_model::Lsn;

use crate::pgoutput::{
    Assembled, AssemblyError, Begin, Commit, CompletedTransaction, Delete, Insert, LogicalMessage,
    Message, Oid, OldTuple, Origin, Relation, RelationColumn, ReplicaIdentity,
    TransactionAssembler, Truncate, TruncateOptions, TupleData, TupleValue, TypeInfo, Update, oids,
};

/// The relation id of [`users_relation`].
pub(crate) const USERS: Oid = 16_384;
/// The relation id of [`events_relation`].
pub(crate) const EVENTS: Oid = 16_390;
/// The commit LSN of the sample transaction.
pub(crate) const COMMIT_LSN: Lsn = Lsn(0x16_B374_D848);

pub(crate) fn commit_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5)
        .single()
        .unwrap_or_else(|| panic!("valid sample time"))
}

pub(crate) fn text(value: &str) -> TupleValue {
    TupleValue::Text(Bytes::copy_from_slice(value.as_bytes()))
}

pub(crate) fn tuple(values: Vec<TupleValue>) -> TupleData {
    TupleData { values }
}

fn column(flags: u8, name: &str, type_oid: Oid) -> RelationColumn {
    RelationColumn {
        flags,
        name: name.to_owned(),
        type_oid,
        type_modifier: -1,
    }
}

/// `public.users (id int8 key, name text, bio text)`, replica identity default.
pub(crate) fn users_relation() -> Relation {
    Relation {
        id: USERS,
        namespace: "public".to_owned(),
        name: "users".to_owned(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            column(1, "id", oids::INT8),
            column(0, "name", oids::TEXT),
            column(0, "bio", oids::TEXT),
        ],
    }
}

/// `audit.events (id int4, payload jsonb)`, replica identity full (every column flagged key).
pub(crate) fn events_relation() -> Relation {
    Relation {
        id: EVENTS,
        namespace: "audit".to_owned(),
        name: "events".to_owned(),
        replica_identity: ReplicaIdentity::Full,
        columns: vec![
            column(1, "id", oids::INT4),
            column(1, "payload", oids::JSONB),
        ],
    }
}

pub(crate) fn begin() -> Message {
    Message::Begin(Begin {
        final_lsn: COMMIT_LSN,
        commit_time: commit_time(),
        xid: 742,
    })
}

pub(crate) fn commit() -> Message {
    Message::Commit(Commit {
        flags: 0,
        commit_lsn: COMMIT_LSN,
        end_lsn: Lsn(COMMIT_LSN.0 + 0x30),
        commit_time: commit_time(),
    })
}

pub(crate) fn insert_user(id: i64, name: &str) -> Message {
    Message::Insert(Insert {
        relation_id: USERS,
        new: tuple(vec![text(&id.to_string()), text(name), TupleValue::Null]),
    })
}

pub(crate) fn heartbeat(transactional: bool) -> LogicalMessage {
    LogicalMessage {
        flags: u8::from(transactional),
        lsn: Lsn(0x99),
        prefix: "surefoot.heartbeat".to_owned(),
        content: Bytes::from_static(b"beat"),
    }
}

/// One message of every kind, with every tuple marker and value kind.
pub(crate) fn one_of_each() -> Vec<Message> {
    vec![
        begin(),
        commit(),
        Message::Origin(Origin {
            commit_lsn: Lsn(7),
            name: "upstream".to_owned(),
        }),
        Message::Relation(users_relation()),
        Message::Type(TypeInfo {
            id: 50_000,
            namespace: "public".to_owned(),
            name: "mood".to_owned(),
        }),
        insert_user(1, "ada"),
        Message::Update(Update {
            relation_id: USERS,
            old: Some(OldTuple::Key(tuple(vec![
                text("1"),
                TupleValue::Null,
                TupleValue::Null,
            ]))),
            new: tuple(vec![text("2"), text("ada"), TupleValue::UnchangedToast]),
        }),
        Message::Update(Update {
            relation_id: EVENTS,
            old: Some(OldTuple::Full(tuple(vec![text("1"), text("{}")]))),
            new: tuple(vec![
                text("1"),
                TupleValue::Binary(Bytes::from_static(&[0, 1])),
            ]),
        }),
        Message::Delete(Delete {
            relation_id: USERS,
            old: OldTuple::Key(tuple(vec![text("2"), TupleValue::Null, TupleValue::Null])),
        }),
        Message::Truncate(Truncate {
            options: TruncateOptions(TruncateOptions::CASCADE),
            relation_ids: vec![USERS, EVENTS],
        }),
        Message::Message(heartbeat(false)),
    ]
}

pub(crate) fn assembler() -> TransactionAssembler {
    let mut assembler = TransactionAssembler::new();
    for relation in [users_relation(), events_relation()] {
        assert_eq!(assembler.feed(Message::Relation(relation)).unwrap(), None);
    }
    assembler
}

/// Feeds Begin, `changes` and Commit; returns the completed transaction.
pub(crate) fn run(changes: Vec<Message>) -> Result<CompletedTransaction, AssemblyError> {
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
