//! The store's errors, each of which knows whether a retry can help.

use std::time::Duration;

use surefoot_core_lifecycle::{Classify, ErrorClass, TimeoutError};

use crate::model::{InvalidRoom, SessionId};

/// What went wrong in a session store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A save named a version that is no longer the stored one: another request saved first.
    /// Reload, reapply the change and save again.
    #[error("session {id} was saved by someone else: expected version {expected}, found {actual}")]
    Conflict {
        /// The session.
        id: SessionId,
        /// The version the save was based on.
        expected: u64,
        /// The stored version.
        actual: u64,
    },
    /// The session does not exist or has expired.
    #[error("session {0} does not exist or has expired")]
    NotFound(SessionId),
    /// A new session's id was taken (128 random bits: practically never).
    #[error("session id {0} is already taken")]
    AlreadyExists(SessionId),
    /// A room name is invalid.
    #[error(transparent)]
    InvalidRoom(#[from] InvalidRoom),
    /// No connection became free within the pool's acquire timeout.
    #[error(
        "{pool} pool exhausted: no connection free within {waited:?} ({size} in use, {waiting} waiting)"
    )]
    PoolExhausted {
        /// The pool's name.
        pool: String,
        /// How long the operation waited.
        waited: Duration,
        /// The pool's size.
        size: usize,
        /// Operations waiting when this one gave up.
        waiting: usize,
    },
    /// The store was closed.
    #[error("the {0} store is closed")]
    Closed(String),
    /// An operation did not finish in time.
    #[error(transparent)]
    Timeout(#[from] TimeoutError),
    /// Redis failed.
    #[error("redis {operation} failed")]
    Redis {
        /// What was being done.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: redis::RedisError,
    },
    /// PostgreSQL failed.
    #[error("postgres {operation} failed")]
    Postgres {
        /// What was being done.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Migrating the PostgreSQL schema failed.
    #[error("postgres migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// Stored data could not be decoded.
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        detail: String,
    },
    /// The configuration is invalid; every problem is listed.
    #[error("invalid configuration: {}", .0.join("; "))]
    Config(Vec<String>),
}

impl StoreError {
    /// A short code for clients and metrics (`conflict`, `not_found`, `pool_exhausted`, …).
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Conflict { .. } => "conflict",
            StoreError::NotFound(_) => "not_found",
            StoreError::AlreadyExists(_) => "already_exists",
            StoreError::InvalidRoom(_) => "invalid_room",
            StoreError::PoolExhausted { .. } => "pool_exhausted",
            StoreError::Closed(_) => "closed",
            StoreError::Timeout(_) => "timeout",
            StoreError::Redis { .. } | StoreError::Postgres { .. } | StoreError::Migrate(_) => {
                "unavailable"
            }
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::Config(_) => "config",
        }
    }

    pub(crate) fn redis(operation: &'static str) -> impl FnOnce(redis::RedisError) -> Self {
        move |source| StoreError::Redis { operation, source }
    }

    pub(crate) fn pg(operation: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| StoreError::Postgres { operation, source }
    }

    pub(crate) fn corrupt(what: &'static str, detail: impl ToString) -> Self {
        StoreError::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }
}

impl Classify for StoreError {
    /// Conflicts are transient (reload and retry); pool exhaustion and driver I/O failures are
    /// transient; timeouts are timeouts; a closed store is cancelled; the rest is permanent or
    /// configuration.
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::Conflict { .. } | StoreError::PoolExhausted { .. } => ErrorClass::Transient,
            StoreError::Timeout(_) => ErrorClass::Timeout,
            StoreError::Closed(_) => ErrorClass::Cancelled,
            StoreError::Redis { source, .. } => redis_class(source),
            StoreError::Postgres { source, .. } => pg_class(source),
            StoreError::Config(_) => ErrorClass::Configuration,
            StoreError::NotFound(_)
            | StoreError::AlreadyExists(_)
            | StoreError::InvalidRoom(_)
            | StoreError::Migrate(_)
            | StoreError::Corrupt { .. } => ErrorClass::Permanent,
        }
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
    } else if error.kind() == redis::ErrorKind::AuthenticationFailed {
        ErrorClass::Configuration
    } else {
        ErrorClass::Permanent
    }
}

fn pg_class(error: &sqlx::Error) -> ErrorClass {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) => {
            ErrorClass::Transient
        }
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => ErrorClass::Cancelled,
        sqlx::Error::Configuration(_) | sqlx::Error::Tls(_) => ErrorClass::Configuration,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // serialization failure, deadlock, admin shutdown, cannot connect now, too many conns
            Some("40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300") => {
                ErrorClass::Transient
            }
            Some(code) if code.starts_with("08") => ErrorClass::Transient,
            Some(code) if code.starts_with("28") => ErrorClass::Configuration,
            _ => ErrorClass::Permanent,
        },
        _ => ErrorClass::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use surefoot_core_lifecycle::{Classify, ErrorClass, TimeoutError};

    use super::StoreError;
    use crate::model::{InvalidRoom, SessionId};

    #[test]
    fn every_error_has_a_code_and_a_class_a_retry_loop_can_act_on() {
        let id = SessionId::random();
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let cases = [
            (
                StoreError::Conflict {
                    id,
                    expected: 1,
                    actual: 2,
                },
                "conflict",
                ErrorClass::Transient,
            ),
            (StoreError::NotFound(id), "not_found", ErrorClass::Permanent),
            (
                StoreError::AlreadyExists(id),
                "already_exists",
                ErrorClass::Permanent,
            ),
            (
                StoreError::InvalidRoom(InvalidRoom(String::new())),
                "invalid_room",
                ErrorClass::Permanent,
            ),
            (
                StoreError::PoolExhausted {
                    pool: "p".into(),
                    waited: Duration::ZERO,
                    size: 1,
                    waiting: 0,
                },
                "pool_exhausted",
                ErrorClass::Transient,
            ),
            (
                StoreError::Closed("p".into()),
                "closed",
                ErrorClass::Cancelled,
            ),
            (
                StoreError::Timeout(TimeoutError::new("op", Duration::ZERO)),
                "timeout",
                ErrorClass::Timeout,
            ),
            (
                StoreError::redis("op")(redis::RedisError::from(reset)),
                "unavailable",
                ErrorClass::Transient,
            ),
            (
                StoreError::pg("op")(sqlx::Error::PoolTimedOut),
                "unavailable",
                ErrorClass::Transient,
            ),
            (
                StoreError::pg("op")(sqlx::Error::PoolClosed),
                "unavailable",
                ErrorClass::Cancelled,
            ),
            (
                StoreError::pg("op")(sqlx::Error::RowNotFound),
                "unavailable",
                ErrorClass::Permanent,
            ),
            (
                StoreError::corrupt("x", "y"),
                "corrupt",
                ErrorClass::Permanent,
            ),
            (
                StoreError::Config(vec!["a: b".into()]),
                "config",
                ErrorClass::Configuration,
            ),
        ];
        for (error, code, class) in cases {
            assert_eq!((error.code(), error.class()), (code, class), "{error}");
            assert!(!error.to_string().is_empty());
        }
    }
}
