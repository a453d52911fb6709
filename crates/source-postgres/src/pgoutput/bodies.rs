//! Readers for the body of each message kind (everything after the tag byte).

use super::cursor::Cursor;
use super::decode_error::{DecodeError, Field, MessageKind};
use super::messages::{
    Begin, Commit, Delete, Insert, LogicalMessage, Message, OldTuple, Origin, Relation,
    RelationColumn, ReplicaIdentity, Truncate, TruncateOptions, TypeInfo, Update,
};
use super::tuple::{TupleData, read_tuple};

/// Reads the body of the message kind the cursor was made for.
pub(crate) fn read_body(cursor: &mut Cursor) -> Result<Message, DecodeError> {
    Ok(match cursor.message() {
        MessageKind::Begin => Message::Begin(read_begin(cursor)?),
        MessageKind::Commit => Message::Commit(read_commit(cursor)?),
        MessageKind::Origin => Message::Origin(read_origin(cursor)?),
        MessageKind::Relation => Message::Relation(read_relation(cursor)?),
        MessageKind::Type => Message::Type(read_type(cursor)?),
        MessageKind::Insert => Message::Insert(read_insert(cursor)?),
        MessageKind::Update => Message::Update(read_update(cursor)?),
        MessageKind::Delete => Message::Delete(read_delete(cursor)?),
        MessageKind::Truncate => Message::Truncate(read_truncate(cursor)?),
        MessageKind::Message => Message::Message(read_logical_message(cursor)?),
    })
}

fn read_begin(cursor: &mut Cursor) -> Result<Begin, DecodeError> {
    Ok(Begin {
        final_lsn: cursor.lsn(Field::FinalLsn)?,
        commit_time: cursor.timestamp(Field::CommitTimestamp)?,
        xid: cursor.u32(Field::Xid)?,
    })
}

fn read_commit(cursor: &mut Cursor) -> Result<Commit, DecodeError> {
    Ok(Commit {
        flags: cursor.u8(Field::Flags)?,
        commit_lsn: cursor.lsn(Field::CommitLsn)?,
        end_lsn: cursor.lsn(Field::EndLsn)?,
        commit_time: cursor.timestamp(Field::CommitTimestamp)?,
    })
}

fn read_origin(cursor: &mut Cursor) -> Result<Origin, DecodeError> {
    Ok(Origin {
        commit_lsn: cursor.lsn(Field::OriginLsn)?,
        name: cursor.string(Field::OriginName)?,
    })
}

fn read_relation(cursor: &mut Cursor) -> Result<Relation, DecodeError> {
    let id = cursor.u32(Field::RelationId)?;
    let namespace = cursor.string(Field::Namespace)?;
    let name = cursor.string(Field::RelationName)?;
    let identity_byte = cursor.u8(Field::ReplicaIdentity)?;
    let replica_identity = ReplicaIdentity::from_byte(identity_byte)
        .ok_or_else(|| cursor.unexpected(Field::ReplicaIdentity, identity_byte))?;
    let count = cursor.u16(Field::ColumnCount)?;
    // A column takes at least 10 bytes: never reserve more than the input can hold.
    let mut columns = Vec::with_capacity(usize::from(count).min(cursor.remaining() / 10));
    for index in 0..count {
        columns.push(read_relation_column(cursor, index)?);
    }
    Ok(Relation {
        id,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn read_relation_column(cursor: &mut Cursor, index: u16) -> Result<RelationColumn, DecodeError> {
    Ok(RelationColumn {
        flags: cursor.u8(Field::ColumnFlags(index))?,
        name: cursor.string(Field::ColumnName(index))?,
        type_oid: cursor.u32(Field::ColumnType(index))?,
        type_modifier: cursor.i32(Field::ColumnTypeModifier(index))?,
    })
}

fn read_type(cursor: &mut Cursor) -> Result<TypeInfo, DecodeError> {
    Ok(TypeInfo {
        id: cursor.u32(Field::TypeId)?,
        namespace: cursor.string(Field::TypeNamespace)?,
        name: cursor.string(Field::TypeName)?,
    })
}

fn read_insert(cursor: &mut Cursor) -> Result<Insert, DecodeError> {
    let relation_id = cursor.u32(Field::RelationId)?;
    expect_marker(cursor, b'N')?;
    let new = read_tuple(cursor)?;
    Ok(Insert { relation_id, new })
}

fn read_update(cursor: &mut Cursor) -> Result<Update, DecodeError> {
    let relation_id = cursor.u32(Field::RelationId)?;
    let (old, new) = match cursor.u8(Field::TupleMarker)? {
        b'N' => (None, read_tuple(cursor)?),
        marker @ (b'K' | b'O') => {
            let old = read_old_tuple(cursor, marker)?;
            expect_marker(cursor, b'N')?;
            (Some(old), read_tuple(cursor)?)
        }
        other => return Err(cursor.unexpected(Field::TupleMarker, other)),
    };
    Ok(Update {
        relation_id,
        old,
        new,
    })
}

fn read_delete(cursor: &mut Cursor) -> Result<Delete, DecodeError> {
    let relation_id = cursor.u32(Field::RelationId)?;
    let old = match cursor.u8(Field::TupleMarker)? {
        marker @ (b'K' | b'O') => read_old_tuple(cursor, marker)?,
        other => return Err(cursor.unexpected(Field::TupleMarker, other)),
    };
    Ok(Delete { relation_id, old })
}

/// Reads the tuple after a `K` or `O` marker.
fn read_old_tuple(cursor: &mut Cursor, marker: u8) -> Result<OldTuple, DecodeError> {
    let tuple: TupleData = read_tuple(cursor)?;
    Ok(if marker == b'K' {
        OldTuple::Key(tuple)
    } else {
        OldTuple::Full(tuple)
    })
}

fn expect_marker(cursor: &mut Cursor, expected: u8) -> Result<(), DecodeError> {
    match cursor.u8(Field::TupleMarker)? {
        marker if marker == expected => Ok(()),
        other => Err(cursor.unexpected(Field::TupleMarker, other)),
    }
}

fn read_truncate(cursor: &mut Cursor) -> Result<Truncate, DecodeError> {
    let count = cursor.length(Field::RelationCount)?;
    let options = TruncateOptions(cursor.u8(Field::TruncateOptions)?);
    // Each id takes 4 bytes: never reserve more than the input can hold.
    let mut relation_ids = Vec::with_capacity(count.min(cursor.remaining() / 4));
    for _ in 0..count {
        relation_ids.push(cursor.u32(Field::RelationId)?);
    }
    Ok(Truncate {
        options,
        relation_ids,
    })
}

fn read_logical_message(cursor: &mut Cursor) -> Result<LogicalMessage, DecodeError> {
    let flags = cursor.u8(Field::Flags)?;
    let lsn = cursor.lsn(Field::MessageLsn)?;
    let prefix = cursor.string(Field::Prefix)?;
    let len = cursor.length(Field::ContentLength)?;
    let content = cursor.bytes(Field::Content, len)?;
    Ok(LogicalMessage {
        flags,
        lsn,
        prefix,
        content,
    })
}
