//! A bounds-checked reader over one message's bytes. Every read names its field, so that a short
//! or malformed message becomes a [`DecodeError`] that says where it broke; nothing here indexes
//! or panics.

use bytes::{Buf, Bytes};
use chrono::{DateTime, TimeDelta, Utc};
use surefoot_core_model::Lsn;

use super::decode_error::{DecodeError, Field, MessageKind};

/// Seconds from the Unix epoch to the PostgreSQL epoch, 2000-01-01 00:00:00 UTC.
pub(crate) const POSTGRES_EPOCH_UNIX_SECONDS: i64 = 946_684_800;

/// Reads the fields of one message, front to back.
#[derive(Debug)]
pub(crate) struct Cursor {
    message: MessageKind,
    buf: Bytes,
}

impl Cursor {
    /// A cursor over the body of `message` (the bytes after the tag).
    pub(crate) fn new(message: MessageKind, buf: Bytes) -> Self {
        Self { message, buf }
    }

    /// The message being read, for errors raised by callers.
    pub(crate) fn message(&self) -> MessageKind {
        self.message
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.remaining()
    }

    fn need(&self, field: Field, needed: usize) -> Result<(), DecodeError> {
        let available = self.buf.remaining();
        if available < needed {
            return Err(DecodeError::Truncated {
                message: self.message,
                field,
                needed,
                available,
            });
        }
        Ok(())
    }

    /// One byte.
    pub(crate) fn u8(&mut self, field: Field) -> Result<u8, DecodeError> {
        self.need(field, 1)?;
        Ok(self.buf.get_u8())
    }

    /// A big-endian `Int16`, read as unsigned (counts on the wire are never negative).
    pub(crate) fn u16(&mut self, field: Field) -> Result<u16, DecodeError> {
        self.need(field, 2)?;
        Ok(self.buf.get_u16())
    }

    /// A big-endian `Int32`, read as unsigned (OIDs, xids).
    pub(crate) fn u32(&mut self, field: Field) -> Result<u32, DecodeError> {
        self.need(field, 4)?;
        Ok(self.buf.get_u32())
    }

    /// A big-endian signed `Int32` (type modifiers).
    pub(crate) fn i32(&mut self, field: Field) -> Result<i32, DecodeError> {
        self.need(field, 4)?;
        Ok(self.buf.get_i32())
    }

    /// A big-endian `Int32` length or count that must not be negative.
    pub(crate) fn length(&mut self, field: Field) -> Result<usize, DecodeError> {
        let value = self.i32(field)?;
        usize::try_from(value).map_err(|_| DecodeError::NegativeLength {
            message: self.message,
            field,
            value: i64::from(value),
        })
    }

    /// A big-endian `Int64` LSN.
    pub(crate) fn lsn(&mut self, field: Field) -> Result<Lsn, DecodeError> {
        self.need(field, 8)?;
        Ok(Lsn(self.buf.get_u64()))
    }

    /// A big-endian `Int64` timestamp: microseconds since 2000-01-01 00:00:00 UTC.
    pub(crate) fn timestamp(&mut self, field: Field) -> Result<DateTime<Utc>, DecodeError> {
        self.need(field, 8)?;
        let micros = self.buf.get_i64();
        timestamp_from_postgres_micros(micros).ok_or(DecodeError::TimestampOutOfRange {
            message: self.message,
            field,
            micros,
        })
    }

    /// `len` raw bytes, shared with the input (no copy).
    pub(crate) fn bytes(&mut self, field: Field, len: usize) -> Result<Bytes, DecodeError> {
        self.need(field, len)?;
        Ok(self.buf.split_to(len))
    }

    /// A NUL-terminated UTF-8 string.
    pub(crate) fn string(&mut self, field: Field) -> Result<String, DecodeError> {
        let end =
            self.buf
                .iter()
                .position(|&byte| byte == 0)
                .ok_or(DecodeError::UnterminatedString {
                    message: self.message,
                    field,
                })?;
        let text = self.buf.split_to(end);
        self.buf.advance(1);
        let text = std::str::from_utf8(&text).map_err(|source| DecodeError::InvalidUtf8 {
            message: self.message,
            field,
            source,
        })?;
        Ok(text.to_owned())
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.buf.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                message: self.message,
                count,
            }),
        }
    }

    /// An error for a byte that is none of the letters `field` allows.
    pub(crate) fn unexpected(&self, field: Field, byte: u8) -> DecodeError {
        DecodeError::UnexpectedByte {
            message: self.message,
            field,
            byte,
        }
    }
}

/// The instant `micros` microseconds after 2000-01-01 00:00:00 UTC, if representable.
pub(crate) fn timestamp_from_postgres_micros(micros: i64) -> Option<DateTime<Utc>> {
    let epoch = DateTime::from_timestamp(POSTGRES_EPOCH_UNIX_SECONDS, 0)?;
    epoch.checked_add_signed(TimeDelta::microseconds(micros))
}

/// Microseconds from 2000-01-01 00:00:00 UTC to `time`, if they fit in an `i64`.
#[cfg(test)]
pub(crate) fn postgres_micros_from_timestamp(time: DateTime<Utc>) -> Option<i64> {
    let epoch = DateTime::from_timestamp(POSTGRES_EPOCH_UNIX_SECONDS, 0)?;
    time.signed_duration_since(epoch).num_microseconds()
}
