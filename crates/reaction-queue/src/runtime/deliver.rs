//! Delivering one item: attempts under the retry policy, then the dead-letter destination, then
//! the token, in that order; an item that cannot be settled delivered holds its lane.

use std::sync::Arc;
use std::time::Duration;

use surefoot_core_lifecycle::{CancellationToken, Classify, Retry, RetryError, RetryPolicy};
use surefoot_core_model::{Batch, Reaction};

use super::error::AttemptError;
use super::hold::{HoldGuard, Holds};
use crate::dead_letter::{DeadLetter, DeadLetterSink, error_chain};
use crate::metrics::QueueMetrics;
use crate::queue::Queued;

/// What happened to one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The reaction's effect is done; the token is settled as delivered.
    Delivered,
    /// The item is in the dead-letter destination; the token is settled as delivered.
    DeadLettered,
    /// Not finished (stop or cancellation while it was tried or held); the token is settled
    /// as failed, so the item is delivered again.
    Unacknowledged,
}

/// One round of trying an item.
enum Round {
    /// Settled delivered (applied, or dead-lettered).
    Settled(Settled),
    /// Not settled: the attempts failed with retryable errors (timeouts: the effect may still
    /// be under way; transient failures: the reaction's target is unavailable), so the item
    /// is not dead-lettered; or the dead letter could not be written. The lane holds the item.
    NotSettled(String),
    /// Cancelled.
    Cancelled,
}

/// Everything a worker needs to deliver items. Shared by the workers.
pub(crate) struct Deliverer {
    pub(crate) name: String,
    /// `reaction \`<name>\``, the operation named by retries.
    pub(crate) operation: Arc<str>,
    pub(crate) reaction: Arc<dyn Reaction>,
    pub(crate) dead_letters: Arc<dyn DeadLetterSink>,
    pub(crate) retry: RetryPolicy,
    pub(crate) attempt_timeout: Duration,
    pub(crate) dead_letter_timeout: Duration,
    pub(crate) metrics: QueueMetrics,
    /// The lanes held now.
    pub(crate) holds: Holds,
}

impl Deliverer {
    /// Delivers `queued` and settles its token, unless `cancel` fires first.
    ///
    /// The item is settled delivered only when the reaction's effect is done or its dead
    /// letter is written. Until then the caller's lane is held: the item is tried again after
    /// the backoff (see [`super::hold`]) and this returns only when it is settled or `cancel`
    /// fires, so nothing behind it in the lane is applied first.
    ///
    /// Cancel safety: on `cancel` the attempt in progress is dropped and the token is settled
    /// as failed. The token is settled in the same poll in which the reaction reports its
    /// effect done, so an applied item is never left unacknowledged by a stop.
    pub(crate) async fn deliver(&self, queued: Queued, cancel: &CancellationToken) -> Settled {
        let Queued {
            batch, enqueued_at, ..
        } = queued;
        let mut hold: Option<HoldGuard> = None;
        loop {
            let round = tokio::select! {
                biased;
                () = cancel.cancelled() => Round::Cancelled,
                round = self.round(&batch, cancel) => round,
            };
            match round {
                Round::Settled(settled) => {
                    if settled == Settled::Delivered {
                        self.metrics.delivered(enqueued_at.elapsed());
                    } else {
                        self.metrics.dead_lettered(enqueued_at.elapsed());
                    }
                    batch.ack.delivered();
                    return settled;
                }
                Round::Cancelled => return self.unacknowledged(batch),
                Round::NotSettled(reason) => {
                    let guard = match hold.as_mut() {
                        Some(guard) => {
                            guard.failed_again(reason);
                            guard
                        }
                        None => {
                            self.metrics.lane_held();
                            hold.insert(self.holds.hold(&self.name, &batch, reason))
                        }
                    };
                    let delay = guard.delay(self.retry.backoff());
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => return self.unacknowledged(batch),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Attempts under the retry policy, then the dead letter if the item is to be given up.
    async fn round(&self, batch: &Batch, cancel: &CancellationToken) -> Round {
        let error = match self.attempts(batch, cancel).await {
            Ok(()) => return Round::Settled(Settled::Delivered),
            Err(RetryError::Cancelled { .. }) => return Round::Cancelled,
            Err(error) => error,
        };
        let class = error.last_error().class();
        if class.is_retryable() {
            // A timeout leaves the outcome unknown (the effect may still land); a transient
            // failure says the item is fine and the reaction is not. Either way a dead letter
            // ("given up on") would let later items overtake this one: hold it instead.
            return Round::NotSettled(format!(
                "{} attempts failed ({class}): {}",
                error.attempts(),
                error_chain(&error)
            ));
        }
        match self.dead_letter(batch, &error).await {
            Ok(()) => Round::Settled(Settled::DeadLettered),
            Err(reason) => Round::NotSettled(reason),
        }
    }

    async fn attempts(
        &self,
        batch: &Batch,
        cancel: &CancellationToken,
    ) -> Result<(), RetryError<AttemptError>> {
        let retry =
            Retry::new(Arc::clone(&self.operation), self.retry).with_cancellation(cancel.clone());
        retry
            .run(|attempt| async move {
                if attempt > 0 {
                    self.metrics.retried();
                }
                surefoot_core_lifecycle::timeout(
                    "reaction apply",
                    self.attempt_timeout,
                    self.reaction.apply(batch),
                )
                .await?
                .map_err(AttemptError::from)
            })
            .await
    }

    async fn dead_letter(
        &self,
        batch: &Batch,
        error: &RetryError<AttemptError>,
    ) -> Result<(), String> {
        let letter = DeadLetter::new(
            &self.name,
            batch,
            error,
            error.last_error().class(),
            error.attempts(),
        );
        tracing::warn!(reaction = %self.name, source = %batch.source, first = %batch.first, attempts = letter.attempts, error = %letter.error, "giving up on a batch; writing it to the dead-letter destination");
        let written = surefoot_core_lifecycle::timeout(
            "dead letter write",
            self.dead_letter_timeout,
            self.dead_letters.write(&letter),
        )
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("dead letter not written: {}", error_chain(&error))),
            Err(timeout) => Err(format!("dead letter not written in time: {timeout}")),
        }
    }

    /// Leaves an item that was never attempted unacknowledged, for redelivery.
    pub(crate) fn unacknowledged_item(&self, queued: Queued) {
        self.unacknowledged(queued.batch);
    }

    fn unacknowledged(&self, batch: Batch) -> Settled {
        self.metrics.unacknowledged(1);
        batch.ack.failed();
        Settled::Unacknowledged
    }
}
