//! Why a stream of messages does not make transactions.

use surefoot_core_lifecycle::{Classify, ErrorClass};
use surefoot_core_model::Lsn;

use super::decode_error::MessageKind;
use super::relations::UnknownRelation;
use super::rows::RowError;

/// A protocol violation or an uninterpretable change in the message stream.
///
/// After an error the assembler's state is unspecified: the source drops the connection and
/// calls [`super::TransactionAssembler::reset`] before the next one.
#[derive(Debug, thiserror::Error)]
pub enum AssemblyError {
    /// A message that only belongs inside a transaction arrived outside one.
    #[error("{message} message outside a transaction")]
    OutsideTransaction {
        /// The message's kind.
        message: MessageKind,
    },
    /// A Begin arrived while a transaction was still open.
    #[error(
        "Begin of the transaction ending at {new_final_lsn} while the one ending at {open_final_lsn} is open"
    )]
    NestedBegin {
        /// The final LSN of the open transaction.
        open_final_lsn: Lsn,
        /// The final LSN the new Begin announced.
        new_final_lsn: Lsn,
    },
    /// The Commit's LSN is not the final LSN the Begin announced.
    #[error("Commit at {commit_lsn} ends a transaction whose Begin announced {begin_final_lsn}")]
    CommitLsnMismatch {
        /// The final LSN from the Begin message.
        begin_final_lsn: Lsn,
        /// The LSN from the Commit message.
        commit_lsn: Lsn,
    },
    /// A change referred to a relation the stream has not described.
    #[error("{message} message: {source}")]
    UnknownRelation {
        /// The message's kind.
        message: MessageKind,
        /// The unknown relation.
        #[source]
        source: UnknownRelation,
    },
    /// A tuple does not make a row of its relation.
    #[error("{message} message: {source}")]
    Row {
        /// The message's kind.
        message: MessageKind,
        /// Why.
        #[source]
        source: RowError,
    },
    /// The transaction has more changes than a position's ordinal can number.
    #[error(
        "the transaction ending at {final_lsn} has more than {} changes",
        u32::MAX
    )]
    TooManyChanges {
        /// The transaction's final LSN.
        final_lsn: Lsn,
    },
}

impl Classify for AssemblyError {
    /// Permanent: the server sends the same stream again after a reconnect.
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}
