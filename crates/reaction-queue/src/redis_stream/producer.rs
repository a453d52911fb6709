//! Appending batches to the stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use surefoot_core_lifecycle::Classify;
use surefoot_core_model::{Batch, ComponentError, Reaction};

use super::codec;
use super::error::RedisQueueError;
use crate::metrics::QueueMetrics;

/// How long a producer waits between looks at a full stream's length.
const FULL_POLL: Duration = Duration::from_millis(20);

/// The stream's length has not been seen yet.
const UNKNOWN: u64 = u64::MAX;

/// Appends batches to a reaction's stream.
///
/// A batch counts as delivered once Redis has acknowledged its `XADD`: its token is then
/// settled as delivered. If the append fails, the token is settled as failed, so the source
/// delivers it again. Durability of an acknowledged `XADD` is what the server's persistence
/// settings make it (see the [module docs](super)).
#[derive(Clone)]
pub struct RedisQueueProducer {
    connection: ConnectionManager,
    stream: String,
    max_len: u64,
    op_timeout: Duration,
    metrics: QueueMetrics,
    /// The stream's length as last seen, shared by clones; [`UNKNOWN`] before the first look.
    known_len: Arc<AtomicU64>,
}

impl std::fmt::Debug for RedisQueueProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueueProducer")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl RedisQueueProducer {
    /// A producer appending to `stream`, waiting while it holds `max_len` entries or more.
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
            max_len,
            op_timeout,
            metrics,
            known_len: Arc::new(AtomicU64::new(UNKNOWN)),
        }
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
        self.wait_for_room(batches.len()).await?;
        let mut pipe = redis::Pipeline::with_capacity(batches.len() + 1);
        let mut scratch = Vec::new();
        for batch in batches {
            codec::add_xadd(&mut pipe, &self.stream, batch, &mut scratch)?;
        }
        // The length after the appends comes back in the same round trip and serves the
        // next append's bound check.
        pipe.cmd("XLEN").arg(&self.stream);
        let mut connection = self.connection.clone();
        let mut replies: Vec<redis::Value> = surefoot_core_lifecycle::timeout(
            "XADD",
            self.op_timeout,
            pipe.query_async(&mut connection),
        )
        .await?
        .map_err(|source| self.error("XADD", source))?;
        let len = replies.pop().map(redis::from_redis_value::<u64>);
        let ids: Result<Vec<String>, _> =
            replies.into_iter().map(redis::from_redis_value).collect();
        match (ids, len) {
            (Ok(ids), Some(Ok(len))) if ids.len() == batches.len() => {
                self.remember_len(len);
                Ok(ids)
            }
            _ => Err(RedisQueueError::Codec {
                stream: self.stream.clone(),
                id: "-".to_owned(),
                reason: "unexpected reply to XADD".to_owned(),
            }),
        }
    }

    /// Waits until the stream has room for `count` more entries.
    ///
    /// The length known from the previous append is used when it leaves room; otherwise the
    /// length is read again (`XLEN`) until there is room. Consumers only shorten the stream, so
    /// with one producer the known length is never below the real one and `max_len` is never
    /// passed; several producers may together pass it by at most one append each.
    async fn wait_for_room(&self, count: usize) -> Result<(), RedisQueueError> {
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        let fits = |len: u64| len == 0 || len.saturating_add(count) <= self.max_len;
        let known = self.known_len.load(Ordering::Acquire);
        if known != UNKNOWN && fits(known) {
            return Ok(());
        }
        let mut waiting_since = None;
        loop {
            let len = self.stream_len().await?;
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

    fn remember_len(&self, len: u64) {
        self.known_len.store(len, Ordering::Release);
        self.metrics.observed_depth(len);
    }

    /// Entries in the stream now (delivered to a consumer or not, not yet acknowledged).
    pub async fn stream_len(&self) -> Result<u64, RedisQueueError> {
        let mut connection = self.connection.clone();
        surefoot_core_lifecycle::timeout(
            "XLEN",
            self.op_timeout,
            redis::cmd("XLEN")
                .arg(&self.stream)
                .query_async(&mut connection),
        )
        .await?
        .map_err(|source| self.error("XLEN", source))
        .inspect(|len| self.remember_len(*len))
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
