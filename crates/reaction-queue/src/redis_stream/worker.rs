//! A worker: one consumer of the reaction's consumer group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use surefoot_core_lifecycle::{Backoff, CancellationToken, Classify};
use surefoot_core_model::{AckToken, Reaction};

use super::codec;
use super::config::RedisQueueConfig;
use super::error::RedisQueueError;
use crate::dead_letter::RedisDeadLetters;
use crate::metrics::QueueMetrics;
use crate::queue::{OrderKey, Queued};
use crate::runtime::deliver::{Deliverer, Settled};

/// Consumes a reaction's stream as one consumer of its group. See the [module docs](super).
pub struct RedisStreamWorker {
    config: RedisQueueConfig,
    commands: ConnectionManager,
    reader: MultiplexedConnection,
    deliverer: Deliverer,
}

impl std::fmt::Debug for RedisStreamWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamWorker")
            .field("stream", &self.config.stream)
            .field("consumer", &self.config.consumer)
            .finish_non_exhaustive()
    }
}

/// Creates `group` on `stream` (and the stream) if missing, reading from the stream's start.
pub async fn create_group(
    connection: &mut ConnectionManager,
    stream: &str,
    group: &str,
    limit: Duration,
) -> Result<(), RedisQueueError> {
    let created: Result<(), redis::RedisError> = surefoot_core_lifecycle::timeout(
        "XGROUP CREATE",
        limit,
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(connection),
    )
    .await?;
    match created {
        Ok(()) => Ok(()),
        Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
        Err(source) => Err(RedisQueueError::Redis {
            operation: "XGROUP CREATE",
            stream: stream.to_owned(),
            source,
        }),
    }
}

/// A reconnecting connection whose connects and replies are each limited to `limit` (the
/// redis crate's default reply limit is 500 ms, short for a loaded server).
pub async fn connection_manager(
    client: &redis::Client,
    limit: Duration,
) -> Result<ConnectionManager, RedisQueueError> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(limit))
        .set_response_timeout(Some(limit));
    surefoot_core_lifecycle::timeout(
        "connect",
        limit.saturating_mul(2),
        ConnectionManager::new_with_config(client.clone(), config),
    )
    .await?
    .map_err(|source| RedisQueueError::Redis {
        operation: "connect",
        stream: String::new(),
        source,
    })
}

impl RedisStreamWorker {
    /// Connects to Redis (one connection for the blocking read, one for everything else) and
    /// creates the group if missing.
    pub async fn connect(
        client: &redis::Client,
        config: RedisQueueConfig,
        reaction: Arc<dyn Reaction>,
        metrics: QueueMetrics,
    ) -> Result<Self, RedisQueueError> {
        config.validate()?;
        let redis_error = |operation, source| RedisQueueError::Redis {
            operation,
            stream: config.stream.clone(),
            source,
        };
        let mut commands = connection_manager(client, config.op_timeout)
            .await
            .map_err(|source| match source {
                RedisQueueError::Redis { source, .. } => redis_error("connect", source),
                other => other,
            })?;
        let reader_config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.op_timeout))
            .set_response_timeout(Some(config.block + config.op_timeout));
        let reader = surefoot_core_lifecycle::timeout(
            "connect",
            config.op_timeout.saturating_mul(2),
            client.get_multiplexed_async_connection_with_config(&reader_config),
        )
        .await?
        .map_err(|source| redis_error("connect", source))?;
        create_group(
            &mut commands,
            &config.stream,
            &config.group,
            config.op_timeout,
        )
        .await?;
        let dead_letters = RedisDeadLetters::new(
            commands.clone(),
            &config.dead_letter_stream,
            config.op_timeout,
        );
        metrics.declare();
        let name = format!("{}/{}", config.stream, config.consumer);
        let deliverer = Deliverer {
            operation: format!("reaction `{name}`").into(),
            name,
            reaction,
            dead_letters: Arc::new(dead_letters),
            retry: config.retry,
            attempt_timeout: config.attempt_timeout,
            dead_letter_timeout: config.op_timeout,
            metrics,
        };
        Ok(Self {
            config,
            commands,
            reader,
            deliverer,
        })
    }

    /// The worker's metrics.
    pub fn metrics(&self) -> &QueueMetrics {
        &self.deliverer.metrics
    }

    /// Consumes until `cancel` fires: first this consumer's own pending entries (left by a
    /// previous run), then new entries, and every `claim_interval` the entries other
    /// consumers left pending longer than `claim_idle`. Each entry is acknowledged (`XACK`,
    /// then deleted) only after the reaction's effect is done or the entry is dead-lettered.
    ///
    /// Connection trouble is retried with backoff; an error retrying cannot fix ends the run.
    /// On `cancel` the entry in progress is dropped and stays pending: it is taken back by
    /// this consumer's next run or claimed by another consumer.
    pub async fn run(&self, cancel: CancellationToken) -> Result<(), RedisQueueError> {
        let mut cursor = Cursor::OwnPending("0".to_owned());
        let mut next_claim = Instant::now();
        let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        let mut failures: u32 = 0;
        while !cancel.is_cancelled() {
            match self.step(&mut cursor, &mut next_claim, &cancel).await {
                Ok(()) => failures = 0,
                Err(error) if error.class().is_retryable() => {
                    tracing::warn!(stream = %self.config.stream, consumer = %self.config.consumer, %error, "Redis queue step failed; retrying");
                    let delay = backoff.delay(failures);
                    failures = failures.saturating_add(1);
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    async fn step(
        &self,
        cursor: &mut Cursor,
        next_claim: &mut Instant,
        cancel: &CancellationToken,
    ) -> Result<(), RedisQueueError> {
        if Instant::now() >= *next_claim {
            self.claim(cancel).await?;
            *next_claim = Instant::now() + self.config.claim_interval;
        }
        let from = match cursor {
            Cursor::OwnPending(id) => id.clone(),
            Cursor::New => ">".to_owned(),
        };
        let entries = tokio::select! {
            biased;
            () = cancel.cancelled() => return Ok(()),
            entries = self.read(&from) => entries?,
        };
        if let Cursor::OwnPending(id) = cursor {
            match entries.last() {
                Some(last) => id.clone_from(&last.id),
                None => *cursor = Cursor::New,
            }
        }
        self.handle_all(&entries, cancel).await
    }

    async fn handle_all(
        &self,
        entries: &[StreamId],
        cancel: &CancellationToken,
    ) -> Result<(), RedisQueueError> {
        self.deliverer.metrics.read_from_stream(entries.len());
        for entry in entries {
            if cancel.is_cancelled() {
                break;
            }
            self.handle(entry, cancel).await?;
        }
        Ok(())
    }

    async fn read(&self, from: &str) -> Result<Vec<StreamId>, RedisQueueError> {
        let mut reader = self.reader.clone();
        let block = u64::try_from(self.config.block.as_millis()).unwrap_or(u64::MAX);
        let reply: Option<StreamReadReply> = surefoot_core_lifecycle::timeout(
            "XREADGROUP",
            self.config.block + self.config.op_timeout,
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&self.config.group)
                .arg(&self.config.consumer)
                .arg("COUNT")
                .arg(self.config.read_count)
                .arg("BLOCK")
                .arg(block)
                .arg("STREAMS")
                .arg(&self.config.stream)
                .arg(from)
                .query_async(&mut reader),
        )
        .await?
        .map_err(|source| self.error("XREADGROUP", source))?;
        Ok(reply
            .map(|reply| reply.keys.into_iter().flat_map(|key| key.ids).collect())
            .unwrap_or_default())
    }

    /// Claims and handles entries other consumers left pending past `claim_idle`.
    async fn claim(&self, cancel: &CancellationToken) -> Result<(), RedisQueueError> {
        let idle = u64::try_from(self.config.claim_idle.as_millis()).unwrap_or(u64::MAX);
        let mut start = "0-0".to_owned();
        loop {
            let mut connection = self.commands.clone();
            let reply: StreamAutoClaimReply = surefoot_core_lifecycle::timeout(
                "XAUTOCLAIM",
                self.config.op_timeout,
                redis::cmd("XAUTOCLAIM")
                    .arg(&self.config.stream)
                    .arg(&self.config.group)
                    .arg(&self.config.consumer)
                    .arg(idle)
                    .arg(&start)
                    .arg("COUNT")
                    .arg(self.config.read_count)
                    .query_async(&mut connection),
            )
            .await?
            .map_err(|source| self.error("XAUTOCLAIM", source))?;
            if !reply.claimed.is_empty() {
                tracing::info!(stream = %self.config.stream, consumer = %self.config.consumer, entries = reply.claimed.len(), "claimed entries left pending by a silent consumer");
                self.deliverer
                    .metrics
                    .claimed(u64::try_from(reply.claimed.len()).unwrap_or(u64::MAX));
            }
            self.handle_all(&reply.claimed, cancel).await?;
            if reply.next_stream_id == "0-0" || cancel.is_cancelled() {
                return Ok(());
            }
            start = reply.next_stream_id;
        }
    }

    async fn handle(
        &self,
        entry: &StreamId,
        cancel: &CancellationToken,
    ) -> Result<(), RedisQueueError> {
        let batch = match codec::decode(&self.config.stream, entry, AckToken::detached()) {
            Ok(batch) => batch,
            Err(error) => return self.dead_letter_undecodable(entry, &error).await,
        };
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
            Settled::Delivered | Settled::DeadLettered => self.ack(&entry.id).await,
            // Stays pending: claimed after `claim_idle`, or taken back by the next run.
            Settled::Unacknowledged => Ok(()),
        }
    }

    /// Acknowledges and deletes the entry in one transaction: an entry is removed from the
    /// stream only once acknowledged.
    async fn ack(&self, id: &str) -> Result<(), RedisQueueError> {
        let mut connection = self.commands.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XACK")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(id)
            .ignore()
            .cmd("XDEL")
            .arg(&self.config.stream)
            .arg(id)
            .ignore();
        surefoot_core_lifecycle::timeout(
            "XACK",
            self.config.op_timeout,
            pipe.query_async::<()>(&mut connection),
        )
        .await?
        .map_err(|source| self.error("XACK", source))
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
        self.ack(&entry.id).await
    }

    fn error(&self, operation: &'static str, source: redis::RedisError) -> RedisQueueError {
        RedisQueueError::Redis {
            operation,
            stream: self.config.stream.clone(),
            source,
        }
    }
}

/// Where the next read starts.
enum Cursor {
    /// Re-reading this consumer's own pending entries after the given id.
    OwnPending(String),
    /// Reading entries never delivered to any consumer.
    New,
}

/// The instant the entry was added, from its id, for end-to-end latency.
fn added_at(id: &str) -> Instant {
    let now = Instant::now();
    let age_millis = codec::added_at_millis(id)
        .map(|added| Utc::now().timestamp_millis().saturating_sub(added))
        .and_then(|age| u64::try_from(age).ok())
        .unwrap_or(0);
    now.checked_sub(Duration::from_millis(age_millis))
        .unwrap_or(now)
}
