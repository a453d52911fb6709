//! The batcher: coalesces accepted requests into batches, adapting to load.
//!
//! Requests arrive on a bounded queue. The batcher takes the first waiting request, then every
//! request already queued behind it, up to `max_changes` changes (a request is never split: it
//! is one source transaction). If the output has no room at that moment and the batch is not
//! full, it waits up to `max_delay` for more requests, since it would wait for the output anyway.
//! So an idle source sends each request at once, and a loaded one sends fewer, larger batches:
//! while a batch waits for room in the output, requests pile up and the next batch is bigger.
//!
//! Each batch takes the next sequence positions, is registered with the ack tracker, and carries
//! a token whose outcome goes to the settler, which answers every request in it.

use std::sync::Arc;

use surefoot_core_model::{AckOutcome, AckToken, Batch, Change, Position};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::idempotency::ClaimId;
use crate::settler::{Part, Watch};
use crate::source::Shared;
use crate::wire::PostedChange;

/// One accepted request waiting for its batch.
#[derive(Debug)]
pub(crate) struct Submission {
    pub(crate) changes: Vec<PostedChange>,
    pub(crate) claim: Option<ClaimId>,
    pub(crate) reply: Option<oneshot::Sender<crate::settler::Settled>>,
}

/// Why the batcher ended badly.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BatcherError {
    /// The consumer of the source's output is gone.
    #[error("the source's output is closed; batches can no longer be delivered")]
    OutputClosed,
    /// The settler is gone.
    #[error("the settler ended before the batcher")]
    SettlerGone,
}

/// Runs until cancelled or until every request sender is gone, then flushes what is queued.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut submissions: mpsc::Receiver<Submission>,
    watches: mpsc::Sender<Watch>,
    cancel: CancellationToken,
) -> Result<(), BatcherError> {
    loop {
        let first = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            next = submissions.recv() => match next {
                Some(first) => first,
                None => return Ok(()),
            },
        };
        let group = gather(&shared, first, &mut submissions).await;
        send(&shared, group, &watches).await?;
    }
    // Stopping: refuse new requests, send what was accepted.
    submissions.close();
    let mut queued = Vec::new();
    while let Some(submission) = submissions.recv().await {
        queued.push(submission);
    }
    let mut queued = queued.into_iter().peekable();
    while let Some(first) = queued.next() {
        let mut group = vec![first];
        let mut count = group[0].changes.len();
        while let Some(next) = queued.next_if(|next| count + next.changes.len() <= max(&shared)) {
            count += next.changes.len();
            group.push(next);
        }
        send(&shared, group, &watches).await?;
    }
    Ok(())
}

fn max(shared: &Shared) -> usize {
    shared.config.batching.max_changes
}

/// The first request and those that join it.
async fn gather(
    shared: &Shared,
    first: Submission,
    submissions: &mut mpsc::Receiver<Submission>,
) -> Vec<Submission> {
    let limit = max(shared);
    let deadline = tokio::time::Instant::now() + shared.config.batching.max_delay;
    let mut count = first.changes.len();
    let mut group = vec![first];
    let mut held: Option<Submission> = None;
    while count < limit && held.is_none() {
        let next = match submissions.try_recv() {
            Ok(next) => next,
            Err(_) if shared.output.capacity() > 0 => break,
            Err(_) => {
                // The output is full: waiting for more costs nothing.
                tokio::select! {
                    next = submissions.recv() => match next {
                        Some(next) => next,
                        None => break,
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
        };
        if count + next.changes.len() > limit {
            held = Some(next);
        } else {
            count += next.changes.len();
            group.push(next);
        }
    }
    // A request that would overflow the batch waits at the front for the next one; keeping the
    // order simple, it is sent right after as a batch of its own.
    if let Some(held) = held {
        group.push(held);
    }
    group
}

/// Builds one batch per run of requests that fit `max_changes`, and sends them in order.
async fn send(
    shared: &Shared,
    group: Vec<Submission>,
    watches: &mpsc::Sender<Watch>,
) -> Result<(), BatcherError> {
    let limit = max(shared);
    let mut batch_parts: Vec<Submission> = Vec::new();
    let mut count = 0;
    for submission in group {
        if !batch_parts.is_empty() && count + submission.changes.len() > limit {
            send_one(shared, std::mem::take(&mut batch_parts), watches).await?;
            count = 0;
        }
        count += submission.changes.len();
        batch_parts.push(submission);
    }
    if !batch_parts.is_empty() {
        send_one(shared, batch_parts, watches).await?;
    }
    Ok(())
}

async fn send_one(
    shared: &Shared,
    submissions: Vec<Submission>,
    watches: &mpsc::Sender<Watch>,
) -> Result<(), BatcherError> {
    let total: usize = submissions.iter().map(|s| s.changes.len()).sum();
    let first_sequence = shared.take_sequences(total as u64).await;
    let mut changes = Vec::with_capacity(total);
    let mut parts = Vec::with_capacity(submissions.len());
    let mut next = first_sequence;
    for submission in submissions {
        let first = next;
        let count = submission.changes.len();
        for posted in submission.changes {
            changes.push(Change {
                position: Position::Sequence(next),
                table: posted.table,
                operation: posted.operation,
            });
            next += 1;
        }
        parts.push(Part {
            claim: submission.claim,
            reply: submission.reply,
            first,
            last: next - 1,
            changes: count,
        });
    }
    let first = Position::Sequence(first_sequence);
    let last = Position::Sequence(next - 1);
    let (token, outcome) = observed_token(shared, first, last);
    let batch = Batch {
        source: shared.batch_source.clone(),
        first,
        last,
        commit_time: Some(chrono::Utc::now()),
        changes: changes.into(),
        ack: token,
    };
    watches
        .send(Watch { outcome, parts })
        .await
        .map_err(|_closed| BatcherError::SettlerGone)?;
    shared.metrics.batch_sent(total);
    shared.output.send(batch).await.map_err(|closed| {
        // Dropping the batch settles its token as abandoned: its requests are answered 503.
        drop(closed);
        BatcherError::OutputClosed
    })
}

/// A token for the batch that settles the tracker's token and reports the outcome.
fn observed_token(
    shared: &Shared,
    first: Position,
    last: Position,
) -> (AckToken, oneshot::Receiver<AckOutcome>) {
    let tracked = match shared.tracker.register(first, last) {
        Ok(token) => Some(token),
        Err(error) => {
            // Sequences only grow, so this cannot happen; if it did, the answers are still
            // right (they come from this batch's own token), only the watermark would lag.
            tracing::error!(%error, "batch not registered with the ack tracker");
            None
        }
    };
    let (sender, receiver) = oneshot::channel();
    let token = AckToken::new(move |outcome| {
        if let Some(tracked) = tracked {
            tracked.settle_with(outcome);
        }
        if sender.send(outcome).is_err() {
            // The settler is gone (the source was stopped past its deadline): nobody waits.
        }
    });
    (token, receiver)
}
