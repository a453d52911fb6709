//! One replication session: from an open stream to batches, and from the watermark back to the
//! server, until the stream fails, a batch fails, or the source stops.
//!
//! A transaction becomes one batch, unless its decoded changes pass `max_transaction_memory`:
//! then the rest of it is spilled ([`crate::spill`]) and, at its commit, it is delivered as
//! several batches in position order, each a contiguous part of at most that many bytes
//! ([`transactions`]). Its end LSN is confirmed only once the watermark reaches its last
//! change.

mod transactions;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_lifecycle::timeout::timeout;
use surefoot_core_model::{AckTracker, Batch, BatchSender, Lsn, Position, SourceId};
use tokio::sync::watch;

use crate::error::SourceError;
use crate::liveness::{Liveness, ProgressProbe};
use crate::metrics::SourceMetrics;
use crate::pgoutput::{Commit, TransactionAssembler};
use crate::spill::{SpillCounters, SpillReader, Spool};
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
    /// Bytes of decoded changes a transaction may hold before it spills.
    pub(crate) max_transaction_memory: usize,
    /// Spill figures, shared with the source.
    pub(crate) spill: &'a SpillCounters,
}

/// A running session's state.
pub(crate) struct Session<'a> {
    ctx: SessionContext<'a>,
    liveness: Option<Liveness<'a>>,
    transport: Box<dyn ReplicationTransport>,
    assembler: TransactionAssembler,
    /// The open transaction's memory account and spill file.
    spool: Spool<'a>,
    /// A spilled transaction being delivered from its file, with its Commit.
    replay: Option<(SpillReader, Commit)>,
    /// The position of the last change of the open (or replayed) transaction seen so far.
    open_last: Option<Position>,
    /// End LSN of each transaction in flight, by the position of its last change: confirmed
    /// once the watermark reaches that position.
    end_lsns: BTreeMap<Position, Lsn>,
    /// Changes at or below this were sent before: skip them.
    delivered_through: Option<Position>,
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
        let delivered_through = ctx.tracker.last_registered();
        let spool = Spool::new(ctx.max_transaction_memory, ctx.spill);
        let liveness = ctx
            .liveness
            .map(|limit| Liveness::new(limit, ctx.probe, ctx.silences_survived, ctx.metrics));
        Self {
            ctx,
            liveness,
            transport,
            assembler: TransactionAssembler::new(),
            spool,
            replay: None,
            open_last: None,
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
            if self.pending.is_none() && self.replay.is_some() {
                // Synchronous file reads and decoding, up to one part: never more than one
                // part waits.
                self.replay_part()?;
            }
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
                event = self.next_event(), if self.pending.is_none() && self.replay.is_none() => {
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
