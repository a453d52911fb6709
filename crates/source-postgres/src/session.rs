//! One replication session: from an open stream to batches, and from the watermark back to the
//! server, until the stream fails, a batch fails, or the source stops.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_lifecycle::timeout::timeout;
use surefoot_core_model::{AckTracker, Batch, BatchSender, Lsn, Position, SourceId};
use tokio::sync::watch;

use crate::error::SourceError;
use crate::liveness::{Liveness, ProgressProbe};
use crate::metrics::SourceMetrics;
use crate::pgoutput::{
    Assembled, Begin, Commit, CompletedTransaction, TransactionAssembler, decode_bytes,
};
use crate::transport::{ReplicationTransport, StreamEvent};

/// How a session ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// The source is stopping.
    Stopping,
    /// A batch was not delivered: rewind the tracker and deliver again from the watermark.
    Redeliver,
}

/// What a session needs from its source.
pub(crate) struct SessionContext<'a> {
    pub(crate) source: &'a SourceId,
    pub(crate) tracker: &'a AckTracker,
    pub(crate) output: &'a BatchSender,
    pub(crate) metrics: &'a SourceMetrics,
    /// The stream must show a sign of life this often (heartbeat on), or the server is asked
    /// whether our walsender is working ([`crate::liveness`]).
    pub(crate) liveness: Option<Duration>,
    /// Asks the server about our walsender when the stream is silent.
    pub(crate) probe: &'a dyn ProgressProbe,
    /// Silences survived because the walsender was working, shared with the source.
    pub(crate) silences_survived: &'a AtomicU64,
    /// The highest WAL position told to the server so far, shared with the source's stop.
    pub(crate) confirmed: &'a watch::Sender<Lsn>,
}

/// A running session's state.
pub(crate) struct Session<'a> {
    ctx: SessionContext<'a>,
    liveness: Option<Liveness<'a>>,
    transport: Box<dyn ReplicationTransport>,
    assembler: TransactionAssembler,
    /// End LSN of each transaction in flight, by the position of its last change: confirmed
    /// once the watermark reaches that position.
    end_lsns: BTreeMap<Position, Lsn>,
    /// Transactions committed at or below this were delivered before: skip them.
    delivered_through: Option<Lsn>,
    /// A batch waiting for room in the output, and since when.
    pending: Option<Batch>,
    pending_since: Instant,
    /// Whether anything was delivered or confirmed in this session (resets reconnect backoff).
    pub(crate) made_progress: bool,
}

impl<'a> Session<'a> {
    pub(crate) fn new(ctx: SessionContext<'a>, transport: Box<dyn ReplicationTransport>) -> Self {
        // Everything up to the last registered batch was sent before: in flight batches settle
        // on their own, failed ones come back through a rewind.
        let delivered_through = ctx.tracker.last_registered().and_then(|p| p.commit_lsn());
        let liveness = ctx
            .liveness
            .map(|limit| Liveness::new(limit, ctx.probe, ctx.silences_survived, ctx.metrics));
        Self {
            ctx,
            liveness,
            transport,
            assembler: TransactionAssembler::new(),
            end_lsns: BTreeMap::new(),
            delivered_through,
            pending: None,
            pending_since: Instant::now(),
            made_progress: false,
        }
    }

    /// The transport, for the caller to close once the session ends.
    pub(crate) fn into_transport(self) -> Box<dyn ReplicationTransport> {
        self.transport
    }

    /// Runs until the source stops, a batch fails, or the stream fails.
    ///
    /// Cancel-safe at every await: events are read through the transport's cancel-safe `recv`,
    /// and a batch waits for room through a reservation, so stopping loses nothing that was not
    /// confirmed.
    pub(crate) async fn run(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<SessionEnd, SourceError> {
        let mut watermark = self.ctx.tracker.subscribe();
        // A batch that failed before this session subscribed would otherwise go unnoticed.
        if self.on_tracker_change() {
            return Ok(SessionEnd::Redeliver);
        }
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Ok(SessionEnd::Stopping),
                changed = watermark.changed() => {
                    if changed.is_err() || self.on_tracker_change() {
                        return Ok(SessionEnd::Redeliver);
                    }
                }
                permit = self.ctx.output.reserve(), if self.pending.is_some() => {
                    let (Some(permit), Some(batch)) = (permit, self.pending.take()) else {
                        return Err(SourceError::OutputClosed);
                    };
                    self.ctx.metrics.blocked(self.pending_since.elapsed());
                    permit.send(batch);
                }
                event = self.next_event(), if self.pending.is_none() => {
                    match event? {
                        Some(event) => self.on_event(event)?,
                        None => return Err(SourceError::StreamEnded),
                    }
                }
            }
        }
    }

    /// For a stop: gives up the batch waiting for room (its token settles as abandoned, so it is
    /// delivered again after restart), then waits up to `limit` for the batches in flight to
    /// settle, confirming the watermark as it moves. A failure (that abandoned batch, or any
    /// other) ends the wait only once every batch before it has settled: the delivered prefix
    /// is confirmed, only what follows the failure is delivered again.
    pub(crate) async fn drain(&mut self, limit: Duration) {
        self.pending = None;
        let mut watermark = self.ctx.tracker.subscribe();
        let settled = async {
            loop {
                self.on_tracker_change();
                if self.prefix_settled() || watermark.changed().await.is_err() {
                    return;
                }
            }
        };
        if timeout("drain batches in flight", limit, settled)
            .await
            .is_err()
        {
            let in_flight = self.ctx.tracker.in_flight();
            tracing::warn!(source = %self.ctx.source, in_flight, "stopping with batches in flight; they are delivered again after restart");
        }
        self.on_tracker_change();
    }

    /// Whether no batch in flight can still move the watermark: none is in flight, or a batch
    /// failed and every transaction before it is confirmed.
    fn prefix_settled(&self) -> bool {
        let tracker = self.ctx.tracker;
        match tracker.failure() {
            None => tracker.in_flight() == 0,
            Some(failed) => self
                .end_lsns
                .first_key_value()
                .is_none_or(|(last, _)| *last >= failed.first),
        }
    }

    async fn next_event(&mut self) -> Result<Option<StreamEvent>, SourceError> {
        match &mut self.liveness {
            Some(liveness) => liveness.recv(self.transport.as_mut()).await,
            None => self.transport.recv().await,
        }
    }

    /// Confirms the end LSN of every transaction the watermark covers (also when a batch
    /// failed: the watermark is still the delivered prefix); returns true when a batch failed.
    fn on_tracker_change(&mut self) -> bool {
        if let Some(watermark) = self.ctx.tracker.watermark() {
            let mut covered = None;
            while let Some(entry) = self.end_lsns.first_entry() {
                if *entry.key() > watermark {
                    break;
                }
                covered = Some(entry.remove());
            }
            if let Some(end) = covered {
                self.confirm(end);
            }
        }
        self.ctx.tracker.failure().is_some()
    }

    fn on_event(&mut self, event: StreamEvent) -> Result<(), SourceError> {
        let assembled = match event {
            StreamEvent::Begin {
                final_lsn,
                commit_time,
                xid,
            } => {
                let begin = Begin {
                    final_lsn,
                    commit_time,
                    xid,
                };
                self.assembler
                    .feed(crate::pgoutput::Message::Begin(begin))?
            }
            StreamEvent::Data(bytes) => self.assembler.feed(decode_bytes(bytes)?)?,
            StreamEvent::Commit {
                commit_lsn,
                end_lsn,
                commit_time,
            } => {
                let commit = Commit {
                    flags: 0,
                    commit_lsn,
                    end_lsn,
                    commit_time,
                };
                self.assembler
                    .feed(crate::pgoutput::Message::Commit(commit))?
            }
            StreamEvent::Message { lsn, .. } | StreamEvent::KeepAlive { wal_end: lsn } => {
                self.confirm_if_idle(lsn);
                None
            }
        };
        match assembled {
            Some(Assembled::Transaction(transaction)) => self.on_transaction(transaction)?,
            Some(Assembled::Message(message)) => self.confirm_if_idle(message.lsn),
            None => {}
        }
        Ok(())
    }

    fn on_transaction(&mut self, transaction: CompletedTransaction) -> Result<(), SourceError> {
        self.ctx
            .metrics
            .transaction_received(transaction.changes.len());
        if self
            .delivered_through
            .is_some_and(|through| transaction.commit_lsn <= through)
        {
            self.ctx.metrics.transaction_skipped();
            // Sent by an earlier session, so this session has no end LSN for it yet: without
            // one, its acknowledgement would confirm nothing until a later transaction settles
            // (and a stop in between would leave the slot behind the watermark).
            let settled = self
                .ctx
                .tracker
                .watermark()
                .and_then(|w| w.commit_lsn())
                .is_some_and(|watermark| transaction.commit_lsn <= watermark);
            if settled {
                self.confirm(transaction.end_lsn);
            } else {
                let last_ordinal =
                    u32::try_from(transaction.changes.len().saturating_sub(1)).unwrap_or(u32::MAX);
                let last = Position::postgres(transaction.commit_lsn, last_ordinal);
                self.end_lsns.insert(last, transaction.end_lsn);
            }
            return Ok(());
        }
        if transaction.changes.is_empty() {
            self.confirm_if_idle(transaction.end_lsn);
            return Ok(());
        }
        let last_ordinal = u32::try_from(transaction.changes.len() - 1).unwrap_or(u32::MAX);
        let first = Position::postgres(transaction.commit_lsn, 0);
        let last = Position::postgres(transaction.commit_lsn, last_ordinal);
        let ack = self.ctx.tracker.register(first, last)?;
        self.end_lsns.insert(last, transaction.end_lsn);
        self.pending_since = Instant::now();
        self.pending = Some(Batch {
            source: self.ctx.source.clone(),
            first,
            last,
            commit_time: Some(transaction.commit_time),
            changes: Arc::from(transaction.changes),
            ack,
        });
        Ok(())
    }

    /// With nothing in flight, nothing waiting and no transaction open, everything the server
    /// sent up to `lsn` is delivered (or was never ours): confirm it.
    fn confirm_if_idle(&mut self, lsn: Lsn) {
        let idle = self.pending.is_none()
            && !self.assembler.in_transaction()
            && self.ctx.tracker.in_flight() == 0;
        if idle {
            self.confirm(lsn);
        }
    }

    fn confirm(&mut self, lsn: Lsn) {
        let raised = self.ctx.confirmed.send_if_modified(|confirmed| {
            let raise = lsn > *confirmed;
            if raise {
                *confirmed = lsn;
            }
            raise
        });
        if raised {
            self.transport.confirm(lsn);
            self.made_progress = true;
        }
    }
}
