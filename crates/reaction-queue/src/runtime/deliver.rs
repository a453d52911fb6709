//! Delivering one item: attempts under the retry policy, then the dead-letter destination, then
//! the token, in that order.

use std::sync::Arc;
use std::time::Duration;

use surefoot_core_lifecycle::{CancellationToken, Classify, Retry, RetryError, RetryPolicy};
use surefoot_core_model::{Batch, Reaction};

use super::error::AttemptError;
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
    /// Not finished (stop deadline, or the dead letter could not be written); the token is
    /// settled as failed, so the item is delivered again.
    Unacknowledged,
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
}

impl Deliverer {
    /// Delivers `queued` and settles its token, unless `cancel` fires first.
    ///
    /// Cancel safety: on `cancel` the attempt in progress is dropped and the token is settled
    /// as failed. The token is settled in the same poll in which the reaction reports its
    /// effect done, so an applied item is never left unacknowledged by a stop.
    pub(crate) async fn deliver(&self, queued: Queued, cancel: &CancellationToken) -> Settled {
        let Queued {
            batch, enqueued_at, ..
        } = queued;
        let result = tokio::select! {
            biased;
            () = cancel.cancelled() => return self.unacknowledged(batch),
            result = self.attempts(&batch, cancel) => result,
        };
        match result {
            Ok(()) => {
                batch.ack.delivered();
                self.metrics.delivered(enqueued_at.elapsed());
                Settled::Delivered
            }
            Err(RetryError::Cancelled { .. }) => self.unacknowledged(batch),
            Err(error) => {
                let settled = tokio::select! {
                    biased;
                    () = cancel.cancelled() => return self.unacknowledged(batch),
                    settled = self.dead_letter(&batch, &error) => settled,
                };
                if settled == Settled::DeadLettered {
                    batch.ack.delivered();
                    self.metrics.dead_lettered(enqueued_at.elapsed());
                } else {
                    self.metrics.unacknowledged(1);
                    batch.ack.failed();
                }
                settled
            }
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

    async fn dead_letter(&self, batch: &Batch, error: &RetryError<AttemptError>) -> Settled {
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
            Ok(Ok(())) => Settled::DeadLettered,
            Ok(Err(error)) => {
                tracing::error!(reaction = %self.name, source = %batch.source, first = %batch.first, error = %error_chain(&error), "dead letter not written; the batch stays unacknowledged for redelivery");
                Settled::Unacknowledged
            }
            Err(timeout) => {
                tracing::error!(reaction = %self.name, source = %batch.source, first = %batch.first, error = %timeout, "dead letter not written in time; the batch stays unacknowledged for redelivery");
                Settled::Unacknowledged
            }
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
