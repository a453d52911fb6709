//! The source's errors, each of which knows whether a retry can help.

use surefoot_core_lifecycle::{Classify, ErrorClass};

use crate::ident::IdentifierError;
use crate::sqlstate::{classify_sqlstate, sqlstate_in_text};

/// What went wrong in the PostgreSQL source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A name in the configuration is not a valid identifier.
    #[error("invalid configuration")]
    Identifier(#[from] IdentifierError),

    /// The server is not set up for logical replication; every problem is listed.
    #[error("the server cannot serve logical replication: {}", problems.join("; "))]
    ServerNotReady {
        /// Each problem with the fix, e.g. `wal_level is replica; set wal_level = logical and restart`.
        problems: Vec<String>,
    },

    /// The configured publication does not exist and the source was not asked to create it.
    #[error("publication {publication} does not exist")]
    PublicationMissing {
        /// The publication's name.
        publication: String,
    },

    /// The slot exists but was created for another output plugin.
    #[error("replication slot {slot} uses output plugin {plugin}, not pgoutput")]
    SlotPluginMismatch {
        /// The slot.
        slot: String,
        /// Its plugin.
        plugin: String,
    },

    /// The slot's WAL was removed (`wal_status = 'lost'`); changes since its position are gone.
    #[error(
        "replication slot {slot} is invalidated (wal_status = lost): the server removed WAL it \
         still needed, so changes were lost; policy is to fail (set on_slot_lost: recreate to drop \
         it, create a new one and bootstrap again)"
    )]
    SlotLost {
        /// The slot.
        slot: String,
    },

    /// A SQL statement failed.
    #[error("{operation} failed")]
    Query {
        /// What was being done, e.g. `create publication`.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// The TLS settings cannot be used (e.g. the root certificate file is unreadable).
    #[error("the PostgreSQL TLS settings cannot be used")]
    Tls(#[source] surefoot_pg_tls::TlsError),

    /// The replication connection failed.
    #[error("replication stream failed during {operation}")]
    Replication {
        /// What was being done, e.g. `start streaming`.
        operation: &'static str,
        /// The transport's error.
        #[source]
        source: pgwire_replication::PgWireError,
    },

    /// A pgoutput message could not be decoded.
    #[error("undecodable replication message")]
    Decode(#[from] crate::pgoutput::DecodeError),

    /// The decoded messages do not form valid transactions.
    #[error("replication stream out of protocol")]
    Assembly(#[from] crate::pgoutput::AssemblyError),

    /// A batch could not be registered with the ack tracker (positions out of order).
    #[error("batch positions out of order")]
    Tracker(#[from] surefoot_core_model::TrackerError),

    /// The server sent a timestamp outside the representable range.
    #[error("commit timestamp {micros} µs after 2000-01-01 is out of range")]
    InvalidTimestamp {
        /// The raw value.
        micros: i64,
    },

    /// The consumer of the source's output is gone.
    #[error("the source's output channel is closed")]
    OutputClosed,

    /// The server ended the replication stream without being asked to.
    #[error("the server ended the replication stream")]
    StreamEnded,

    /// A task of the source could not be started (the source is stopping).
    #[error("could not start a task of the source")]
    Spawn(#[from] surefoot_core_lifecycle::SpawnError),

    /// Transient faults went on past the reconnect budget.
    #[error("gave up reconnecting after {attempts} attempts")]
    ReconnectBudgetExhausted {
        /// Reconnects tried.
        attempts: u32,
        /// The error that ended the last session.
        #[source]
        last: Box<SourceError>,
    },

    /// The stream was silent past the liveness timeout and the server showed no sign of our
    /// walsender working (see `liveness`).
    #[error("{timeout}: silent for {silent_for:?}")]
    StreamSilent {
        /// How long nothing arrived.
        silent_for: std::time::Duration,
        /// Why the silence is not the server working for us.
        #[source]
        reason: crate::liveness::Silence,
        /// The liveness timeout, naming the operation.
        timeout: surefoot_core_lifecycle::timeout::TimeoutError,
    },

    /// A large transaction's spill file could not be written or read.
    #[error("spilling a large transaction failed during {operation}")]
    Spill {
        /// What was being done, e.g. `write spill file`.
        operation: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// An operation did not finish in time.
    #[error(transparent)]
    Timeout(#[from] surefoot_core_lifecycle::timeout::TimeoutError),

    /// The server reported a position that is not an LSN.
    #[error("the server reported an invalid LSN")]
    InvalidLsn(#[source] surefoot_core_model::LsnParseError),
}

impl SourceError {
    /// Wraps a driver error from `operation`.
    pub fn query(operation: &'static str, source: tokio_postgres::Error) -> Self {
        SourceError::Query { operation, source }
    }

    /// Wraps a transport error from `operation`.
    pub fn replication(operation: &'static str, source: pgwire_replication::PgWireError) -> Self {
        SourceError::Replication { operation, source }
    }
}

impl Classify for SourceError {
    fn class(&self) -> ErrorClass {
        match self {
            SourceError::Identifier(_)
            | SourceError::ServerNotReady { .. }
            | SourceError::Tls(_) => ErrorClass::Configuration,
            SourceError::PublicationMissing { .. }
            | SourceError::SlotPluginMismatch { .. }
            | SourceError::SlotLost { .. }
            | SourceError::InvalidLsn(_)
            | SourceError::Decode(_)
            | SourceError::Assembly(_)
            | SourceError::Tracker(_)
            | SourceError::InvalidTimestamp { .. } => ErrorClass::Permanent,
            SourceError::OutputClosed | SourceError::Spawn(_) => ErrorClass::Cancelled,
            SourceError::ReconnectBudgetExhausted { .. } => ErrorClass::Permanent,
            SourceError::StreamEnded | SourceError::Spill { .. } => ErrorClass::Transient,
            SourceError::Timeout(_) | SourceError::StreamSilent { .. } => ErrorClass::Timeout,
            SourceError::Query { source, .. } => classify_driver_error(source),
            SourceError::Replication { source, .. } => classify_transport_error(source),
        }
    }
}

/// Server errors by SQLSTATE; a closed connection or I/O failure is transient.
fn classify_driver_error(error: &tokio_postgres::Error) -> ErrorClass {
    // A refused handshake (no TLS on the server, untrusted certificate, wrong host) fails the
    // same way on every retry.
    if surefoot_pg_tls::TlsFailure::find(error).is_some() {
        return ErrorClass::Configuration;
    }
    match error.code() {
        Some(code) => classify_sqlstate(code.code()),
        None => ErrorClass::Transient,
    }
}

fn classify_transport_error(error: &pgwire_replication::PgWireError) -> ErrorClass {
    use pgwire_replication::PgWireError;
    match error {
        PgWireError::Io(_) | PgWireError::Task(_) => ErrorClass::Transient,
        PgWireError::Auth(_) | PgWireError::Tls(_) => ErrorClass::Permanent,
        PgWireError::Server(text) => sqlstate_in_text(text)
            .map(classify_sqlstate)
            .unwrap_or(ErrorClass::Transient),
        // A refused oversized message would be refused again: not retryable.
        _ => ErrorClass::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgwire_replication::PgWireError;
    use std::sync::Arc;

    #[test]
    fn transport_errors_classify_by_kind_and_sqlstate() {
        let io = PgWireError::Io(Arc::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        let auth =
            PgWireError::Server("FATAL: password authentication failed (SQLSTATE 28P01)".into());
        let shutdown = PgWireError::Server(
            "FATAL: terminating connection due to administrator command (SQLSTATE 57P01)".into(),
        );
        let missing =
            PgWireError::Server("ERROR: publication \"p\" does not exist (SQLSTATE 42704)".into());
        let class = |e| SourceError::replication("stream", e).class();
        assert_eq!(class(io), ErrorClass::Transient);
        assert_eq!(class(auth), ErrorClass::Permanent);
        assert_eq!(class(shutdown), ErrorClass::Transient);
        assert_eq!(class(missing), ErrorClass::Permanent);
        assert_eq!(
            class(PgWireError::Auth("bad".into())),
            ErrorClass::Permanent
        );
    }

    #[test]
    fn setup_errors_are_not_retried() {
        let lost = SourceError::SlotLost { slot: "s".into() };
        assert_eq!(lost.class(), ErrorClass::Permanent);
        assert!(lost.to_string().contains("on_slot_lost"));
        let not_ready = SourceError::ServerNotReady {
            problems: vec!["wal_level is replica".into(), "no free slot".into()],
        };
        assert_eq!(not_ready.class(), ErrorClass::Configuration);
        assert!(
            not_ready
                .to_string()
                .contains("wal_level is replica; no free slot")
        );
    }
}
