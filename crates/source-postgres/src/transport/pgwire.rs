//! [`ReplicationTransport`] on `pgwire-replication`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pgwire_replication::{
    FeedbackObserver, PgWireError, ReplicationClient, ReplicationConfig, ReplicationEvent,
    ReplicationMetrics,
};
use surefoot_core_lifecycle::timeout::timeout;
use surefoot_core_model::{Lsn, Secret};
use tokio::sync::watch;

use super::{CloseOutcome, ReplicationTransport, StreamEvent, TransportConnector};
use crate::config::PostgresSourceConfig;
use crate::error::SourceError;
use crate::ident::{Identifier, SlotName};
use crate::pgoutput::timestamp_from_postgres_micros;

/// Session settings that fix the text form of values the decoder parses: ISO dates, UTC, hex
/// bytea, floats with every digit. Any other session whose text values go through the same
/// decoder (a snapshot's `COPY`, say) must use exactly these.
pub const SESSION_OPTIONS: &str = "-c datestyle=ISO,MDY -c timezone=UTC -c intervalstyle=postgres \
                               -c bytea_output=hex -c extra_float_digits=3";

/// Where and how to open replication streams.
#[derive(Debug, Clone)]
pub struct ReplicationEndpoint {
    /// Server host (an IP or name; a path for a Unix socket directory).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Role with the REPLICATION attribute.
    pub user: String,
    /// Its password.
    pub password: Secret,
    /// Database whose changes are streamed.
    pub database: String,
    /// The slot.
    pub slot: SlotName,
    /// The publication.
    pub publication: Identifier,
    /// `application_name` of the walsender, so it can be found in `pg_stat_replication`.
    pub application_name: String,
    /// How soon a newly confirmed position reaches the server.
    pub status_interval: Duration,
    /// Bound on connecting, authenticating and starting the stream.
    pub connect_timeout: Duration,
    /// Events buffered between the connection and the stream loop.
    pub buffer_events: usize,
    /// TLS (libpq's `sslmode` and `sslrootcert`).
    pub tls: surefoot_pg_tls::PgTls,
}

impl ReplicationEndpoint {
    /// The pgwire-replication configuration for this endpoint, streaming from `start`, with the
    /// session settings the decoder relies on ([`SESSION_OPTIONS`]).
    pub fn replication_config(&self, start: Lsn) -> ReplicationConfig {
        let start = pgwire_replication::Lsn(start.0);
        ReplicationConfig::new(
            self.host.clone(),
            self.user.clone(),
            self.password.expose(),
            self.database.clone(),
            self.slot.as_str(),
            self.publication.as_str(),
        )
        .with_port(self.port)
        .with_start_lsn(start)
        .with_ack_lsn(start)
        .with_status_interval(self.status_interval)
        .with_wakeup_interval(self.status_interval)
        .with_buffer_size(self.buffer_events.max(1))
        .with_application_name(self.application_name.clone())
        .with_options(SESSION_OPTIONS)
        .with_tls(self.tls.replication())
    }

    /// The endpoint a source with `config` replicates from; the walsender's application name is
    /// `surefoot-<source id>-replication`.
    pub fn for_source(config: &PostgresSourceConfig) -> Self {
        Self {
            host: config.host.clone(),
            port: config.port,
            user: config.user.clone(),
            password: config.password.clone(),
            database: config.database.clone(),
            slot: config.slot.clone(),
            publication: config.publication.clone(),
            application_name: format!("surefoot-{}-replication", config.id),
            status_interval: config.status_interval,
            connect_timeout: config.connect_timeout,
            buffer_events: config.buffer_events,
            tls: config.tls.clone(),
        }
    }
}

/// Opens [`PgWireTransport`]s.
#[derive(Debug, Clone)]
pub struct PgWireConnector {
    endpoint: Arc<ReplicationEndpoint>,
}

impl PgWireConnector {
    /// A connector for `endpoint`.
    pub fn new(endpoint: ReplicationEndpoint) -> Self {
        Self {
            endpoint: Arc::new(endpoint),
        }
    }

    fn config(&self, start: Lsn, feedback: FeedbackObserver) -> ReplicationConfig {
        self.endpoint
            .replication_config(start)
            .with_feedback_observer(feedback)
    }
}

#[async_trait]
impl TransportConnector for PgWireConnector {
    async fn open(&self, start: Lsn) -> Result<Box<dyn ReplicationTransport>, SourceError> {
        let (feedback_sent, feedback_seen) = watch::channel(0u64);
        let observer = FeedbackObserver::new(move |_sent| {
            feedback_sent.send_modify(|count| *count += 1);
        });
        let config = self.config(start, observer);
        let limit = self.endpoint.connect_timeout;
        let mut client = ReplicationClient::connect(config)
            .await
            .map_err(|error| SourceError::replication("connect", error))?;
        let started = timeout("start replication", limit, client.wait_started()).await;
        match started {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                client.abort();
                return Err(SourceError::replication("start replication", error));
            }
            Err(elapsed) => {
                // The worker is stuck connecting or authenticating: nothing to close cleanly.
                client.abort();
                return Err(elapsed.into());
            }
        }
        let metrics = client.metrics();
        Ok(Box::new(PgWireTransport {
            client,
            metrics,
            feedback_seen,
        }))
    }
}

/// A replication stream on `pgwire-replication`.
///
/// The client's background worker keeps answering keepalives while the stream loop is blocked
/// on a full output, so `wal_sender_timeout` does not end the connection under backpressure.
pub struct PgWireTransport {
    client: ReplicationClient,
    metrics: Arc<ReplicationMetrics>,
    /// Counts standby status updates that advanced the reported position.
    feedback_seen: watch::Receiver<u64>,
}

impl std::fmt::Debug for PgWireTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgWireTransport")
            .field("reported", &Lsn(self.metrics.last_applied_lsn().0))
            .field("wal_end", &Lsn(self.metrics.last_wal_end().0))
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl ReplicationTransport for PgWireTransport {
    async fn recv(&mut self) -> Result<Option<StreamEvent>, SourceError> {
        let event = self
            .client
            .recv()
            .await
            .map_err(|error| SourceError::replication("receive", error))?;
        event.map_or(Ok(None), stream_event)
    }

    fn confirm(&self, flush: Lsn) {
        self.client
            .update_applied_lsn(pgwire_replication::Lsn(flush.0));
    }

    async fn close(
        mut self: Box<Self>,
        final_flush: Option<Lsn>,
        deadline: Duration,
    ) -> Result<CloseOutcome, SourceError> {
        let closing = async {
            if let Some(flush) = final_flush {
                self.confirm(flush);
                self.wait_reported(flush).await;
            }
            self.client.shutdown().await
        };
        match timeout("close replication stream", deadline, closing).await {
            Ok(Ok(())) => Ok(CloseOutcome::Clean),
            Ok(Err(error)) if is_closed_connection(&error) => Ok(CloseOutcome::Clean),
            Ok(Err(error)) => Err(SourceError::replication("close", error)),
            Err(elapsed) => {
                tracing::warn!(%elapsed, "replication stream did not close in time; tearing it down");
                self.client.abort();
                Ok(CloseOutcome::TornDown)
            }
        }
    }
}

impl PgWireTransport {
    /// Waits until a standby status update carried `flush` (or more). Cancel-safe.
    async fn wait_reported(&mut self, flush: Lsn) {
        while self.metrics.last_applied_lsn().0 < flush.0 {
            if self.feedback_seen.changed().await.is_err() {
                return; // The worker is gone; close will report how.
            }
        }
    }
}

/// The stream ended because the server closed it while we were closing too.
fn is_closed_connection(error: &PgWireError) -> bool {
    matches!(error, PgWireError::Io(io) if matches!(
        io.kind(),
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
    ))
}

/// Converts one of pgwire-replication's events into the transport's [`StreamEvent`], for any
/// [`ReplicationTransport`] built on a `ReplicationClient` (also outside this crate, such as a
/// stream on the session that created a temporary slot). `None` for events with no counterpart.
pub fn stream_event(event: ReplicationEvent) -> Result<Option<StreamEvent>, SourceError> {
    let lsn = |lsn: pgwire_replication::Lsn| Lsn(lsn.0);
    let event = match event {
        ReplicationEvent::KeepAlive { wal_end, .. } => StreamEvent::KeepAlive {
            wal_end: lsn(wal_end),
        },
        ReplicationEvent::Begin {
            final_lsn,
            xid,
            commit_time_micros,
        } => StreamEvent::Begin {
            final_lsn: lsn(final_lsn),
            commit_time: postgres_time(commit_time_micros)?,
            xid,
        },
        ReplicationEvent::XLogData { data, .. } => StreamEvent::Data(data),
        ReplicationEvent::Commit {
            lsn: commit_lsn,
            end_lsn,
            commit_time_micros,
        } => StreamEvent::Commit {
            commit_lsn: lsn(commit_lsn),
            end_lsn: lsn(end_lsn),
            commit_time: postgres_time(commit_time_micros)?,
        },
        ReplicationEvent::Message {
            transactional,
            lsn: at,
            prefix,
            content,
        } => StreamEvent::Message {
            transactional,
            lsn: lsn(at),
            prefix,
            content,
        },
        // Only produced with a stop LSN, which surefoot never sets.
        ReplicationEvent::StoppedAt { .. } => return Ok(None),
    };
    Ok(Some(event))
}

fn postgres_time(micros: i64) -> Result<chrono::DateTime<chrono::Utc>, SourceError> {
    timestamp_from_postgres_micros(micros).ok_or(SourceError::InvalidTimestamp { micros })
}
