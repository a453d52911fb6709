//! The queue's errors. Each one that refuses a batch hands it back, so its token is settled by
//! its owner rather than dropped here.

use surefoot_core_lifecycle::{Classify, ErrorClass};
use surefoot_core_model::Batch;

/// [`super::QueueSender::send`] failed: the queue is closed (stopping or its receiver is gone).
#[derive(Debug, thiserror::Error)]
#[error("queue `{queue}` is closed; the batch was not enqueued")]
pub struct SendError {
    /// The queue's name.
    pub queue: String,
    /// The batch, back to its owner.
    pub batch: Batch,
}

impl Classify for SendError {
    /// A closed queue is stopping on purpose: [`ErrorClass::Cancelled`].
    fn class(&self) -> ErrorClass {
        ErrorClass::Cancelled
    }
}

/// [`super::QueueSender::reserve`] failed: the queue is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("queue `{queue}` is closed")]
pub struct QueueClosed {
    /// The queue's name.
    pub queue: String,
}

impl Classify for QueueClosed {
    /// A closed queue is stopping on purpose: [`ErrorClass::Cancelled`].
    fn class(&self) -> ErrorClass {
        ErrorClass::Cancelled
    }
}

/// [`super::QueueSender::try_send`] could not enqueue now.
#[derive(Debug, thiserror::Error)]
pub enum TrySendError {
    /// No room: the queue holds its capacity in batches (or bytes).
    #[error("queue `{queue}` is full")]
    Full {
        /// The queue's name.
        queue: String,
        /// The batch, back to its owner.
        batch: Batch,
    },
    /// The queue is closed.
    #[error(transparent)]
    Closed(#[from] SendError),
}

impl TrySendError {
    /// The refused batch.
    pub fn into_batch(self) -> Batch {
        match self {
            TrySendError::Full { batch, .. } | TrySendError::Closed(SendError { batch, .. }) => {
                batch
            }
        }
    }
}

impl Classify for TrySendError {
    /// Full is transient (room comes back); closed is cancelled.
    fn class(&self) -> ErrorClass {
        match self {
            TrySendError::Full { .. } => ErrorClass::Transient,
            TrySendError::Closed(closed) => closed.class(),
        }
    }
}

/// [`super::QueueReceiver::try_recv`] found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing queued now; more may come.
    #[error("the queue is empty")]
    Empty,
    /// Nothing queued and the queue is closed: nothing more will come.
    #[error("the queue is closed and empty")]
    Closed,
}

/// A queue setting is invalid; lists every problem with its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid queue configuration: {}", problems.join("; "))]
pub struct ConfigError {
    /// Each problem, as `path: what is wrong`.
    pub problems: Vec<String>,
}

impl Classify for ConfigError {
    /// Always [`ErrorClass::Configuration`].
    fn class(&self) -> ErrorClass {
        ErrorClass::Configuration
    }
}
