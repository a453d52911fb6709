//! The writer's errors, each of which knows whether a retry can help.

use surefoot_core_lifecycle::{Classify, ErrorClass, TimeoutError};

/// What went wrong in the PostgreSQL writer.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The configuration is invalid; every problem is listed.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),

    /// A SQL statement failed.
    #[error("{operation} failed")]
    Sql {
        /// What was being done, e.g. `upsert into public.orders`.
        operation: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// The embedded migrations could not be applied.
    #[error("applying the writer's migrations failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),

    /// An operation did not finish in time.
    #[error(transparent)]
    Timeout(#[from] TimeoutError),

    /// A target table is missing or lacks a configured column.
    #[error("target table {table}: {problem}")]
    Schema {
        /// The table.
        table: String,
        /// What is wrong.
        problem: String,
    },

    /// A change cannot be applied as given (a mirror change without its key, say).
    #[error("change at {position} of {table} cannot be applied: {problem}")]
    Change {
        /// The change's position.
        position: String,
        /// Its table.
        table: String,
        /// Why.
        problem: String,
    },

    /// A position does not fit the checkpoint's columns (a half above `i64::MAX`).
    #[error("position {0} is out of the storable range")]
    PositionRange(String),

    /// A custom handler failed.
    #[error("handler {handler} failed")]
    Handler {
        /// The handler's name.
        handler: String,
        /// Its error.
        #[source]
        source: HandlerError,
    },

    /// A Redis command failed.
    #[error("redis {operation} failed")]
    Redis {
        /// The command or step.
        operation: &'static str,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },

    /// A task could not be started.
    #[error("could not start a writer task")]
    Spawn(#[source] Box<surefoot_core_lifecycle::SpawnError>),

    /// The writer was stopped while the operation ran.
    #[error("the writer is stopping")]
    Stopped,

    /// A batch at or below its source's checkpoint that the writer cannot prove it applied
    /// (issue 14, X-4): an earlier batch arriving after a later one, other content under the
    /// same positions, or a replay older than the records kept. Nothing of the sink transaction
    /// is written, the batch is never dead-lettered nor settled delivered; the caller gets this
    /// error, `surefoot.writer.batches.refused` counts it and an error is logged.
    #[error(transparent)]
    ReplayRefused(Box<RefusedBatch>),

    /// Two batches of one source in one sink transaction are not in increasing order. The
    /// transaction writes nothing and its batches are applied one by one, in the order given
    /// (a batch below an earlier one is then refused or proven a replay).
    #[error("batches of source {source_id} in one sink transaction are not in increasing order")]
    Unordered {
        /// The source.
        source_id: String,
    },

    /// The outbox relay could not confirm that a stream holds this sink's message (issue 14,
    /// Redis refused its id as not above the stream's top, and `XRANGE id id` shows no
    /// entry or another one (another writer uses the stream, or the sink database was restored
    /// while Redis kept the stream). The message stays unsent; the relay retries and reports.
    #[error("stream {stream} refused outbox message {id} and does not hold it: {problem}")]
    OutboxRefused {
        /// The stream.
        stream: String,
        /// The outbox id.
        id: i64,
        /// What the stream holds instead.
        problem: String,
    },

    /// A sink transaction begun while the one before it was still running found that one
    /// uncommitted (failed or being retried): it wrote nothing and is applied again in order.
    /// The sink loop handles it; callers of [`PostgresWriter::apply`](crate::PostgresWriter::apply)
    /// never see it.
    #[error("the sink transaction before this one has not committed (source {source_id})")]
    PredecessorNotCommitted {
        /// A source whose checkpoint is behind the previous transaction's positions.
        source_id: String,
    },
}

/// A batch refused as a replay the writer cannot prove (see [`WriterError::ReplayRefused`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "batch {first}..={last} of source {source_id} is at or below the checkpoint {checkpoint} \
     and not proven applied: {refusal}; refused, not skipped"
)]
pub struct RefusedBatch {
    /// The batch's source.
    pub source_id: String,
    /// The batch's first position.
    pub first: String,
    /// The batch's last position.
    pub last: String,
    /// The source's checkpoint when the batch was refused.
    pub checkpoint: String,
    /// Why it is not proven.
    pub refusal: Refusal,
}

/// Why a batch at or below the checkpoint is not proven applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No record shows this position applied: it never was (an earlier batch arriving after a
    /// later one), or longer ago than the records are kept.
    #[error(
        "no record shows position {position} applied (never applied, or older than the records kept)"
    )]
    NeverApplied {
        /// The first change not covered by a record.
        position: String,
    },
    /// Recorded as applied, but with other changes: other content, changes left out, or only
    /// part of a batch that was applied whole.
    #[error("positions {first}..={last} were applied with other content")]
    ContentDiffers {
        /// The first position of the part that differs.
        first: String,
        /// Its last position.
        last: String,
    },
    /// A record could not be read.
    #[error("an applied-batch record is unreadable")]
    UnreadableRecord,
}

/// A custom handler's error: its own error and its class.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    message: String,
    class: ErrorClass,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl HandlerError {
    /// A failure that will not go away on retry (bad data, a broken invariant).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            class: ErrorClass::Permanent,
            source: None,
        }
    }

    /// A failure that may pass if the transaction is tried again (a lock timeout, say).
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            class: ErrorClass::Transient,
            source: None,
        }
    }

    /// A failure of a statement the handler ran, classified like the writer's own.
    pub fn sql(operation: &str, source: sqlx::Error) -> Self {
        let class = sql_class(&source);
        Self {
            message: format!("{operation} failed"),
            class,
            source: Some(Box::new(source)),
        }
    }
}

impl Classify for HandlerError {
    fn class(&self) -> ErrorClass {
        self.class
    }
}

impl WriterError {
    /// A failed statement.
    pub(crate) fn sql(operation: impl Into<String>, source: sqlx::Error) -> Self {
        Self::Sql {
            operation: operation.into(),
            source,
        }
    }
}

impl Classify for WriterError {
    fn class(&self) -> ErrorClass {
        match self {
            WriterError::Config(_) | WriterError::Schema { .. } => ErrorClass::Configuration,
            WriterError::Sql { source, .. } => sql_class(source),
            WriterError::Migrate(_) => ErrorClass::Permanent,
            WriterError::Timeout(_) => ErrorClass::Timeout,
            WriterError::Change { .. } | WriterError::PositionRange(_) => ErrorClass::Permanent,
            WriterError::Handler { source, .. } => source.class(),
            WriterError::Redis { source, .. } => redis_class(source),
            WriterError::Stopped => ErrorClass::Cancelled,
            WriterError::PredecessorNotCommitted { .. } => ErrorClass::Transient,
            WriterError::ReplayRefused(_) | WriterError::Unordered { .. } => ErrorClass::Permanent,
            WriterError::OutboxRefused { .. } => ErrorClass::Permanent,
            WriterError::Spawn(_) => ErrorClass::Permanent,
        }
    }
}

/// Connection trouble, serialisation failures and deadlocks are transient; constraint and data
/// errors are permanent.
pub(crate) fn sql_class(error: &sqlx::Error) -> ErrorClass {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => ErrorClass::Transient,
        sqlx::Error::PoolTimedOut => ErrorClass::Timeout,
        sqlx::Error::Configuration(_) => ErrorClass::Configuration,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // serialization_failure, deadlock_detected, lock_not_available, query_canceled
            // (statement_timeout), admin shutdown and connection exceptions.
            Some("40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03") => {
                ErrorClass::Transient
            }
            Some(code) if code.starts_with("08") => ErrorClass::Transient,
            Some("28P01" | "28000") => ErrorClass::Configuration,
            _ => ErrorClass::Permanent,
        },
        _ => ErrorClass::Permanent,
    }
}

fn redis_class(error: &redis::RedisError) -> ErrorClass {
    if error.is_timeout() {
        ErrorClass::Timeout
    } else if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
    {
        ErrorClass::Transient
    } else {
        ErrorClass::Permanent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_decide_retries() {
        let io = sqlx::Error::Io(std::io::Error::other("reset"));
        assert_eq!(WriterError::sql("x", io).class(), ErrorClass::Transient);
        assert_eq!(
            WriterError::sql("x", sqlx::Error::PoolTimedOut).class(),
            ErrorClass::Timeout
        );
        assert_eq!(WriterError::Stopped.class(), ErrorClass::Cancelled);
        assert_eq!(
            WriterError::Handler {
                handler: "h".into(),
                source: HandlerError::permanent("bad")
            }
            .class(),
            ErrorClass::Permanent
        );
        let timeout = TimeoutError::new("commit", std::time::Duration::from_secs(1));
        assert_eq!(WriterError::from(timeout).class(), ErrorClass::Timeout);
    }
}
