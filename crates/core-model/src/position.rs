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
/// position orders before every sequence position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// A change of a PostgreSQL transaction.
    Postgres {
        /// The LSN of the transaction's commit record.
        commit_lsn: Lsn,
        /// The change's place inside the transaction, from 0.
        ordinal: u32,
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

    /// The commit LSN, for PostgreSQL positions.
    pub fn commit_lsn(&self) -> Option<Lsn> {
        match self {
            Position::Postgres { commit_lsn, .. } => Some(*commit_lsn),
            Position::Sequence(_) => None,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Postgres {
                commit_lsn,
                ordinal,
            } => write!(f, "{commit_lsn}#{ordinal}"),
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

    proptest! {
        #[test]
        fn any_lsn_round_trips_through_text(value: u64) {
            let lsn = Lsn(value);
            prop_assert_eq!(lsn.to_string().parse::<Lsn>().unwrap(), lsn);
        }
    }
}
