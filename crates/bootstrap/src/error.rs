//! The providers' errors, each of which knows whether a retry can help.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use surefoot_core_lifecycle::{Classify, ErrorClass};
use surefoot_core_model::{ComponentError, Position};

use crate::config::ConfigError;

/// A step of a snapshot, as named by a [`BootstrapError::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Establishing the source: connecting to a server, or opening a file.
    Connect,
    /// One SQL statement.
    Statement,
    /// Reading one chunk (a read of a file, a chunk of COPY data).
    Chunk,
    /// The whole snapshot.
    Snapshot,
}

impl Step {
    /// The step's name, as errors and timeouts report it.
    pub fn name(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::Statement => "statement",
            Step::Chunk => "chunk",
            Step::Snapshot => "snapshot",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What went wrong in a snapshot. Any of these means the snapshot is incomplete.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The configuration is invalid; every problem is listed.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The file could not be opened.
    #[error("cannot open {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Reading the file failed.
    #[error("cannot read {} after line {line}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The last complete line read before the failure.
        line: u64,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A line is not a change as surefoot serialises it.
    #[error("{}:{line}: not a change: {source}", path.display())]
    BadLine {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: u64,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },

    /// A line is longer than the configured limit.
    #[error("{}:{line}: line longer than {limit} bytes", path.display())]
    LineTooLong {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: u64,
        /// `max_line_bytes`.
        limit: usize,
    },

    /// A change's position is not above the previous change's: positions must be unique and
    /// increasing, or a consumer idempotent by position skips the change.
    #[error("{}:{line}: position {position} is not above {previous} on an earlier line", path.display())]
    OutOfOrder {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: u64,
        /// The position on an earlier line.
        previous: Position,
        /// This line's position.
        position: Position,
    },

    /// A step did not finish within its limit.
    #[error("bootstrap step `{step}` timed out after {limit:?}")]
    Timeout {
        /// The step.
        step: Step,
        /// The limit it exceeded.
        limit: Duration,
    },

    /// The snapshot was cancelled before it completed.
    #[error("the snapshot was cancelled before it completed")]
    Cancelled,

    /// The consumer of the snapshot's batches is gone.
    #[error("the snapshot's output channel is closed")]
    OutputClosed,

    /// The consistent point reported by the server is not a usable LSN.
    #[error("consistent point `{text}` is invalid: {reason}")]
    InvalidConsistentPoint {
        /// The text reported.
        text: String,
        /// Why it is rejected.
        reason: String,
    },

    /// An exported snapshot's name is not of the form the server gives them.
    #[error("`{name}` is not an exported snapshot's name (hexadecimal groups separated by dashes)")]
    InvalidSnapshotName {
        /// The rejected name.
        name: String,
    },

    /// The transaction that imported the snapshot is not repeatable read and read only.
    #[error(
        "the snapshot transaction runs at isolation `{isolation}` with read only `{read_only}`, \
         not repeatable read and read only"
    )]
    IsolationMismatch {
        /// `transaction_isolation` as the server reported it.
        isolation: String,
        /// `transaction_read_only` as the server reported it.
        read_only: String,
    },

    /// A SQL statement (or connecting) failed.
    #[error("{operation} failed")]
    Query {
        /// What was being done, e.g. `import snapshot`.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// A replication command (creating or dropping a slot, starting a stream) failed.
    #[error("{operation} failed")]
    Replication {
        /// What was being done, e.g. `create replication slot`.
        operation: &'static str,
        /// The replication client's error.
        #[source]
        source: pgwire_replication::PgWireError,
    },

    /// `CREATE_REPLICATION_SLOT` answered with something other than one row of four columns.
    #[error("unexpected answer to CREATE_REPLICATION_SLOT: {reason}")]
    SlotReply {
        /// What is wrong with the answer.
        reason: String,
    },

    /// A row of COPY data is not in the text format the table's columns call for.
    #[error("{table}: row {row}: {reason}")]
    CopyData {
        /// The table, `schema.name`.
        table: String,
        /// The row, from 1.
        row: u64,
        /// What is wrong.
        reason: String,
    },

    /// A column value of a COPY row is not a value of its type.
    #[error("{table}: row {row}, column `{column}`")]
    Value {
        /// The table, `schema.name`.
        table: String,
        /// The row, from 1.
        row: u64,
        /// The column.
        column: String,
        /// Why the text is not a value of the column's type.
        #[source]
        source: surefoot_source_postgres::pgoutput::ValueParseError,
    },

    /// A table to copy does not exist (or has no columns) in the snapshot.
    #[error("table {table} does not exist in the snapshot or has no columns")]
    NoSuchTable {
        /// The table, `schema.name`.
        table: String,
    },

    /// The TLS settings cannot be used (e.g. the root certificate file is unreadable).
    #[error("the PostgreSQL TLS settings cannot be used")]
    Tls(#[source] surefoot_pg_tls::TlsError),

    /// Preparing the server (the publication) failed.
    #[error("preparing the server failed")]
    Setup(#[source] surefoot_source_postgres::SourceError),

    /// A task could not be started (the provider is stopping).
    #[error("could not start a task of the snapshot")]
    Spawn(#[from] surefoot_core_lifecycle::SpawnError),
}

impl BootstrapError {
    /// Wraps a driver error from `operation`.
    pub fn query(operation: &'static str, source: tokio_postgres::Error) -> Self {
        BootstrapError::Query { operation, source }
    }

    /// Wraps a replication client error from `operation`.
    pub fn replication(operation: &'static str, source: pgwire_replication::PgWireError) -> Self {
        BootstrapError::Replication { operation, source }
    }
}

/// A refused TLS handshake (no TLS on the server, an untrusted certificate, a host it does not
/// name) fails the same way on every retry: a configuration problem.
fn refused_handshake(error: &(dyn std::error::Error + 'static)) -> bool {
    surefoot_pg_tls::TlsFailure::find(error).is_some()
}

/// The class of a replication client error: authentication is configuration, I/O and other
/// transient faults are transient, the rest (a server error such as a slot that already exists)
/// permanent.
fn classify_replication_error(error: &pgwire_replication::PgWireError) -> ErrorClass {
    if error.is_auth() || refused_handshake(error) {
        ErrorClass::Configuration
    } else if error.is_transient() {
        ErrorClass::Transient
    } else {
        ErrorClass::Permanent
    }
}

/// The class of a driver error: by SQLSTATE class when the server sent one (connection problems
/// and shutdowns transient, authentication and privileges configuration, the rest permanent), and
/// transient when the connection itself failed.
fn classify_driver_error(error: &tokio_postgres::Error) -> ErrorClass {
    if refused_handshake(error) {
        return ErrorClass::Configuration;
    }
    let Some(state) = error.code() else {
        return ErrorClass::Transient;
    };
    let code = state.code();
    match code.get(..2) {
        Some("08" | "53" | "57" | "40") => ErrorClass::Transient,
        Some("28") => ErrorClass::Configuration,
        _ if code == "42501" => ErrorClass::Configuration,
        _ => ErrorClass::Permanent,
    }
}

impl Classify for BootstrapError {
    fn class(&self) -> ErrorClass {
        match self {
            BootstrapError::Config(_) | BootstrapError::Tls(_) => ErrorClass::Configuration,
            BootstrapError::Open { source, .. } | BootstrapError::Read { source, .. } => {
                source.class()
            }
            BootstrapError::BadLine { .. }
            | BootstrapError::LineTooLong { .. }
            | BootstrapError::OutOfOrder { .. }
            | BootstrapError::InvalidConsistentPoint { .. }
            | BootstrapError::InvalidSnapshotName { .. }
            | BootstrapError::IsolationMismatch { .. }
            | BootstrapError::SlotReply { .. }
            | BootstrapError::CopyData { .. }
            | BootstrapError::Value { .. }
            | BootstrapError::NoSuchTable { .. } => ErrorClass::Permanent,
            BootstrapError::Replication { source, .. } => classify_replication_error(source),
            BootstrapError::Setup(source) => source.class(),
            BootstrapError::Query { source, .. } => classify_driver_error(source),
            BootstrapError::Spawn(_) => ErrorClass::Cancelled,
            BootstrapError::Timeout { .. } => ErrorClass::Timeout,
            BootstrapError::Cancelled | BootstrapError::OutputClosed => ErrorClass::Cancelled,
        }
    }
}

impl From<BootstrapError> for ComponentError {
    fn from(error: BootstrapError) -> Self {
        ComponentError::classified("snapshot", error)
    }
}

/// Runs `future` for at most `limit`; on expiry drops it and reports `step` as timed out.
pub(crate) async fn bounded<F: Future>(
    step: Step,
    limit: Duration,
    future: F,
) -> Result<F::Output, BootstrapError> {
    surefoot_core_lifecycle::timeout(step.name(), limit, future)
        .await
        .map_err(|_timeout| BootstrapError::Timeout { step, limit })
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_step_that_hangs_is_a_timeout_naming_it() {
        let limit = Duration::from_secs(3);
        let error = bounded(Step::Chunk, limit, std::future::pending::<()>())
            .await
            .unwrap_err();
        assert!(matches!(
            error,
            BootstrapError::Timeout { step: Step::Chunk, limit: l } if l == limit
        ));
        assert_eq!(error.class(), ErrorClass::Timeout);
        assert_eq!(
            error.to_string(),
            "bootstrap step `chunk` timed out after 3s"
        );
        assert_eq!(bounded(Step::Connect, limit, async { 7 }).await.unwrap(), 7);
    }

    #[test]
    fn steps_are_named() {
        let names = [Step::Connect, Step::Statement, Step::Chunk, Step::Snapshot]
            .map(|step| step.to_string());
        assert_eq!(names, ["connect", "statement", "chunk", "snapshot"]);
    }

    #[test]
    fn errors_classify_themselves() {
        let path = PathBuf::from("/data/x.jsonl");
        let config = BootstrapError::from(ConfigError {
            problems: vec!["chunk_bytes: must be more than 0".to_owned()],
        });
        assert_eq!(config.class(), ErrorClass::Configuration);
        let missing = BootstrapError::Open {
            path: path.clone(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert_eq!(missing.class(), ErrorClass::Permanent);
        let interrupted = BootstrapError::Read {
            path: path.clone(),
            line: 4,
            source: io::Error::from(io::ErrorKind::Interrupted),
        };
        assert_eq!(interrupted.class(), ErrorClass::Transient);
        assert_eq!(
            interrupted.to_string(),
            "cannot read /data/x.jsonl after line 4"
        );
        let long = BootstrapError::LineTooLong {
            path: path.clone(),
            line: 2,
            limit: 10,
        };
        assert_eq!(long.class(), ErrorClass::Permanent);
        let order = BootstrapError::OutOfOrder {
            path,
            line: 3,
            previous: Position::Sequence(5),
            position: Position::Sequence(4),
        };
        assert_eq!(order.class(), ErrorClass::Permanent);
        assert_eq!(BootstrapError::Cancelled.class(), ErrorClass::Cancelled);
        assert_eq!(BootstrapError::OutputClosed.class(), ErrorClass::Cancelled);
        let component = ComponentError::from(BootstrapError::Cancelled);
        assert_eq!(component.operation(), "snapshot");
        assert_eq!(component.class(), ErrorClass::Cancelled);
    }

    #[test]
    fn postgres_errors_classify_themselves() {
        use pgwire_replication::PgWireError;
        let replication = |source| BootstrapError::replication("create replication slot", source);
        let io = PgWireError::Io(std::sync::Arc::new(io::Error::from(
            io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(replication(io).class(), ErrorClass::Transient);
        let auth = PgWireError::Auth("password authentication failed".to_owned());
        assert_eq!(replication(auth).class(), ErrorClass::Configuration);
        let exists = PgWireError::Server("replication slot \"s\" already exists".to_owned());
        let exists = replication(exists);
        assert_eq!(exists.class(), ErrorClass::Permanent);
        assert_eq!(exists.to_string(), "create replication slot failed");
        let permanent = [
            BootstrapError::SlotReply {
                reason: "0 rows instead of 1".to_owned(),
            },
            BootstrapError::CopyData {
                table: "public.t".to_owned(),
                row: 3,
                reason: "2 columns instead of 3".to_owned(),
            },
            BootstrapError::NoSuchTable {
                table: "public.t".to_owned(),
            },
            BootstrapError::InvalidSnapshotName {
                name: "x".to_owned(),
            },
        ];
        for error in permanent {
            assert_eq!(error.class(), ErrorClass::Permanent, "{error}");
        }
        let data = BootstrapError::CopyData {
            table: "public.t".to_owned(),
            row: 3,
            reason: "2 columns instead of 3".to_owned(),
        };
        assert_eq!(data.to_string(), "public.t: row 3: 2 columns instead of 3");
    }
}
