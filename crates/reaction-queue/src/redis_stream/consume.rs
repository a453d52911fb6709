//! One partition, consumed by the consumer holding its lease: entries strictly in stream
//! order, each deleted (fenced by the lease) only after its effect is done or it is
//! dead-lettered, none passed while it is not settled.
//!
//! The stream holds only entries not yet deleted, so its oldest entry is where the next owner
//! starts: after a takeover, what the previous owner left comes first, in order. A previous
//! owner that was merely slow may finish the one entry it was applying after the takeover;
//! that is a repeat of a position the new owner applies first, which a position-idempotent
//! consumer recognises. It cannot go further: its fenced delete fails and it stops.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamReadReply};
use surefoot_core_lifecycle::{Backoff, CancellationToken, Classify};
use surefoot_core_model::AckToken;

use super::codec;
use super::error::RedisQueueError;
use super::lease::Lease;
use super::partition::partition_stream;
use super::worker::{Shared, added_at};
use crate::queue::{OrderKey, Queued};
use crate::runtime::deliver::Settled;

/// What handling one entry came to.
enum Step {
    /// Settled and deleted: go on with the next entry.
    Done,
    /// Cancelled, or the lease was lost: stop the partition.
    Stop,
}

/// Consumes partition `lease.partition` until `cancel` fires or the lease is lost.
pub(crate) async fn consume(
    shared: Arc<Shared>,
    lease: Lease,
    cancel: CancellationToken,
) -> Result<(), RedisQueueError> {
    let stream = partition_stream(&shared.config.stream, lease.partition);
    let Some(reader) = retrying(&shared, &cancel, "connect", || shared.reader()).await? else {
        return Ok(());
    };
    let mut last = "0-0".to_owned();
    loop {
        let read = retrying(&shared, &cancel, "XREAD", || {
            shared.read(&reader, &stream, &last)
        })
        .await?;
        let Some(entries) = read else {
            return Ok(());
        };
        shared.deliverer.metrics.read_from_stream(entries.len());
        for entry in &entries {
            match shared.handle(&lease, &stream, entry, &cancel).await? {
                Step::Done => last.clone_from(&entry.id),
                Step::Stop => return Ok(()),
            }
        }
    }
}

/// Runs `op` until it succeeds, retrying retryable errors with backoff; `None` if `cancel`
/// fires first. A non-retryable error ends the partition task (its lease is then released
/// and the partition taken again).
async fn retrying<T, F, Fut>(
    shared: &Shared,
    cancel: &CancellationToken,
    operation: &'static str,
    mut op: F,
) -> Result<Option<T>, RedisQueueError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RedisQueueError>>,
{
    let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
    let mut failures: u32 = 0;
    loop {
        let result = tokio::select! {
            biased;
            () = cancel.cancelled() => return Ok(None),
            result = op() => result,
        };
        match result {
            Ok(value) => return Ok(Some(value)),
            Err(error) if error.class().is_retryable() => {
                tracing::warn!(stream = %shared.config.stream, consumer = %shared.config.consumer, operation, %error, "Redis queue operation failed; retrying");
                let delay = backoff.delay(failures);
                failures = failures.saturating_add(1);
                tokio::select! {
                    () = cancel.cancelled() => return Ok(None),
                    () = tokio::time::sleep(delay) => {}
                }
            }
            Err(error) => return Err(error),
        }
    }
}

impl Shared {
    /// A connection of the partition's own for its blocking reads.
    async fn reader(&self) -> Result<MultiplexedConnection, RedisQueueError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.op_timeout))
            .set_response_timeout(Some(self.config.block + self.config.op_timeout));
        surefoot_core_lifecycle::timeout(
            "connect",
            self.config.op_timeout.saturating_mul(2),
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await?
        .map_err(|source| self.error("connect", source))
    }

    /// Up to `read_count` entries after `after`, waiting up to `block` for some.
    async fn read(
        &self,
        reader: &MultiplexedConnection,
        stream: &str,
        after: &str,
    ) -> Result<Vec<StreamId>, RedisQueueError> {
        let mut reader = reader.clone();
        let block = u64::try_from(self.config.block.as_millis()).unwrap_or(u64::MAX);
        let reply: Option<StreamReadReply> = surefoot_core_lifecycle::timeout(
            "XREAD",
            self.config.block + self.config.op_timeout,
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(self.config.read_count)
                .arg("BLOCK")
                .arg(block)
                .arg("STREAMS")
                .arg(stream)
                .arg(after)
                .query_async(&mut reader),
        )
        .await?
        .map_err(|source| self.error("XREAD", source))?;
        Ok(reply
            .map(|reply| reply.keys.into_iter().flat_map(|key| key.ids).collect())
            .unwrap_or_default())
    }

    /// Applies (or dead-letters) one entry, then deletes it under the lease. The deliverer
    /// returns only once the entry is settled delivered or `cancel` fires: an entry that
    /// cannot be settled holds the partition.
    async fn handle(
        &self,
        lease: &Lease,
        stream: &str,
        entry: &StreamId,
        cancel: &CancellationToken,
    ) -> Result<Step, RedisQueueError> {
        match codec::decode(stream, entry, AckToken::detached()) {
            Ok(batch) => {
                let key = OrderKey {
                    time_micros: batch.commit_time.map_or(0, |time| time.timestamp_micros()),
                    rank: 0,
                    position: batch.first,
                    arrival: 0,
                };
                let queued = Queued {
                    batch,
                    key,
                    enqueued_at: added_at(&entry.id),
                };
                match self.deliverer.deliver(queued, cancel).await {
                    Settled::Delivered | Settled::DeadLettered => {}
                    // Cancelled: the entry stays, for whoever holds the partition next.
                    Settled::Unacknowledged => return Ok(Step::Stop),
                }
            }
            Err(error) => {
                let written = retrying(self, cancel, "dead letter XADD", || {
                    self.dead_letter_undecodable(entry, &error)
                })
                .await?;
                if written.is_none() {
                    return Ok(Step::Stop);
                }
            }
        }
        let deleted = retrying(self, cancel, "fenced XDEL", || {
            self.leases.fenced_delete(lease, stream, &entry.id)
        })
        .await?;
        match deleted {
            Some(true) => Ok(Step::Done),
            Some(false) => {
                tracing::warn!(stream, consumer = %self.config.consumer, id = %entry.id, "lease lost before the entry was deleted; the next owner applies it again (a repeat of its position)");
                Ok(Step::Stop)
            }
            None => Ok(Step::Stop),
        }
    }

    async fn dead_letter_undecodable(
        &self,
        entry: &StreamId,
        error: &RedisQueueError,
    ) -> Result<(), RedisQueueError> {
        tracing::error!(stream = %self.config.stream, id = %entry.id, %error, "entry is not a batch; dead-lettering it");
        let mut connection = self.commands.clone();
        let added: Result<String, redis::RedisError> = surefoot_core_lifecycle::timeout(
            "dead letter XADD",
            self.config.op_timeout,
            redis::cmd("XADD")
                .arg(&self.config.dead_letter_stream)
                .arg("*")
                .arg("entry")
                .arg(&entry.id)
                .arg("error")
                .arg(error.to_string())
                .arg("attempts")
                .arg(0)
                .query_async(&mut connection),
        )
        .await?;
        added.map_err(|source| self.error("dead letter XADD", source))?;
        self.deliverer.metrics.dead_lettered(Duration::ZERO);
        Ok(())
    }

    fn error(&self, operation: &'static str, source: redis::RedisError) -> RedisQueueError {
        RedisQueueError::Redis {
            operation,
            stream: self.config.stream.clone(),
            source,
        }
    }
}
