//! The messages of pgoutput protocol version 1, and [`decode`].
//!
//! Layouts follow PostgreSQL's "Logical Replication Message Formats". Fields that only exist in
//! protocol versions 2 and later (streamed transactions, two-phase commit) are not decoded: a
//! stream of those tags is an [`DecodeError::UnknownTag`], never guessed at.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use surefoot_core_model::Lsn;

use super::bodies;
use super::cursor::Cursor;
use super::decode_error::{DecodeError, MessageKind};
use super::tuple::TupleData;

/// A PostgreSQL object id (relations, types).
pub type Oid = u32;

/// One decoded pgoutput message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `B`: a transaction starts.
    Begin(Begin),
    /// `C`: the transaction ends.
    Commit(Commit),
    /// `O`: the transaction came from another origin.
    Origin(Origin),
    /// `R`: a table's schema, sent before the first change to it on each connection.
    Relation(Relation),
    /// `Y`: a user-defined type's name, sent before a relation that uses it.
    Type(TypeInfo),
    /// `I`: an inserted row.
    Insert(Insert),
    /// `U`: an updated row.
    Update(Update),
    /// `D`: a deleted row.
    Delete(Delete),
    /// `T`: truncated tables.
    Truncate(Truncate),
    /// `M`: a logical decoding message.
    Message(LogicalMessage),
}

impl Message {
    /// The message's kind.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Begin(_) => MessageKind::Begin,
            Message::Commit(_) => MessageKind::Commit,
            Message::Origin(_) => MessageKind::Origin,
            Message::Relation(_) => MessageKind::Relation,
            Message::Type(_) => MessageKind::Type,
            Message::Insert(_) => MessageKind::Insert,
            Message::Update(_) => MessageKind::Update,
            Message::Delete(_) => MessageKind::Delete,
            Message::Truncate(_) => MessageKind::Truncate,
            Message::Message(_) => MessageKind::Message,
        }
    }
}

/// `B`: a transaction starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// The LSN of the transaction's commit record (equals the Commit's `commit_lsn`).
    pub final_lsn: Lsn,
    /// When the transaction committed.
    pub commit_time: DateTime<Utc>,
    /// The transaction id.
    pub xid: u32,
}

/// `C`: the transaction ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Flags; currently always 0.
    pub flags: u8,
    /// The LSN of the commit record.
    pub commit_lsn: Lsn,
    /// The LSN just past the commit record: what to confirm once the transaction is delivered.
    pub end_lsn: Lsn,
    /// When the transaction committed.
    pub commit_time: DateTime<Utc>,
}

/// `O`: the transaction was replicated from another origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The commit LSN on the origin server.
    pub commit_lsn: Lsn,
    /// The origin's name.
    pub name: String,
}

/// A table's replica identity (`pg_class.relreplident`): what an update or delete sends of the
/// old row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaIdentity {
    /// `d`: the primary key.
    Default,
    /// `n`: nothing.
    Nothing,
    /// `f`: every column.
    Full,
    /// `i`: the columns of a chosen unique index.
    Index,
}

impl ReplicaIdentity {
    /// The setting's byte on the wire.
    pub fn byte(self) -> u8 {
        match self {
            ReplicaIdentity::Default => b'd',
            ReplicaIdentity::Nothing => b'n',
            ReplicaIdentity::Full => b'f',
            ReplicaIdentity::Index => b'i',
        }
    }

    /// The setting whose byte is `byte`, if any.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            b'd' => Some(ReplicaIdentity::Default),
            b'n' => Some(ReplicaIdentity::Nothing),
            b'f' => Some(ReplicaIdentity::Full),
            b'i' => Some(ReplicaIdentity::Index),
            _ => None,
        }
    }
}

/// `R`: a table's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The relation's OID, which later changes refer to.
    pub id: Oid,
    /// The schema; empty for `pg_catalog`.
    pub namespace: String,
    /// The table's name.
    pub name: String,
    /// What updates and deletes send of the old row.
    pub replica_identity: ReplicaIdentity,
    /// The published columns, in the order tuples carry them.
    pub columns: Vec<RelationColumn>,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Flags: [`RelationColumn::KEY_FLAG`] marks a replica identity column; other bits are kept.
    pub flags: u8,
    /// The column's name.
    pub name: String,
    /// The OID of the column's type.
    pub type_oid: Oid,
    /// The type modifier (`atttypmod`), -1 when none.
    pub type_modifier: i32,
}

impl RelationColumn {
    /// The flag bit marking a column that is part of the replica identity key.
    pub const KEY_FLAG: u8 = 1;

    /// Whether the column is part of the replica identity key.
    pub fn is_key(&self) -> bool {
        self.flags & Self::KEY_FLAG != 0
    }
}

/// `Y`: a data type's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeInfo {
    /// The type's OID.
    pub id: Oid,
    /// The type's schema; empty for `pg_catalog`.
    pub namespace: String,
    /// The type's name.
    pub name: String,
}

/// `I`: an inserted row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// The relation's OID.
    pub relation_id: Oid,
    /// The new row (`N`).
    pub new: TupleData,
}

/// The old row an update or delete sends, by replica identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: the key columns (the others are null).
    Key(TupleData),
    /// `O`: the whole old row (replica identity `FULL`).
    Full(TupleData),
}

/// `U`: an updated row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The relation's OID.
    pub relation_id: Oid,
    /// The old row, when the key changed or the identity is `FULL`.
    pub old: Option<OldTuple>,
    /// The new row (`N`).
    pub new: TupleData,
}

/// `D`: a deleted row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// The relation's OID.
    pub relation_id: Oid,
    /// The old row's key or whole old row.
    pub old: OldTuple,
}

/// The option bits of a [`Truncate`]; unknown bits are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TruncateOptions(pub u8);

impl TruncateOptions {
    /// `TRUNCATE ... CASCADE`.
    pub const CASCADE: u8 = 1;
    /// `TRUNCATE ... RESTART IDENTITY`.
    pub const RESTART_IDENTITY: u8 = 2;

    /// Whether the truncate cascaded.
    pub fn cascade(self) -> bool {
        self.0 & Self::CASCADE != 0
    }

    /// Whether sequences owned by the tables were restarted.
    pub fn restart_identity(self) -> bool {
        self.0 & Self::RESTART_IDENTITY != 0
    }
}

/// `T`: one `TRUNCATE` of one or more tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// `CASCADE` and `RESTART IDENTITY`.
    pub options: TruncateOptions,
    /// The OIDs of the truncated relations.
    pub relation_ids: Vec<Oid>,
}

/// `M`: a logical decoding message written with `pg_logical_emit_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage {
    /// Flags: [`LogicalMessage::TRANSACTIONAL_FLAG`]; other bits are kept.
    pub flags: u8,
    /// The LSN of the message.
    pub lsn: Lsn,
    /// The prefix the writer chose, e.g. `surefoot.heartbeat`.
    pub prefix: String,
    /// The content.
    pub content: Bytes,
}

impl LogicalMessage {
    /// The flag bit of a message that belongs to its transaction.
    pub const TRANSACTIONAL_FLAG: u8 = 1;

    /// Whether the message belongs to its transaction (else it was sent at once).
    pub fn is_transactional(&self) -> bool {
        self.flags & Self::TRANSACTIONAL_FLAG != 0
    }
}

/// Decodes one pgoutput message (the payload of an XLogData message).
///
/// Copies `input` once; use [`decode_bytes`] to share a buffer the caller already holds.
pub fn decode(input: &[u8]) -> Result<Message, DecodeError> {
    decode_bytes(Bytes::copy_from_slice(input))
}

/// Decodes one pgoutput message; values and contents share `input`'s memory.
pub fn decode_bytes(mut input: Bytes) -> Result<Message, DecodeError> {
    let Some(&tag) = input.first() else {
        return Err(DecodeError::Empty);
    };
    let kind = MessageKind::from_tag(tag).ok_or(DecodeError::UnknownTag { tag })?;
    let mut cursor = Cursor::new(kind, input.split_off(1));
    let message = bodies::read_body(&mut cursor)?;
    cursor.finish()?;
    Ok(message)
}
