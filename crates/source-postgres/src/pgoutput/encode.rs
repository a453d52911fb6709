//! A test encoder: writes every message type exactly as PostgreSQL's pgoutput does, so that
//! property tests can check that decoding inverts it.

use bytes::BufMut;
use chrono::{DateTime, Utc};

use super::cursor::postgres_micros_from_timestamp;
use super::messages::{LogicalMessage, Message, OldTuple, Relation};
use super::tuple::{TupleData, TupleValue};

/// The wire bytes of `message`.
pub(crate) fn encode(message: &Message) -> Vec<u8> {
    let mut out = vec![message.kind().tag()];
    write_body(&mut out, message);
    out
}

fn write_body(out: &mut Vec<u8>, message: &Message) {
    match message {
        Message::Begin(begin) => {
            out.put_u64(begin.final_lsn.0);
            write_timestamp(out, begin.commit_time);
            out.put_u32(begin.xid);
        }
        Message::Commit(commit) => {
            out.put_u8(commit.flags);
            out.put_u64(commit.commit_lsn.0);
            out.put_u64(commit.end_lsn.0);
            write_timestamp(out, commit.commit_time);
        }
        Message::Origin(origin) => {
            out.put_u64(origin.commit_lsn.0);
            write_string(out, &origin.name);
        }
        Message::Relation(relation) => write_relation(out, relation),
        Message::Type(info) => {
            out.put_u32(info.id);
            write_string(out, &info.namespace);
            write_string(out, &info.name);
        }
        Message::Insert(insert) => {
            out.put_u32(insert.relation_id);
            out.put_u8(b'N');
            write_tuple(out, &insert.new);
        }
        Message::Update(update) => {
            out.put_u32(update.relation_id);
            if let Some(old) = &update.old {
                write_old_tuple(out, old);
            }
            out.put_u8(b'N');
            write_tuple(out, &update.new);
        }
        Message::Delete(delete) => {
            out.put_u32(delete.relation_id);
            write_old_tuple(out, &delete.old);
        }
        Message::Truncate(truncate) => {
            out.put_u32(len_u32(truncate.relation_ids.len()));
            out.put_u8(truncate.options.0);
            for id in &truncate.relation_ids {
                out.put_u32(*id);
            }
        }
        Message::Message(message) => write_logical_message(out, message),
    }
}

fn write_relation(out: &mut Vec<u8>, relation: &Relation) {
    out.put_u32(relation.id);
    write_string(out, &relation.namespace);
    write_string(out, &relation.name);
    out.put_u8(relation.replica_identity.byte());
    out.put_u16(len_u16(relation.columns.len()));
    for column in &relation.columns {
        out.put_u8(column.flags);
        write_string(out, &column.name);
        out.put_u32(column.type_oid);
        out.put_i32(column.type_modifier);
    }
}

fn write_logical_message(out: &mut Vec<u8>, message: &LogicalMessage) {
    out.put_u8(message.flags);
    out.put_u64(message.lsn.0);
    write_string(out, &message.prefix);
    out.put_u32(len_u32(message.content.len()));
    out.put_slice(&message.content);
}

fn write_old_tuple(out: &mut Vec<u8>, old: &OldTuple) {
    let (marker, tuple) = match old {
        OldTuple::Key(tuple) => (b'K', tuple),
        OldTuple::Full(tuple) => (b'O', tuple),
    };
    out.put_u8(marker);
    write_tuple(out, tuple);
}

/// Writes TupleData.
pub(crate) fn write_tuple(out: &mut Vec<u8>, tuple: &TupleData) {
    out.put_u16(len_u16(tuple.values.len()));
    for value in &tuple.values {
        out.put_u8(value.kind_byte());
        if let TupleValue::Text(bytes) | TupleValue::Binary(bytes) = value {
            out.put_u32(len_u32(bytes.len()));
            out.put_slice(bytes);
        }
    }
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    out.put_slice(text.as_bytes());
    out.put_u8(0);
}

fn write_timestamp(out: &mut Vec<u8>, time: DateTime<Utc>) {
    let micros = postgres_micros_from_timestamp(time);
    out.put_i64(micros.unwrap_or_else(|| panic!("{time} is beyond PostgreSQL's timestamps")));
}

fn len_u16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or_else(|_| panic!("{len} columns do not fit an Int16"))
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or_else(|_| panic!("{len} does not fit an Int32"))
}
