//! Batches: the unit that flows from a source to its consumers, one source transaction each.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::ack::AckToken;
use crate::change::Change;
use crate::position::Position;

/// A source's name, unique within a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(Arc<str>);

impl SourceId {
    /// A source id.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The changes of one source transaction (or several whole ones, coalesced; never part of one),
/// with their position range, commit time and acknowledgement token.
///
/// A batch is not `Clone`: [`Batch::fork`] makes the copy for another consumer and clones the
/// token with it, so that consumer must settle too. To pass a batch on with other changes (a query
/// that filters), build a new one from its fields, moving the token: `Batch { changes, ..batch }`.
#[derive(Debug)]
pub struct Batch {
    /// The source that produced it.
    pub source: SourceId,
    /// Position of the first change (or of the transaction, when it had none left).
    pub first: Position,
    /// Position of the last change.
    pub last: Position,
    /// When the source transaction committed, when the source knows it.
    pub commit_time: Option<DateTime<Utc>>,
    /// The changes, in position order. Shared between forks.
    pub changes: Arc<[Change]>,
    /// Settled by whoever finishes with the batch.
    pub ack: AckToken,
}

impl Batch {
    /// A copy of the batch for one more consumer, holding a clone of the token.
    pub fn fork(&self) -> Batch {
        Batch {
            source: self.source.clone(),
            first: self.first,
            last: self.last,
            commit_time: self.commit_time,
            changes: Arc::clone(&self.changes),
            ack: self.ack.clone(),
        }
    }
}

/// The sending half of a bounded batch channel.
#[derive(Debug, Clone)]
pub struct BatchSender {
    inner: mpsc::Sender<Batch>,
}

/// The receiving half of a bounded batch channel.
#[derive(Debug)]
pub struct BatchReceiver {
    inner: mpsc::Receiver<Batch>,
}

/// The receiver is gone; the batch comes back so its token is settled by its owner.
#[derive(Debug, thiserror::Error)]
#[error("the consumer of the batch channel is gone")]
pub struct ChannelClosed(pub Batch);

/// A bounded channel of batches. A full channel makes the sender wait; nothing is dropped.
pub fn batch_channel(capacity: usize) -> (BatchSender, BatchReceiver) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    (
        BatchSender { inner: sender },
        BatchReceiver { inner: receiver },
    )
}

impl BatchSender {
    /// Sends a batch, waiting for room.
    ///
    /// Cancel-safe in tokio's sense: if the future is dropped before it completes, the batch was
    /// not sent and is dropped with it, which settles its token as abandoned.
    pub async fn send(&self, batch: Batch) -> Result<(), ChannelClosed> {
        self.inner
            .send(batch)
            .await
            .map_err(|mpsc::error::SendError(batch)| ChannelClosed(batch))
    }

    /// Waits for room for one batch and reserves it.
    ///
    /// Cancel-safe: dropping the future gives up the place in the queue of waiting senders and
    /// loses nothing, so it can sit in a `select!` beside other work. `None` when the receiver is
    /// gone.
    pub async fn reserve(&self) -> Option<BatchPermit<'_>> {
        self.inner
            .reserve()
            .await
            .ok()
            .map(|permit| BatchPermit { permit })
    }

    /// Room left in the channel.
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}

/// Room for one batch in a [`BatchSender`]'s channel; see [`BatchSender::reserve`].
#[derive(Debug)]
pub struct BatchPermit<'a> {
    permit: mpsc::Permit<'a, Batch>,
}

impl BatchPermit<'_> {
    /// Sends the batch into the reserved room; cannot fail or wait.
    pub fn send(self, batch: Batch) {
        self.permit.send(batch);
    }
}

impl BatchReceiver {
    /// The next batch, or `None` once every sender is gone and the channel is empty.
    ///
    /// Cancel-safe: if the future is dropped, no batch is lost.
    pub async fn recv(&mut self) -> Option<Batch> {
        self.inner.recv().await
    }

    /// The next batch if one is queued now, without waiting.
    pub fn try_recv(&mut self) -> Option<Batch> {
        self.inner.try_recv().ok()
    }

    /// Stops intake: senders fail from now on, batches already queued can still be received.
    pub fn close(&mut self) {
        self.inner.close();
    }
}
