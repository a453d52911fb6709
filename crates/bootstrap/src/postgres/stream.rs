//! Streaming from a slot on the replication session that created it: how a consumer added to a
//! running source follows its temporary slot after the snapshot.
//!
//! [`SlotConnector`] is a `TransportConnector` for `PostgresSource::with_connector`: its first
//! `open` starts replication on the session that created the slot (a temporary slot exists only
//! there). A later `open` (after the connection broke) fails: the temporary slot went with the
//! session, and the consumer must bootstrap again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pgwire_replication::{PgWireError, ReplicationClient};
use surefoot_core_lifecycle::timeout;
use surefoot_core_model::Lsn;
use surefoot_source_postgres::SourceError;
use surefoot_source_postgres::transport::{
    CloseOutcome, ReplicationTransport, StreamEvent, TransportConnector, stream_event,
};

use crate::postgres::slot::ExportedSlot;

/// Opens the stream of an [`ExportedSlot`] once.
#[derive(Debug)]
pub struct SlotConnector {
    /// The session, until the first `open` takes it.
    session: Mutex<Option<SlotSession>>,
    connect_timeout: Duration,
}

struct SlotSession(ReplicationClient);

impl std::fmt::Debug for SlotSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlotSession")
    }
}

impl ExportedSlot {
    /// A connector streaming from this slot on its own session, for
    /// `PostgresSource::with_connector` (with the source's `slot` set to this slot's name).
    pub fn into_connector(self) -> Arc<SlotConnector> {
        let connect_timeout = self.endpoint().connect_timeout;
        Arc::new(SlotConnector {
            session: Mutex::new(self.into_client().map(SlotSession)),
            connect_timeout,
        })
    }
}

fn gone() -> SourceError {
    SourceError::replication(
        "reopen the temporary slot's session",
        PgWireError::Internal(
            "the session that held the temporary slot has ended; bootstrap again".to_owned(),
        ),
    )
}

#[async_trait]
impl TransportConnector for SlotConnector {
    async fn open(&self, _start: Lsn) -> Result<Box<dyn ReplicationTransport>, SourceError> {
        // The slot streams from its consistent point; `_start` is that point or the slot's
        // confirmed position, which the server applies anyway.
        let taken = match self.session.lock() {
            Ok(mut session) => session.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let Some(SlotSession(mut client)) = taken else {
            return Err(gone());
        };
        client
            .start()
            .await
            .map_err(|error| SourceError::replication("start replication", error))?;
        match timeout(
            "start replication",
            self.connect_timeout,
            client.wait_started(),
        )
        .await
        {
            Ok(Ok(())) => Ok(Box::new(SlotTransport { client })),
            Ok(Err(error)) => {
                client.abort();
                Err(SourceError::replication("start replication", error))
            }
            Err(elapsed) => {
                client.abort();
                Err(elapsed.into())
            }
        }
    }
}

/// A started stream on the slot's session.
struct SlotTransport {
    client: ReplicationClient,
}

impl std::fmt::Debug for SlotTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlotTransport")
    }
}

#[async_trait]
impl ReplicationTransport for SlotTransport {
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
        if let Some(flush) = final_flush {
            self.confirm(flush);
        }
        match timeout("close replication stream", deadline, self.client.shutdown()).await {
            Ok(Ok(())) => Ok(CloseOutcome::Clean),
            // A temporary slot goes with the session: however the close went, nothing is kept.
            Ok(Err(error)) => {
                tracing::warn!(%error, "the temporary slot's stream did not close cleanly");
                Ok(CloseOutcome::TornDown)
            }
            Err(_elapsed) => {
                self.client.abort();
                Ok(CloseOutcome::TornDown)
            }
        }
    }
}
