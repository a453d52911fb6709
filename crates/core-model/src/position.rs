//! Positions: where a change sits in its source's stream.
//!
//! A position is totally ordered within one source. For PostgreSQL it is the commit LSN of the
//! transaction plus the ordinal of the change inside it, never the LSN alone: every row of a
//! transaction shares the commit LSN, and keying by LSN alone collapses them. For sources without
//! a log (HTTP), it is a plain sequence number.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A PostgreSQL write-ahead-log location, shown as `X/Y` (two hexadecimal halves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The zero location `0/0`, which no real transaction has.
    pub const ZERO: Lsn = Lsn(0);

    /// True for `0/0`.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Why text is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not an LSN (expected two hexadecimal numbers of at most 8 digits, as in `16/B374D848`)"
)]
pub struct LsnParseError {
    /// The rejected text.
    pub text: String,
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || LsnParseError {
            text: text.to_owned(),
        };
        let (high, low) = text.split_once('/').ok_or_else(invalid)?;
        let half = |part: &str| {
            let valid = !part.is_empty()
                && part.len() <= 8
                && part.bytes().all(|byte| byte.is_ascii_hexdigit());
            valid.then(|| u32::from_str_radix(part, 16).ok()).flatten()
        };
        let high = half(high).ok_or_else(invalid)?;
        let low = half(low).ok_or_else(invalid)?;
        Ok(Lsn((u64::from(high) << 32) | u64::from(low)))
    }
}

impl Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a change sits in its source's stream; totally ordered within one source.
///
/// Positions of different kinds never meet inside one source; if compared, every PostgreSQL
/// position (stream or snapshot) orders before every sequence position.
///
/// Snapshot rows have a position space of their own, ordered among PostgreSQL positions as if
/// they were the changes of one transaction committed at `consistent_point - 1`: after every
/// change the snapshot contains (committed before the consistent point) and before every change
/// the stream sends (committed at the consistent point or later). No WAL record can start at
/// `consistent_point - 1` (records are 8-byte aligned and the consistent point is a record
/// boundary), so no stream change ever shares a snapshot row's place. Each row has its own
/// number, so a consumer idempotent by position applies every row once, however the snapshot is
/// cut into batches (see docs/decisions/0005-snapshot-handoff.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// A change of a PostgreSQL transaction.
    Postgres {
        /// The LSN of the transaction's commit record.
        commit_lsn: Lsn,
        /// The change's place inside the transaction, from 0.
        ordinal: u32,
    },
    /// A row of a consistent snapshot taken at `consistent_point`.
    Snapshot {
        /// The snapshot's consistent point: the stream continues with the transactions whose
        /// commit record starts here or later.
        consistent_point: Lsn,
        /// The row's place in the snapshot, from 0, increasing in the order rows are sent.
        row: u64,
    },
    /// A change of a source numbered by a plain sequence.
    Sequence(u64),
}

impl Position {
    /// A PostgreSQL position.
    pub fn postgres(commit_lsn: Lsn, ordinal: u32) -> Self {
        Position::Postgres {
            commit_lsn,
            ordinal,
        }
    }

    /// The position of row `row` of the snapshot taken at `consistent_point`.
    pub fn snapshot(consistent_point: Lsn, row: u64) -> Self {
        Position::Snapshot {
            consistent_point,
            row,
        }
    }

    /// The commit LSN, for PostgreSQL stream positions (a snapshot row has no commit).
    pub fn commit_lsn(&self) -> Option<Lsn> {
        match self {
            Position::Postgres { commit_lsn, .. } => Some(*commit_lsn),
            Position::Snapshot { .. } | Position::Sequence(_) => None,
        }
    }

    /// The key the order is defined by: (space, major, minor, variant). PostgreSQL stream and
    /// snapshot positions share space 0, a snapshot row at `(consistent_point - 1, row)`;
    /// the last element only separates a snapshot row from an (impossible) stream change at
    /// the same place, so the order stays consistent with `Eq`.
    fn order_key(&self) -> (u8, u64, u64, u8) {
        match *self {
            Position::Postgres {
                commit_lsn,
                ordinal,
            } => (0, commit_lsn.0, u64::from(ordinal), 1),
            Position::Snapshot {
                consistent_point,
                row,
            } => (0, consistent_point.0.saturating_sub(1), row, 0),
            Position::Sequence(sequence) => (1, sequence, 0, 0),
        }
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order_key().cmp(&other.order_key())
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Postgres {
                commit_lsn,
                ordinal,
            } => write!(f, "{commit_lsn}#{ordinal}"),
            Position::Snapshot {
                consistent_point,
                row,
            } => write!(f, "snapshot@{consistent_point}#{row}"),
            Position::Sequence(sequence) => write!(f, "#{sequence}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lsn_text_round_trips() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn::ZERO);
    }

    #[test]
    fn malformed_lsns_are_rejected() {
        for text in [
            "",
            "/",
            "0/",
            "/0",
            "1/2/3",
            "G/0",
            "0/123456789",
            "-1/0",
            "+1/0",
            " 1/0",
            "1/0 ",
        ] {
            assert!(text.parse::<Lsn>().is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn rows_of_one_transaction_stay_distinct_and_ordered() {
        let lsn = Lsn(0x100);
        let first = Position::postgres(lsn, 0);
        let second = Position::postgres(lsn, 1);
        let next_tx = Position::postgres(Lsn(0x101), 0);
        assert!(first < second && second < next_tx);
    }

    #[test]
    fn snapshot_rows_order_after_what_they_contain_and_before_the_stream() {
        let point = Lsn(0x1_0000);
        let first = Position::snapshot(point, 0);
        let second = Position::snapshot(point, 1);
        assert!(first < second);
        assert!(Position::postgres(Lsn(point.0 - 8), u32::MAX) < first);
        assert!(Position::snapshot(point, u64::MAX) < Position::postgres(point, 0));
        assert!(Position::snapshot(point, u64::MAX) < Position::Sequence(0));
        assert_eq!(first.commit_lsn(), None);
        assert_eq!(first.to_string(), "snapshot@0/10000#0");
    }

    fn any_position() -> impl Strategy<Value = Position> {
        prop_oneof![
            (any::<u64>(), any::<u32>()).prop_map(|(l, o)| Position::postgres(Lsn(l), o)),
            (any::<u64>(), any::<u64>()).prop_map(|(l, r)| Position::snapshot(Lsn(l), r)),
            any::<u64>().prop_map(Position::Sequence),
        ]
    }

    proptest! {
        #[test]
        fn the_order_is_total_and_agrees_with_equality(a in any_position(), b in any_position()) {
            prop_assert_eq!(a.cmp(&b) == std::cmp::Ordering::Equal, a == b);
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
        }

        #[test]
        fn positions_round_trip_through_json(a in any_position()) {
            let text = serde_json::to_string(&a).unwrap();
            prop_assert_eq!(serde_json::from_str::<Position>(&text).unwrap(), a);
        }

        #[test]
        fn any_lsn_round_trips_through_text(value: u64) {
            let lsn = Lsn(value);
            prop_assert_eq!(lsn.to_string().parse::<Lsn>().unwrap(), lsn);
        }
    }
}
