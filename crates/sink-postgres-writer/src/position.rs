//! Positions as stored in the writer's tables: `(kind, major, minor)`.
//!
//! PostgreSQL positions are `('pg', commit LSN, ordinal)`, snapshot rows
//! `('snap', consistent point - 1, row)` (so `(major, minor)` orders them among the stream's
//! positions exactly as `Position`'s `Ord` does), sequence positions `('seq', sequence, 0)`. Both halves are `bigint`, so a half above `i64::MAX` is refused
//! (an LSN that large is 8 exabytes of WAL away).

use surefoot_core_model::{Lsn, Position};

use crate::error::WriterError;

/// A position split into its stored columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredPosition {
    pub(crate) kind: &'static str,
    pub(crate) major: i64,
    pub(crate) minor: i64,
}

impl StoredPosition {
    /// The stored form of `position`.
    pub(crate) fn encode(position: Position) -> Result<Self, WriterError> {
        let out_of_range = || WriterError::PositionRange(position.to_string());
        let (kind, major, minor) = match position {
            Position::Postgres {
                commit_lsn,
                ordinal,
            } => ("pg", commit_lsn.0, u64::from(ordinal)),
            Position::Snapshot {
                consistent_point,
                row,
            } => {
                let before = consistent_point.0.checked_sub(1).ok_or_else(out_of_range)?;
                ("snap", before, row)
            }
            Position::Sequence(sequence) => ("seq", sequence, 0),
        };
        Ok(Self {
            kind,
            major: i64::try_from(major).map_err(|_| out_of_range())?,
            minor: i64::try_from(minor).map_err(|_| out_of_range())?,
        })
    }

    /// The position stored as `(kind, major, minor)`, if the columns hold one.
    pub(crate) fn decode(kind: &str, major: i64, minor: i64) -> Option<Position> {
        let major = u64::try_from(major).ok()?;
        match kind {
            "pg" => Some(Position::postgres(Lsn(major), u32::try_from(minor).ok()?)),
            "snap" => Some(Position::snapshot(
                Lsn(major.checked_add(1)?),
                u64::try_from(minor).ok()?,
            )),
            "seq" => Some(Position::Sequence(major)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_huge_ones_are_refused() {
        for position in [
            Position::postgres(Lsn(0x16_B374_D848), 7),
            Position::Sequence(42),
            Position::snapshot(Lsn(0x16_B374_D848), 5_000_000_000),
        ] {
            let stored = StoredPosition::encode(position).unwrap();
            let back = StoredPosition::decode(stored.kind, stored.major, stored.minor);
            assert_eq!(back, Some(position));
        }
        assert!(StoredPosition::encode(Position::Sequence(u64::MAX)).is_err());
        assert!(StoredPosition::encode(Position::snapshot(Lsn(0), 1)).is_err());
        let snap = StoredPosition::encode(Position::snapshot(Lsn(0x100), 3)).unwrap();
        assert_eq!((snap.kind, snap.major, snap.minor), ("snap", 0xFF, 3));
        assert_eq!(StoredPosition::decode("x", 1, 1), None);
        assert_eq!(StoredPosition::decode("pg", -1, 1), None);
    }
}
