//! Why a pipeline could not start or a component stopped.

use std::fmt::Display;

/// A pipeline error, naming the component.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A source could not be prepared or failed.
    #[error("source `{id}`: {reason}")]
    Source {
        /// The source's id.
        id: String,
        /// What happened.
        reason: String,
    },
    /// A query could not be opened or failed.
    #[error("query `{id}`: {reason}")]
    Query {
        /// The query's id.
        id: String,
        /// What happened.
        reason: String,
    },
    /// A reaction could not connect or failed.
    #[error("reaction `{id}`: {reason}")]
    Reaction {
        /// The reaction's id.
        id: String,
        /// What happened.
        reason: String,
    },
    /// The state directory could not be used.
    #[error("state directory: {0}")]
    State(String),
    /// The management API could not listen.
    #[error("api: {0}")]
    Api(String),
}

/// An error with its whole chain of causes, on one line.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl RunError {
    pub(crate) fn source(id: impl Display, reason: impl Into<String>) -> Self {
        RunError::Source {
            id: id.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn query(id: impl Display, reason: impl Into<String>) -> Self {
        RunError::Query {
            id: id.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn reaction(id: impl Display, reason: impl Into<String>) -> Self {
        RunError::Reaction {
            id: id.to_string(),
            reason: reason.into(),
        }
    }
}
