//! The outbox relay: publishes committed outbox messages to Redis Streams, then marks them sent.
//!
//! Exactly once by id. Each message is added with `XADD <stream> <id>-0`, its outbox id as the
//! stream entry id. Redis refuses an id at or below the stream's last one, so a message can
//! never be added twice: if the relay dies between `XADD` and marking the row sent, the next
//! attempt is refused, the relay finds the entry (`XRANGE <id>-0 <id>-0`) and only marks the
//! row. Nothing is lost either: a row stays unsent until Redis confirmed its entry. This needs
//! ids to become visible in increasing order, which the sink transaction guarantees (see
//! `apply::outbox`), and a stream written by one sink only.
//!
//! The relay holds no lock of its own at any time, least of all across a query (FINDINGS W-4),
//! and shares one multiplexed, self-reconnecting Redis connection (W-22). While Redis is down
//! the outbox grows, rounds are retried after full-jitter backoff (W-14) and health reports the
//! writer degraded.

use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use surefoot_core_lifecycle::{CancellationToken, timeout};

use crate::config::OutboxConfig;
use crate::error::WriterError;
use crate::writer::{PostgresWriter, error_chain};

/// One unsent outbox row.
struct Pending {
    id: i64,
    stream: String,
    payload: String,
}

/// How often sent messages past their retention are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(60);

impl PostgresWriter {
    /// Publishes the outbox until `cancel` fires, then makes one last round (bounded by the
    /// Redis timeout) so that what was committed before the stop is published if Redis is up.
    ///
    /// Errors are retried forever with backoff; the relay returns `Ok` only on cancellation.
    /// Returns at once when no outbox is configured.
    pub async fn run_relay(&self, cancel: CancellationToken) -> Result<(), WriterError> {
        let Some(config) = self.inner.config.outbox.clone() else {
            return Ok(());
        };
        let mut redis: Option<ConnectionManager> = None;
        let mut failures: u32 = 0;
        let mut last_purge = Instant::now();
        while !cancel.is_cancelled() {
            let wait = match self.relay_round(&config, &mut redis).await {
                Ok(published) => {
                    failures = 0;
                    if published == config.batch_size {
                        continue;
                    }
                    if last_purge.elapsed() >= PURGE_EVERY {
                        last_purge = Instant::now();
                        self.purge(&config).await;
                    }
                    config.poll_interval
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(sink = %self.sink(), failures, error = %error_chain(&error), "outbox relay round failed; retrying after backoff");
                    config.backoff.delay(failures - 1)
                }
            };
            tokio::select! {
                () = cancel.cancelled() => {}
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        if let Err(error) = self.relay_round(&config, &mut redis).await {
            tracing::warn!(sink = %self.sink(), error = %error_chain(&error), "last outbox round before stop failed; the messages stay in the outbox");
        }
        Ok(())
    }

    /// Publishes up to one batch of unsent messages; returns how many were published.
    async fn relay_round(
        &self,
        config: &OutboxConfig,
        redis: &mut Option<ConnectionManager>,
    ) -> Result<usize, WriterError> {
        let pending = self.unsent(config.batch_size).await?;
        self.inner.metrics.backlog(pending.len() as u64);
        if pending.is_empty() {
            return Ok(0);
        }
        let connection = match redis {
            Some(connection) => connection.clone(),
            None => {
                let connection = connect(config).await.inspect_err(|_| {
                    self.inner.stats.set_redis_down(true);
                })?;
                redis.insert(connection).clone()
            }
        };
        let mut sent = Vec::with_capacity(pending.len());
        let mut failure = None;
        for message in &pending {
            match publish(connection.clone(), config, message).await {
                Ok(()) => sent.push(message.id),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        self.inner.stats.set_redis_down(failure.is_some());
        self.mark_sent(&sent).await?;
        self.inner.metrics.published(sent.len() as u64);
        match failure {
            Some(error) => Err(error),
            None => Ok(sent.len()),
        }
    }

    async fn unsent(&self, limit: usize) -> Result<Vec<Pending>, WriterError> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT id, stream, payload::text FROM surefoot_writer.outbox \
             WHERE sink = $1 AND sent_at IS NULL ORDER BY id LIMIT $2",
        )
        .bind(self.sink())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(|e| WriterError::sql("read unsent outbox messages", e))?;
        Ok(rows
            .into_iter()
            .map(|(id, stream, payload)| Pending {
                id,
                stream,
                payload,
            })
            .collect())
    }

    async fn mark_sent(&self, ids: &[i64]) -> Result<(), WriterError> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query("UPDATE surefoot_writer.outbox SET sent_at = now() WHERE id = ANY($1)")
            .bind(ids)
            .execute(self.pool())
            .await
            .map_err(|e| WriterError::sql("mark outbox messages sent", e))?;
        Ok(())
    }

    async fn purge(&self, config: &OutboxConfig) {
        let result = sqlx::query(
            "DELETE FROM surefoot_writer.outbox WHERE sink = $1 AND sent_at IS NOT NULL \
             AND sent_at < now() - $2 * interval '1 millisecond'",
        )
        .bind(self.sink())
        .bind(i64::try_from(config.retention.as_millis()).unwrap_or(i64::MAX))
        .execute(self.pool())
        .await;
        if let Err(error) = result {
            tracing::warn!(sink = %self.sink(), error = %error, "purging sent outbox messages failed; will try again");
        }
    }
}

async fn connect(config: &OutboxConfig) -> Result<ConnectionManager, WriterError> {
    let redis_error = |operation| move |source| WriterError::Redis { operation, source };
    let client =
        redis::Client::open(config.redis_url.expose()).map_err(redis_error("open client"))?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.redis_timeout))
        .set_response_timeout(Some(config.redis_timeout))
        .set_number_of_retries(1);
    let connect = client.get_connection_manager_with_config(manager_config);
    timeout("connect to redis", config.redis_timeout * 2, connect)
        .await?
        .map_err(redis_error("connect"))
}

/// Adds `message` to its stream under its outbox id; `Ok` also when the entry is already there.
async fn publish(
    mut connection: ConnectionManager,
    config: &OutboxConfig,
    message: &Pending,
) -> Result<(), WriterError> {
    let entry_id = format!("{}-0", message.id);
    let mut command = redis::cmd("XADD");
    command
        .arg(&message.stream)
        .arg(&entry_id)
        .arg("payload")
        .arg(&message.payload);
    let add = command.query_async::<String>(&mut connection);
    match timeout("redis XADD", config.redis_timeout, add).await? {
        Ok(_) => Ok(()),
        Err(error) if is_id_too_small(&error) => {
            already_there(connection, config, &message.stream, &entry_id).await
        }
        Err(source) => Err(WriterError::Redis {
            operation: "XADD",
            source,
        }),
    }
}

fn is_id_too_small(error: &redis::RedisError) -> bool {
    error
        .to_string()
        .contains("equal or smaller than the target stream top item")
}

/// The stream's top is at or past `entry_id`: published before the relay could mark it.
async fn already_there(
    mut connection: ConnectionManager,
    config: &OutboxConfig,
    stream: &str,
    entry_id: &str,
) -> Result<(), WriterError> {
    let mut command = redis::cmd("XRANGE");
    command.arg(stream).arg(entry_id).arg(entry_id);
    let range = command.query_async::<redis::Value>(&mut connection);
    let found = timeout("redis XRANGE", config.redis_timeout, range)
        .await?
        .map_err(|source| WriterError::Redis {
            operation: "XRANGE",
            source,
        })?;
    let present = matches!(&found, redis::Value::Array(entries) if !entries.is_empty());
    if present {
        tracing::info!(
            stream,
            entry_id,
            "outbox message already in the stream; marking it sent"
        );
    } else {
        // Ids reach the stream in increasing order, so the entry was there and has been trimmed
        // (MAXLEN/XDEL), or another writer uses the stream. Either way it cannot be added again.
        tracing::error!(
            stream,
            entry_id,
            "stream is past this outbox id but the entry is absent (trimmed, or the stream is shared with another sink); marking it sent"
        );
    }
    Ok(())
}
