//! Writing outbox messages inside the sink transaction, with ids in commit order.
//!
//! The relay publishes each message to Redis with its outbox id as the stream entry id, and
//! Redis accepts only increasing ids per stream. So ids must become visible in increasing
//! order: the transaction takes a per-sink advisory lock right before it draws ids and keeps it
//! until it commits. Any transaction that drew a smaller id has therefore committed (or rolled
//! back) before a larger id can be drawn.

use sqlx::PgConnection;

use crate::error::WriterError;
use crate::locks::lock_key;

/// Messages a sink transaction publishes once it commits.
#[derive(Debug, Default)]
pub struct OutboxMessages {
    streams: Vec<String>,
    payloads: Vec<String>,
}

impl OutboxMessages {
    /// Queues `payload` for `stream`; written with the transaction, published after commit.
    pub fn push(&mut self, stream: impl Into<String>, payload: &serde_json::Value) {
        self.streams.push(stream.into());
        self.payloads.push(payload.to_string());
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Writes the messages, in order, under the sink's id-order lock.
    pub(crate) async fn insert(
        self,
        conn: &mut PgConnection,
        sink: &str,
    ) -> Result<(), WriterError> {
        if self.is_empty() {
            return Ok(());
        }
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key(&format!("surefoot_writer.outbox:{sink}")))
            .execute(&mut *conn)
            .await
            .map_err(|e| WriterError::sql("take the outbox order lock", e))?;
        sqlx::query(
            "INSERT INTO surefoot_writer.outbox (sink, stream, payload) \
             SELECT $1, s, p::jsonb FROM unnest($2::text[], $3::text[]) \
             WITH ORDINALITY AS u(s, p, n) ORDER BY n",
        )
        .bind(sink)
        .bind(self.streams)
        .bind(self.payloads)
        .execute(conn)
        .await
        .map_err(|e| WriterError::sql("insert outbox messages", e))?;
        Ok(())
    }
}
