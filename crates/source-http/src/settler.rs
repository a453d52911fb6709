//! The settler: turns each batch's outcome into idempotency records and answers.
//!
//! It watches every batch sent, and when one settles it first records the outcome under each
//! request's idempotency key, then answers each request still waiting. Recording first means a
//! client that got its answer and retries always finds the record. The settler runs apart from
//! the request handlers, so a request whose client went away still has its key recorded.

use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use surefoot_core_model::AckOutcome;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::answer::{delivered_body, queued_body};
use crate::config::AckMode;
use crate::idempotency::{ClaimId, StoredAnswer};
use crate::source::Shared;

/// A request's share of a settled batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Delivered: its changes hold positions `first..=last`.
    Delivered(Receipt),
    /// Not delivered.
    Failed(AckOutcome),
}

/// Where a delivered request's changes landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Receipt {
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) changes: usize,
}

/// One request inside a batch.
#[derive(Debug)]
pub(crate) struct Part {
    pub(crate) claim: Option<ClaimId>,
    pub(crate) reply: Option<oneshot::Sender<Settled>>,
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) changes: usize,
}

/// A batch to watch.
#[derive(Debug)]
pub(crate) struct Watch {
    pub(crate) outcome: oneshot::Receiver<AckOutcome>,
    pub(crate) parts: Vec<Part>,
}

type Settling = BoxFuture<'static, (AckOutcome, Vec<Part>)>;

/// Runs until its watch queue is closed (the batcher ended) and every watched batch settled.
/// On cancellation it keeps going for those, within the stop deadline.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut watches: mpsc::Receiver<Watch>,
    mut releases: mpsc::Receiver<ClaimId>,
    cancel: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let mut settling: FuturesUnordered<Settling> = FuturesUnordered::new();
    let mut open = true;
    let mut cancelled = false;
    while open || !settling.is_empty() {
        tokio::select! {
            Some((outcome, parts)) = settling.next(), if !settling.is_empty() => {
                settle(&shared, outcome, parts).await;
            }
            watch = watches.recv(), if open => match watch {
                Some(watch) => settling.push(Box::pin(async move {
                    // A dropped sender means the token's callback never ran: not delivered.
                    let outcome = watch.outcome.await.unwrap_or(AckOutcome::Abandoned);
                    (outcome, watch.parts)
                })),
                None => open = false,
            },
            Some(claim) = releases.recv() => release(&shared, &claim).await,
            () = cancel.cancelled(), if !cancelled => cancelled = true,
        }
    }
    while let Ok(claim) = releases.try_recv() {
        release(&shared, &claim).await;
    }
    Ok(())
}

async fn release(shared: &Shared, claim: &ClaimId) {
    if let Err(error) = shared.store.release(claim).await {
        shared.metrics.idempotency_error();
        tracing::warn!(%error, key = %claim.key, "idempotency claim not released; it expires after pending_ttl");
    }
}

async fn settle(shared: &Shared, outcome: AckOutcome, parts: Vec<Part>) {
    if shared.tracker.failure().is_some() {
        // The client owns the retry of a failed batch (it gets 503 and posts again under new
        // positions), so the source never sends that range again: forget it, so the watermark
        // follows the batches delivered since.
        shared.tracker.rewind();
    }
    let records = parts.iter().map(|part| record(shared, outcome, part));
    futures::future::join_all(records).await;
    for part in parts {
        let Some(reply) = part.reply else { continue };
        let settled = if outcome.is_delivered() {
            Settled::Delivered(Receipt {
                first: part.first,
                last: part.last,
                changes: part.changes,
            })
        } else {
            Settled::Failed(outcome)
        };
        if reply.send(settled).is_err() {
            // The request is gone (client disconnected or timed out); its key holds the answer.
        }
    }
}

/// Records the part's outcome under its key, if it has one.
async fn record(shared: &Shared, outcome: AckOutcome, part: &Part) {
    let async_mode = shared.config.ack_mode == AckMode::Async;
    if async_mode && !outcome.is_delivered() {
        shared.metrics.async_failed(part.changes);
        tracing::error!(
            ?outcome,
            changes = part.changes,
            first = part.first,
            last = part.last,
            "changes answered 202 (async mode) were not delivered"
        );
    }
    let Some(claim) = &part.claim else { return };
    let answer = match (async_mode, outcome.is_delivered()) {
        (true, _) => StoredAnswer {
            status: 202,
            body: queued_body(part.changes),
        },
        (false, true) => StoredAnswer {
            status: 200,
            body: delivered_body(part.first, part.last, part.changes),
        },
        (false, false) => return release(shared, claim).await,
    };
    match shared.store.complete(claim, &answer).await {
        Ok(true) => {}
        Ok(false) => {
            shared.metrics.idempotency_error();
            tracing::warn!(key = %claim.key, "idempotency claim expired before its answer was stored");
        }
        Err(error) => {
            shared.metrics.idempotency_error();
            tracing::warn!(%error, key = %claim.key, "idempotency answer not stored; the claim expires after pending_ttl");
        }
    }
}
