//! Liveness of the replication stream: silence alone does not make a connection dead.
//!
//! The walsender can be silent for a long time while it is working for us: decoding a huge
//! transaction (nothing is sent before its commit), or reading through a long stretch of WAL
//! that the publication does not cover. A timeout on silence alone then ends a healthy session,
//! the next session decodes the same WAL again, and the reconnects repeat until the budget is
//! spent. So when the stream has been silent for the liveness timeout, the source asks the
//! server, over an ordinary SQL connection bounded by the connect and statement timeouts, how
//! its walsender is doing (`pg_stat_replication`):
//!
//! - no walsender of ours is streaming: dead;
//! - its `sent_lsn` (which the walsender advances past every WAL record it reads, sent or not)
//!   moved since the previous check of the same silence: alive, it is reading WAL for us;
//! - it is busy (`pg_stat_activity` shows it on the CPU, no wait event, or waiting on I/O such
//!   as reading the WAL or a transaction spilled to disk): alive. This covers the replay of a
//!   huge transaction at its commit, one WAL record during which neither `sent_lsn` nor the
//!   server's view of our status updates (`reply_time`) moves;
//! - otherwise it is waiting: for WAL (then the heartbeat it sent never reached us), for the
//!   socket (what it sent does not drain), or idle: dead.
//!
//! An alive walsender's silence is survived, counted, and the wait goes on for another
//! timeout. A check that cannot reach the server counts as dead. A black-holed connection is
//! declared dead once the walsender has nothing left to do but wait (for WAL, or for the
//! socket), usually at the first or second check; a server that decodes for an hour is never
//! interrupted. `pgwire-replication` 0.5 sets the reply-requested flag only when it answers a
//! server's request, so asking the server for a keepalive on the replication connection is not
//! available; see decision 0002.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use surefoot_core_lifecycle::timeout::TimeoutError;
use surefoot_core_model::Lsn;
use tokio::time::Instant;

use crate::config::PostgresSourceConfig;
use crate::error::SourceError;
use crate::metrics::SourceMetrics;
use crate::sql::SqlConnection;
use crate::transport::{ReplicationTransport, StreamEvent};

/// The operation named by the error of a stream declared dead.
pub(crate) const RECEIVE: &str = "receive from replication stream";

/// Why a silent stream was declared dead.
#[derive(Debug, thiserror::Error)]
pub enum Silence {
    /// No walsender with the source's application name is streaming.
    #[error("no walsender of the source is streaming")]
    NoWalsender,
    /// The walsender read no WAL since the previous check and is not busy.
    #[error("the walsender stayed at {sent_lsn} and is waiting ({wait_event})")]
    Waiting {
        /// The WAL it has read.
        sent_lsn: Lsn,
        /// What it waits for, as `pg_stat_activity` says (`type/event`).
        wait_event: String,
    },
    /// The server could not be asked.
    #[error("the server could not be asked about the walsender")]
    ProbeFailed(#[source] Box<SourceError>),
}

/// What the server says of the source's walsender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalsenderProgress {
    /// The WAL the walsender has read (decoded), sent or not.
    pub(crate) sent_lsn: Lsn,
    /// Its wait event as `type/event`, `None` when it is running on the CPU.
    pub(crate) wait_event: Option<String>,
}

impl WalsenderProgress {
    /// On the CPU or waiting on I/O (reading WAL, reading or writing spilled changes).
    fn is_busy(&self) -> bool {
        self.wait_event
            .as_deref()
            .is_none_or(|event| event.starts_with("IO/"))
    }
}

/// Asks the server about the source's walsender.
#[async_trait]
pub(crate) trait ProgressProbe: Send + Sync {
    /// The newest walsender of the source that is streaming, if any.
    async fn walsender(&self) -> Result<Option<WalsenderProgress>, SourceError>;
}

/// [`ProgressProbe`] on a new SQL connection per check (checks are rare: one per timeout of
/// silence).
pub(crate) struct SqlProbe<'a> {
    pub(crate) config: &'a PostgresSourceConfig,
    pub(crate) application_name: &'a str,
}

#[async_trait]
impl ProgressProbe for SqlProbe<'_> {
    async fn walsender(&self) -> Result<Option<WalsenderProgress>, SourceError> {
        let sql = SqlConnection::open(self.config, "liveness").await?;
        let name = self.application_name;
        let row = sql
            .run("check walsender progress", |client| async move {
                client
                    .query_opt(
                        "SELECT COALESCE(r.sent_lsn, '0/0')::text, \
                                a.wait_event_type || '/' || a.wait_event \
                         FROM pg_stat_replication r JOIN pg_stat_activity a USING (pid) \
                         WHERE r.application_name = $1 AND r.state IN ('streaming', 'catchup') \
                         ORDER BY r.backend_start DESC LIMIT 1",
                        &[&name],
                    )
                    .await
                    .map_err(|error| SourceError::query("check walsender progress", error))
            })
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let sent: String = row.get(0);
        Ok(Some(WalsenderProgress {
            sent_lsn: sent.parse().map_err(SourceError::InvalidLsn)?,
            wait_event: row.get(1),
        }))
    }
}

/// Whether a walsender seen as `now` is alive, given the WAL it had read at the previous check
/// of the same silence; returns the WAL it has read, to compare the next check with.
pub(crate) fn judge(previous: Option<Lsn>, now: Option<WalsenderProgress>) -> Result<Lsn, Silence> {
    let now = now.ok_or(Silence::NoWalsender)?;
    let advanced = previous.is_some_and(|previous| now.sent_lsn > previous);
    if advanced || now.is_busy() {
        return Ok(now.sent_lsn);
    }
    Err(Silence::Waiting {
        sent_lsn: now.sent_lsn,
        wait_event: now.wait_event.unwrap_or_default(),
    })
}

/// The liveness state of one session.
pub(crate) struct Liveness<'a> {
    limit: Duration,
    probe: &'a dyn ProgressProbe,
    /// Silences survived, shared with the source.
    survived: &'a AtomicU64,
    metrics: &'a SourceMetrics,
    /// Since when the stream has been silent (or since the last check found it alive).
    silent_since: Option<Instant>,
    /// What the last check of the current silence saw.
    checked: Option<Lsn>,
}

impl<'a> Liveness<'a> {
    pub(crate) fn new(
        limit: Duration,
        probe: &'a dyn ProgressProbe,
        survived: &'a AtomicU64,
        metrics: &'a SourceMetrics,
    ) -> Self {
        Self {
            limit,
            probe,
            survived,
            metrics,
            silent_since: None,
            checked: None,
        }
    }

    /// The next event; a silence of the timeout is checked with the server and either survived
    /// or the error that ends the session.
    ///
    /// Cancel-safe: the transport's `recv` is, and a check cut short is simply made again.
    pub(crate) async fn recv(
        &mut self,
        transport: &mut dyn ReplicationTransport,
    ) -> Result<Option<StreamEvent>, SourceError> {
        loop {
            let since = *self.silent_since.get_or_insert_with(Instant::now);
            if let Ok(event) = tokio::time::timeout_at(since + self.limit, transport.recv()).await {
                self.silent_since = None;
                self.checked = None;
                return event;
            }
            let silent_for = since.elapsed();
            let seen = self
                .probe
                .walsender()
                .await
                .map_err(|error| Silence::ProbeFailed(Box::new(error)));
            match seen.and_then(|seen| judge(self.checked, seen)) {
                Ok(sent_lsn) => {
                    self.survived.fetch_add(1, Ordering::Relaxed);
                    self.metrics.silence_survived();
                    tracing::info!(?silent_for, %sent_lsn, "replication stream silent, but the walsender is working; waiting on");
                    self.checked = Some(sent_lsn);
                    self.silent_since = Some(Instant::now());
                }
                Err(reason) => {
                    return Err(SourceError::StreamSilent {
                        silent_for,
                        reason,
                        timeout: TimeoutError::new(RECEIVE, self.limit),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
