//! Why bytes are not a pgoutput message: every variant names the message and the field.

use std::fmt;

use surefoot_core_lifecycle::{Classify, ErrorClass};

/// The kinds of pgoutput message, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// `B`: start of a transaction.
    Begin,
    /// `C`: end of a transaction.
    Commit,
    /// `O`: the origin of a transaction.
    Origin,
    /// `R`: a table's schema.
    Relation,
    /// `Y`: a data type's name.
    Type,
    /// `I`: an inserted row.
    Insert,
    /// `U`: an updated row.
    Update,
    /// `D`: a deleted row.
    Delete,
    /// `T`: truncated tables.
    Truncate,
    /// `M`: a logical decoding message (`pg_logical_emit_message`).
    Message,
}

impl MessageKind {
    /// The message's tag byte on the wire.
    pub fn tag(self) -> u8 {
        match self {
            MessageKind::Begin => b'B',
            MessageKind::Commit => b'C',
            MessageKind::Origin => b'O',
            MessageKind::Relation => b'R',
            MessageKind::Type => b'Y',
            MessageKind::Insert => b'I',
            MessageKind::Update => b'U',
            MessageKind::Delete => b'D',
            MessageKind::Truncate => b'T',
            MessageKind::Message => b'M',
        }
    }

    /// The kind whose tag byte is `tag`, if any.
    pub fn from_tag(tag: u8) -> Option<Self> {
        const ALL: [MessageKind; 10] = [
            MessageKind::Begin,
            MessageKind::Commit,
            MessageKind::Origin,
            MessageKind::Relation,
            MessageKind::Type,
            MessageKind::Insert,
            MessageKind::Update,
            MessageKind::Delete,
            MessageKind::Truncate,
            MessageKind::Message,
        ];
        ALL.into_iter().find(|kind| kind.tag() == tag)
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A field of a pgoutput message, named in errors. Tuple fields carry the column's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// Begin: the final LSN of the transaction.
    FinalLsn,
    /// Begin and Commit: the commit timestamp.
    CommitTimestamp,
    /// Begin: the transaction id.
    Xid,
    /// Commit and Message: the flags byte.
    Flags,
    /// Commit: the LSN of the commit record.
    CommitLsn,
    /// Commit: the end LSN of the transaction.
    EndLsn,
    /// Origin: the commit LSN on the origin server.
    OriginLsn,
    /// Origin: the origin's name.
    OriginName,
    /// Relation, Insert, Update, Delete and Truncate: a relation id.
    RelationId,
    /// Relation: the schema.
    Namespace,
    /// Relation: the table's name.
    RelationName,
    /// Relation: the replica identity setting.
    ReplicaIdentity,
    /// Relation and tuple data: the number of columns.
    ColumnCount,
    /// Relation: the flags of the column at this index.
    ColumnFlags(u16),
    /// Relation: the name of the column at this index.
    ColumnName(u16),
    /// Relation: the type OID of the column at this index.
    ColumnType(u16),
    /// Relation: the type modifier of the column at this index.
    ColumnTypeModifier(u16),
    /// Type: the type's OID.
    TypeId,
    /// Type: the type's schema.
    TypeNamespace,
    /// Type: the type's name.
    TypeName,
    /// Insert, Update and Delete: the byte that says which tuple follows (`N`, `K` or `O`).
    TupleMarker,
    /// Tuple data: the kind byte (`n`, `u`, `t`, `b`) of the column at this index.
    ValueKind(u16),
    /// Tuple data: the length of the value of the column at this index.
    ValueLength(u16),
    /// Tuple data: the value of the column at this index.
    Value(u16),
    /// Truncate: the number of relations.
    RelationCount,
    /// Truncate: the option bits.
    TruncateOptions,
    /// Message: the LSN of the logical decoding message.
    MessageLsn,
    /// Message: the prefix.
    Prefix,
    /// Message: the length of the content.
    ContentLength,
    /// Message: the content.
    Content,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::ColumnFlags(index) => write!(f, "flags of column {index}"),
            Field::ColumnName(index) => write!(f, "name of column {index}"),
            Field::ColumnType(index) => write!(f, "type of column {index}"),
            Field::ColumnTypeModifier(index) => write!(f, "type modifier of column {index}"),
            Field::ValueKind(index) => write!(f, "value kind of column {index}"),
            Field::ValueLength(index) => write!(f, "value length of column {index}"),
            Field::Value(index) => write!(f, "value of column {index}"),
            other => fmt::Debug::fmt(other, f),
        }
    }
}

/// Why bytes are not a pgoutput (protocol version 1) message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input had no bytes at all.
    #[error("empty pgoutput message")]
    Empty,
    /// The first byte is not the tag of a protocol version 1 message.
    #[error("unknown pgoutput message tag {tag:#04x}")]
    UnknownTag {
        /// The rejected tag byte.
        tag: u8,
    },
    /// The message ended inside a field.
    #[error("{message} message truncated in {field}: needs {needed} bytes, {available} left")]
    Truncated {
        /// The message being decoded.
        message: MessageKind,
        /// The field being read.
        field: Field,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A string field has no terminating NUL byte.
    #[error("{message} message: {field} has no terminating NUL byte")]
    UnterminatedString {
        /// The message being decoded.
        message: MessageKind,
        /// The string field.
        field: Field,
    },
    /// A string field is not UTF-8.
    #[error("{message} message: {field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The message being decoded.
        message: MessageKind,
        /// The string field.
        field: Field,
        /// Where the UTF-8 is broken.
        #[source]
        source: std::str::Utf8Error,
    },
    /// A byte that must be one of a few letters is none of them.
    #[error("{message} message: unexpected byte {byte:#04x} in {field}")]
    UnexpectedByte {
        /// The message being decoded.
        message: MessageKind,
        /// The field holding the byte.
        field: Field,
        /// The rejected byte.
        byte: u8,
    },
    /// A length or count field is negative.
    #[error("{message} message: {field} is negative ({value})")]
    NegativeLength {
        /// The message being decoded.
        message: MessageKind,
        /// The length or count field.
        field: Field,
        /// The value read.
        value: i64,
    },
    /// A timestamp is outside what a `DateTime<Utc>` can hold.
    #[error("{message} message: {field} of {micros} µs since 2000-01-01 is out of range")]
    TimestampOutOfRange {
        /// The message being decoded.
        message: MessageKind,
        /// The timestamp field.
        field: Field,
        /// The value read: microseconds since 2000-01-01 00:00:00 UTC.
        micros: i64,
    },
    /// Bytes are left after the last field of the message.
    #[error("{message} message has {count} trailing bytes")]
    TrailingBytes {
        /// The message decoded.
        message: MessageKind,
        /// How many bytes were left over.
        count: usize,
    },
}

impl Classify for DecodeError {
    /// Permanent: the server sends the same bytes again after a reconnect.
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}
