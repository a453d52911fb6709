//! Appending batches to the stream.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use surefoot_core_lifecycle::Classify;
use surefoot_core_model::{Batch, ComponentError, Reaction};
use tokio::sync::OnceCell;

use super::codec;
use super::error::RedisQueueError;
use super::partition::{DEFAULT_PARTITIONS, ensure_meta, partition_of, partition_stream};
use crate::metrics::QueueMetrics;

fn unknown_lengths(partitions: u32) -> Arc<[AtomicU64]> {
    (0..partitions.max(1))
        .map(|_| AtomicU64::new(UNKNOWN))
        .collect()
}

/// How long a producer waits between looks at a full stream's length.
const FULL_POLL: Duration = Duration::from_millis(20);

/// The stream's length has not been seen yet.
const UNKNOWN: u64 = u64::MAX;

/// Appends batches to a reaction's queue: each batch to the partition stream of its source
/// ([`partition_of`]), so one source's batches stay in one stream in append order.
///
/// Order: batches of one source must be appended in position order, one call at a time per
/// source (a [`crate::ReactionRuntime`] with the default key does that when the producer is
/// its reaction); a pipeline keeps its order.
///
/// A batch counts as delivered once Redis has acknowledged its `XADD`: its token is then
/// settled as delivered. If the append fails, the token is settled as failed, so the source
/// delivers it again. Durability of an acknowledged `XADD` is what the server's persistence
/// settings make it (see the [module docs](super)).
#[derive(Clone)]
pub struct RedisQueueProducer {
    connection: ConnectionManager,
    stream: String,
    partitions: u32,
    max_len: u64,
    op_timeout: Duration,
    metrics: QueueMetrics,
    /// Each partition's length as last seen, shared by clones; [`UNKNOWN`] before the first
    /// look.
    known_len: Arc<[AtomicU64]>,
    /// Set once the partition count is recorded in (and agrees with) `<stream>:meta`.
    checked: Arc<OnceCell<()>>,
}

impl std::fmt::Debug for RedisQueueProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueueProducer")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl RedisQueueProducer {
    /// A producer appending to the queue `stream` in [`DEFAULT_PARTITIONS`] partitions, waiting
    /// while the partition it appends to holds `max_len` entries or more.
    ///
    /// Build `connection` with reply limits at least `op_timeout` (see
    /// [`super::connection_manager`]), or the redis crate's 500 ms default applies first.
    pub fn new(
        connection: ConnectionManager,
        stream: impl Into<String>,
        max_len: u64,
        op_timeout: Duration,
        metrics: QueueMetrics,
    ) -> Self {
        metrics.declare();
        Self {
            connection,
            stream: stream.into(),
            partitions: DEFAULT_PARTITIONS,
            max_len,
            op_timeout,
            metrics,
            known_len: unknown_lengths(DEFAULT_PARTITIONS),
            checked: Arc::new(OnceCell::new()),
        }
    }

    /// Uses `partitions` partition streams (at least 1); every producer and consumer of the
    /// queue must use the same count (checked against `<stream>:meta` on the first append).
    pub fn with_partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions.max(1);
        self.known_len = unknown_lengths(self.partitions);
        self
    }

    /// The partition count.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Appends one batch; returns its entry id.
    pub async fn append(&self, batch: Batch) -> Result<String, RedisQueueError> {
        let mut ids = self.append_all(vec![batch]).await?;
        ids.pop().ok_or_else(|| RedisQueueError::Codec {
            stream: self.stream.clone(),
            id: "-".to_owned(),
            reason: "XADD returned no id".to_owned(),
        })
    }

    /// Appends `batches` in one pipeline (in order) once the stream has room for them all;
    /// returns their entry ids.
    ///
    /// On success every token is settled as delivered; on failure every token is settled as
    /// failed (some entries may have been added: consumers are idempotent by position).
    /// Cancel safety: dropping the future drops the batches, settling them as abandoned.
    pub async fn append_all(&self, batches: Vec<Batch>) -> Result<Vec<String>, RedisQueueError> {
        let borrowed: Vec<&Batch> = batches.iter().collect();
        match self.try_append_all(&borrowed).await {
            Ok(ids) => {
                self.metrics.appended(batches.len());
                batches.into_iter().for_each(|batch| batch.ack.delivered());
                Ok(ids)
            }
            Err(error) => {
                tracing::warn!(stream = %self.stream, batches = batches.len(), %error, "append failed; the batches will be delivered again");
                batches.into_iter().for_each(|batch| batch.ack.failed());
                Err(error)
            }
        }
    }

    async fn try_append_all(&self, batches: &[&Batch]) -> Result<Vec<String>, RedisQueueError> {
        let partitions = self.partitions.to_string();
        self.checked
            .get_or_try_init(|| {
                ensure_meta(
                    &self.connection,
                    &self.stream,
                    "partitions",
                    &partitions,
                    self.op_timeout,
                )
            })
            .await?;
        let targets: Vec<u32> = batches
            .iter()
            .map(|batch| partition_of(&batch.source, self.partitions))
            .collect();
        let touched: BTreeMap<u32, usize> = targets.iter().fold(BTreeMap::new(), |mut m, p| {
            *m.entry(*p).or_default() += 1;
            m
        });
        for (partition, count) in &touched {
            self.wait_for_room(*partition, *count).await?;
        }
        let mut pipe = redis::Pipeline::with_capacity(batches.len() + touched.len());
        let mut scratch = Vec::new();
        for (batch, partition) in batches.iter().zip(&targets) {
            let stream = partition_stream(&self.stream, *partition);
            codec::add_xadd(&mut pipe, &stream, batch, &mut scratch)?;
        }
        // The lengths after the appends come back in the same round trip and serve the next
        // append's bound check.
        for partition in touched.keys() {
            pipe.cmd("XLEN")
                .arg(partition_stream(&self.stream, *partition));
        }
        let mut connection = self.connection.clone();
        let mut replies: Vec<redis::Value> = surefoot_core_lifecycle::timeout(
            "XADD",
            self.op_timeout,
            pipe.query_async(&mut connection),
        )
        .await?
        .map_err(|source| self.error("XADD", source))?;
        let lens = replies.split_off(batches.len().min(replies.len()));
        let ids: Result<Vec<String>, _> =
            replies.into_iter().map(redis::from_redis_value).collect();
        let lens: Result<Vec<u64>, _> = lens.into_iter().map(redis::from_redis_value).collect();
        match (ids, lens) {
            (Ok(ids), Ok(lens)) if ids.len() == batches.len() && lens.len() == touched.len() => {
                for (partition, len) in touched.keys().zip(lens) {
                    self.remember_len(*partition, len);
                }
                Ok(ids)
            }
            _ => Err(RedisQueueError::Codec {
                stream: self.stream.clone(),
                id: "-".to_owned(),
                reason: "unexpected reply to XADD".to_owned(),
            }),
        }
    }

    /// Waits until `partition` has room for `count` more entries.
    ///
    /// The length known from the previous append is used when it leaves room; otherwise the
    /// length is read again (`XLEN`) until there is room. Consumers only shorten the stream, so
    /// with one producer the known length is never below the real one and `max_len` is never
    /// passed; several producers may together pass it by at most one append each.
    async fn wait_for_room(&self, partition: u32, count: usize) -> Result<(), RedisQueueError> {
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        let fits = |len: u64| len == 0 || len.saturating_add(count) <= self.max_len;
        let known = self.known(partition).load(Ordering::Acquire);
        if known != UNKNOWN && fits(known) {
            return Ok(());
        }
        let mut waiting_since = None;
        loop {
            let len = self.partition_len(partition).await?;
            if fits(len) {
                if let Some(since) = waiting_since {
                    self.metrics.producer_waited(Instant::elapsed(&since));
                }
                return Ok(());
            }
            waiting_since.get_or_insert_with(Instant::now);
            tokio::time::sleep(FULL_POLL).await;
        }
    }

    fn known(&self, partition: u32) -> &AtomicU64 {
        let index = usize::try_from(partition).unwrap_or(0);
        &self.known_len[index.min(self.known_len.len().saturating_sub(1))]
    }

    fn remember_len(&self, partition: u32, len: u64) {
        self.known(partition).store(len, Ordering::Release);
        let total = self
            .known_len
            .iter()
            .map(|len| match len.load(Ordering::Relaxed) {
                UNKNOWN => 0,
                len => len,
            })
            .fold(0u64, u64::saturating_add);
        self.metrics.observed_depth(total);
    }

    async fn partition_len(&self, partition: u32) -> Result<u64, RedisQueueError> {
        let mut connection = self.connection.clone();
        let len = surefoot_core_lifecycle::timeout(
            "XLEN",
            self.op_timeout,
            redis::cmd("XLEN")
                .arg(partition_stream(&self.stream, partition))
                .query_async(&mut connection),
        )
        .await?
        .map_err(|source| self.error("XLEN", source))?;
        self.remember_len(partition, len);
        Ok(len)
    }

    /// Entries in the queue now, over all partitions (not yet applied, or applied and not yet
    /// deleted).
    pub async fn stream_len(&self) -> Result<u64, RedisQueueError> {
        let mut pipe = redis::pipe();
        for partition in 0..self.partitions {
            pipe.cmd("XLEN")
                .arg(partition_stream(&self.stream, partition));
        }
        let mut connection = self.connection.clone();
        let lens: Vec<u64> = surefoot_core_lifecycle::timeout(
            "XLEN",
            self.op_timeout,
            pipe.query_async(&mut connection),
        )
        .await?
        .map_err(|source| self.error("XLEN", source))?;
        for (partition, len) in (0..self.partitions).zip(&lens) {
            self.remember_len(partition, *len);
        }
        Ok(lens.into_iter().fold(0, u64::saturating_add))
    }

    fn error(&self, operation: &'static str, source: redis::RedisError) -> RedisQueueError {
        RedisQueueError::Redis {
            operation,
            stream: self.stream.clone(),
            source,
        }
    }
}

/// As a reaction, the producer feeds the stream from an in-memory runtime: `apply` returns once
/// the `XADD` is acknowledged, and the runtime then settles the batch's token, so the upstream
/// batch counts as delivered exactly when it is in the stream. Retries and dead letters are the
/// runtime's.
#[async_trait]
impl Reaction for RedisQueueProducer {
    fn name(&self) -> &str {
        &self.stream
    }

    async fn apply(&self, batch: &Batch) -> Result<(), ComponentError> {
        self.try_append_all(&[batch])
            .await
            .map(|_ids| self.metrics.appended(1))
            .map_err(|error| ComponentError::new("append to stream", error.class(), error))
    }
}
