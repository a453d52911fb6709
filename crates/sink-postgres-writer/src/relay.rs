//! The outbox relay: publishes committed outbox messages to Redis Streams, then marks them sent.
//!
//! Exactly once by id. Each message is added with `XADD <stream> <id>-0 payload <p> sink <sink>
//! outbox_id <id>`, its outbox id as the stream entry id. Redis refuses an id at or below the
//! stream's last one, so a message can never be added twice: if the relay dies between `XADD`
//! and marking the row sent, the next attempt is refused, the relay reads the entry (`XRANGE
//! <id>-0 <id>-0`) and marks the row only when the entry is this message: same sink, same
//! outbox id, same payload. Anything else (no entry, or another one: another writer uses the
//! stream, the sink database was restored while Redis kept the stream) is
//! [`WriterError::OutboxRefused`] (issue 14, X-5): the row stays unsent, the relay's health is
//! failing, `surefoot.writer.outbox.refused` counts it, an error is logged, and the round is
//! retried after backoff. Nothing is lost either: a row stays unsent until Redis confirmed its
//! entry. Marking rows sent raises the stream's high-water mark in `surefoot_writer.outbox_stream`
//! (the highest outbox id confirmed in it) in the same statement; a refusal names it. This
//! needs ids to become visible in increasing order, which the sink transaction guarantees (see
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
            match publish(connection.clone(), config, self.sink(), message).await {
                Ok(()) => sent.push(message),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        let refused = matches!(failure, Some(WriterError::OutboxRefused { .. }));
        self.inner
            .stats
            .set_redis_down(failure.is_some() && !refused);
        self.mark_sent(&sent).await?;
        self.inner.metrics.published(sent.len() as u64);
        match failure {
            Some(error) => {
                if let WriterError::OutboxRefused { stream, .. } = &error {
                    self.refused(stream, &error).await;
                }
                Err(error)
            }
            None => {
                self.inner.stats.set_outbox_refused(None);
                Ok(sent.len())
            }
        }
    }

    /// Reports a message left unsent because the stream does not hold it as ours.
    async fn refused(&self, stream: &str, error: &WriterError) {
        let high_water = self.high_water(stream).await;
        let reason = format!(
            "{error} (this sink's high-water mark for the stream: {})",
            high_water.map_or_else(|| "none".to_owned(), |id| id.to_string())
        );
        tracing::error!(sink = %self.sink(), stream, reason = %reason, "outbox message refused by Redis and not in the stream as ours; it stays unsent");
        self.inner.metrics.outbox_refused(stream);
        self.inner.stats.set_outbox_refused(Some(reason));
    }

    /// The highest outbox id confirmed in `stream`, if it could be read.
    async fn high_water(&self, stream: &str) -> Option<i64> {
        let read = sqlx::query_scalar(
            "SELECT high_water FROM surefoot_writer.outbox_stream WHERE sink = $1 AND stream = $2",
        )
        .bind(self.sink())
        .bind(stream)
        .fetch_optional(self.pool())
        .await;
        match read {
            Ok(mark) => mark,
            Err(error) => {
                tracing::warn!(sink = %self.sink(), stream, error = %error, "reading the stream's high-water mark failed");
                None
            }
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

    /// Marks `sent` sent and raises their streams' high-water marks, in one statement.
    async fn mark_sent(&self, sent: &[&Pending]) -> Result<(), WriterError> {
        if sent.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = sent.iter().map(|m| m.id).collect();
        let streams: Vec<&str> = sent.iter().map(|m| m.stream.as_str()).collect();
        sqlx::query(
            "WITH marked AS (UPDATE surefoot_writer.outbox SET sent_at = now() \
               WHERE id = ANY($1)) \
             INSERT INTO surefoot_writer.outbox_stream AS o (sink, stream, high_water) \
             SELECT $3, s, max(i) FROM unnest($1::bigint[], $2::text[]) AS u(i, s) GROUP BY s \
             ON CONFLICT (sink, stream) DO UPDATE \
             SET high_water = greatest(o.high_water, excluded.high_water), updated_at = now()",
        )
        .bind(ids)
        .bind(streams)
        .bind(self.sink())
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

/// Adds `message` to its stream under its outbox id; `Ok` also when this very entry is already
/// there.
async fn publish(
    mut connection: ConnectionManager,
    config: &OutboxConfig,
    sink: &str,
    message: &Pending,
) -> Result<(), WriterError> {
    let entry_id = format!("{}-0", message.id);
    let mut command = redis::cmd("XADD");
    command
        .arg(&message.stream)
        .arg(&entry_id)
        .arg("payload")
        .arg(&message.payload)
        .arg("sink")
        .arg(sink)
        .arg("outbox_id")
        .arg(message.id);
    let add = command.query_async::<String>(&mut connection);
    match timeout("redis XADD", config.redis_timeout, add).await? {
        Ok(_) => Ok(()),
        Err(error) if is_id_too_small(&error) => {
            already_there(connection, config, sink, message, &entry_id).await
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

/// The stream's top is at or past `entry_id`: `Ok` when the entry there is `message`, published
/// before the relay could mark it; [`WriterError::OutboxRefused`] otherwise.
async fn already_there(
    mut connection: ConnectionManager,
    config: &OutboxConfig,
    sink: &str,
    message: &Pending,
    entry_id: &str,
) -> Result<(), WriterError> {
    let stream = message.stream.as_str();
    let mut command = redis::cmd("XRANGE");
    command.arg(stream).arg(entry_id).arg(entry_id);
    let range = command.query_async::<redis::streams::StreamRangeReply>(&mut connection);
    let found = timeout("redis XRANGE", config.redis_timeout, range)
        .await?
        .map_err(|source| WriterError::Redis {
            operation: "XRANGE",
            source,
        })?;
    let refused = |problem: String| WriterError::OutboxRefused {
        stream: stream.to_owned(),
        id: message.id,
        problem,
    };
    let Some(entry) = found.ids.into_iter().find(|entry| entry.id == entry_id) else {
        // Trimmed (MAXLEN/XDEL) after a crash between XADD and marking, or never added: the
        // stream cannot tell, so the message is not marked sent.
        return Err(refused(format!(
            "the stream's top is past {entry_id} and it holds no such entry (another writer adds to the stream, the sink database was restored, or the entry was trimmed)"
        )));
    };
    let field = |name: &str| entry.get::<String>(name);
    let ours = field("sink").as_deref() == Some(sink)
        && field("outbox_id") == Some(message.id.to_string())
        && field("payload").as_deref() == Some(message.payload.as_str());
    if !ours {
        return Err(refused(format!(
            "entry {entry_id} is another message (sink {:?}, outbox id {:?}): another writer uses the stream, or the sink database was restored while Redis kept the stream",
            field("sink"),
            field("outbox_id")
        )));
    }
    tracing::info!(
        stream,
        entry_id,
        "outbox message already in the stream; marking it sent"
    );
    Ok(())
}
