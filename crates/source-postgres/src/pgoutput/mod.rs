//! Our own decoder of PostgreSQL's `pgoutput` logical replication protocol, version 1.
//!
//! Pure and I/O-free, in three steps:
//!
//! 1. [`decode`] turns the payload of one XLogData message into a typed [`Message`]. Every
//!    malformed input (truncated, unknown tag, broken UTF-8, trailing bytes) is a
//!    [`DecodeError`] naming the message and the field; nothing panics or reads out of bounds.
//! 2. [`TransactionAssembler::feed`] takes the messages of one connection in order. It keeps the
//!    [`RelationCache`] (relations and type names, relearnt after every reconnect through
//!    [`TransactionAssembler::reset`]) and, at each Commit, hands out a [`CompletedTransaction`]
//!    whose [`Change`](surefoot_core_model::Change)s carry the positions (commit LSN, ordinal).
//! 3. Column values are parsed from text into typed [`Value`](surefoot_core_model::Value)s by
//!    type OID ([`parse_text`]); unchanged TOAST columns become
//!    [`Value::Unchanged`](surefoot_core_model::Value::Unchanged), never a placeholder.
//!
//! The decoder expects the source's session settings: `proto_version '1'`, text format (no
//! `binary`), `DateStyle=ISO` and `bytea_output` hex or escape. Anything else surfaces as a
//! typed error rather than a misread value.

mod assembly_error;
mod bodies;
mod bytea;
mod cursor;
mod decode_error;
mod messages;
mod relations;
mod rows;
mod temporal;
mod transaction;
mod tuple;
mod type_names;
mod values;

#[cfg(test)]
mod encode;
#[cfg(test)]
mod tests;

pub use assembly_error::AssemblyError;
pub(crate) use cursor::timestamp_from_postgres_micros;
pub use decode_error::{DecodeError, Field, MessageKind};
pub use messages::{
    Begin, Commit, Delete, Insert, LogicalMessage, Message, Oid, OldTuple, Origin, Relation,
    RelationColumn, ReplicaIdentity, Truncate, TruncateOptions, TypeInfo, Update, decode,
    decode_bytes,
};
pub use relations::{CachedColumn, CachedRelation, RelationCache, UnknownRelation};
pub use rows::{ColumnValueError, RowError};
pub use transaction::{Assembled, CompletedTransaction, TransactionAssembler};
pub use tuple::{TupleData, TupleValue};
pub use type_names::{TypeNames, built_in_type_name, oids};
pub use values::{ValueParseError, parse_text, parse_tuple_value};
