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
//!
//! # Decisions
//!
//! - Protocol version 1 only: the tags of streamed and two-phase transactions (`S`, `E`, `c`,
//!   `A`, `P`, `K`, `r`, `b`, …) are [`DecodeError::UnknownTag`], never skipped.
//! - Flag bytes (Commit, Message, column flags, Truncate options) keep unknown bits, so a
//!   newer server's flags are not silently dropped by decoding.
//! - Counts from the wire never size an allocation beyond what the remaining bytes can hold.
//! - A value in binary format (`b`) decodes as bytes, but turning it into a [`Value`] is a
//!   [`ValueParseError::BinaryFormat`]: surefoot asks for text and does not guess binary layouts.
//! - Valid values the Rust types cannot hold (`infinity` dates and timestamps, `24:00:00`, years
//!   beyond chrono's range) are kept exactly as [`Value::Other`] with their type's name.
//! - Names of types from Type messages are schema-qualified unless the schema is `pg_catalog`.
//! - Changes of a transaction stay inside the assembler until its Commit, unless the caller takes
//!   them out earlier ([`TransactionAssembler::take_changes`]: the source does, to bound a large
//!   transaction's memory), the ordinals counting on; Origin messages and
//!   transactional logical messages are kept on the [`CompletedTransaction`]; a
//!   non-transactional logical message is handed out at once, wherever it arrives.
//! - A Truncate's `CASCADE`/`RESTART IDENTITY` options are decoded but not carried by the
//!   shared [`Change`] model, which has a bare truncate.
//!
//! [`Value`]: surefoot_core_model::Value
//! [`Value::Other`]: surefoot_core_model::Value::Other
//! [`Change`]: surefoot_core_model::Change

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
