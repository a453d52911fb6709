//! Errors: refusing a query at creation, and failing to evaluate a batch.

use surefoot_core_lifecycle::{Classify, ErrorClass};

/// A line and column in the query text, both from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextPosition {
    /// Line, from 1.
    pub line: u64,
    /// Column, from 1.
    pub column: u64,
}

impl std::fmt::Display for TextPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// The query cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The text is not SQL.
    #[error("the query is not valid SQL: {source}")]
    Syntax {
        /// The parser's error, with its position.
        #[source]
        source: sqlparser::parser::ParserError,
    },
    /// A construct outside the supported subset.
    #[error("{construct} is not supported in a continuous query (at {at})")]
    Unsupported {
        /// What was refused, e.g. "ORDER BY" or "window function".
        construct: String,
        /// Where it starts.
        at: TextPosition,
    },
    /// A supported construct used wrongly (unknown table or column, ambiguous name, ...).
    #[error("{message} (at {at})")]
    Invalid {
        /// What is wrong.
        message: String,
        /// Where.
        at: TextPosition,
    },
}

impl QueryError {
    /// Where in the query text the problem is, when known.
    pub fn position(&self) -> Option<TextPosition> {
        match self {
            QueryError::Syntax { .. } => None,
            QueryError::Unsupported { at, .. } | QueryError::Invalid { at, .. } => Some(*at),
        }
    }
}

impl Classify for QueryError {
    /// A query is fixed by a person: always a configuration error.
    fn class(&self) -> ErrorClass {
        ErrorClass::Configuration
    }
}

/// A batch could not be evaluated. The query is then `Failed`: its state may reflect part of
/// the batch, so it accepts nothing more.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// An expression failed (division by zero, overflow, a type mismatch, a bad cast).
    #[error("evaluating the query failed: {0}")]
    Expression(String),
    /// An update or delete names a row the query never saw: its input is not the whole table.
    #[error("{operation} of a row of {table} the query never saw (key {key}): the input has a gap")]
    MissingRow {
        /// `update` or `delete`.
        operation: &'static str,
        /// The table.
        table: String,
        /// The key, as debug text.
        key: String,
    },
    /// A change lacks a column the query needs (or sends `Unchanged` where a value is needed).
    #[error("a change to {table} lacks column `{column}` that the query needs")]
    MissingColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// The query's state contradicts itself (a bug).
    #[error("the query's state is inconsistent: {0}")]
    Inconsistent(String),
    /// The query failed earlier and accepts no more batches.
    #[error("the query failed earlier and accepts no more batches: {0}")]
    Failed(String),
}

impl Classify for EvalError {
    /// Evaluation errors repeat on the same input: permanent.
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

pub(crate) fn expr_error(message: impl Into<String>) -> EvalError {
    EvalError::Expression(message.into())
}
