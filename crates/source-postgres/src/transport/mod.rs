//! The replication connection, behind a trait of ours.
//!
//! The stream loop needs four things from a replication connection: the next event, a way to
//! tell the server what is durable, and a clean close. [`PgWireTransport`] implements them on
//! `pgwire-replication`; see `docs/decisions/0002-replication-transport.md` for why, and for how
//! the clean stop is completed around it.

mod pgwire;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use surefoot_core_model::Lsn;

use crate::error::SourceError;

pub use pgwire::{
    PgWireConnector, PgWireTransport, ReplicationEndpoint, SESSION_OPTIONS, stream_event,
};

/// One event of the replication stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A transaction starts; its commit record is at `final_lsn`.
    Begin {
        /// LSN of the transaction's commit record.
        final_lsn: Lsn,
        /// Commit time.
        commit_time: DateTime<Utc>,
        /// Transaction id.
        xid: u32,
    },
    /// A pgoutput message other than Begin, Commit and logical messages (Relation, Type,
    /// Insert, Update, Delete, Truncate, Origin), undecoded.
    Data(Bytes),
    /// The transaction ends.
    Commit {
        /// LSN of the commit record.
        commit_lsn: Lsn,
        /// LSN just past the commit record: what to confirm once it is delivered.
        end_lsn: Lsn,
        /// Commit time.
        commit_time: DateTime<Utc>,
    },
    /// A `pg_logical_emit_message` message.
    Message {
        /// Emitted inside a transaction.
        transactional: bool,
        /// Its WAL position.
        lsn: Lsn,
        /// Its prefix.
        prefix: String,
        /// Its content.
        content: Bytes,
    },
    /// The server's keepalive, with the end of the WAL it has sent.
    KeepAlive {
        /// End of the WAL sent so far.
        wal_end: Lsn,
    },
}

/// How a close went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The final position reached the server, the stream ended with CopyDone and the
    /// connection closed.
    Clean,
    /// The connection did not close within the deadline and was torn down.
    TornDown,
}

/// An open replication stream.
#[async_trait]
pub trait ReplicationTransport: Send + std::fmt::Debug {
    /// The next event; `Ok(None)` when the stream ended cleanly.
    ///
    /// Cancel-safe: dropping the future loses no event.
    async fn recv(&mut self) -> Result<Option<StreamEvent>, SourceError>;

    /// Tells the server every change up to `flush` is durable downstream. Monotonic: a lower
    /// value than before is ignored. The server hears of it within the status interval.
    fn confirm(&self, flush: Lsn);

    /// Sends `final_flush` (if any) and waits up to `deadline` for the server to hear it, ends
    /// the stream with CopyDone and closes the connection.
    async fn close(
        self: Box<Self>,
        final_flush: Option<Lsn>,
        deadline: Duration,
    ) -> Result<CloseOutcome, SourceError>;
}

/// Opens replication streams.
#[async_trait]
pub trait TransportConnector: Send + Sync + std::fmt::Debug {
    /// Opens a stream on the slot starting after `start`, with `start` reported as flushed.
    /// Fails within the connector's connect timeout.
    async fn open(&self, start: Lsn) -> Result<Box<dyn ReplicationTransport>, SourceError>;
}
