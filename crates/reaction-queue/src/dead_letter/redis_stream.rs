//! Dead letters appended to a Redis stream.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use super::{DeadLetter, DeadLetterError, DeadLetterSink};

/// Appends each letter to a stream with `XADD`: fields `letter` (the JSON), `error`, `attempts`.
///
/// Durable as far as the server's persistence settings make it (see the crate docs on
/// `appendonly` / `appendfsync`).
#[derive(Clone)]
pub struct RedisDeadLetters {
    connection: ConnectionManager,
    stream: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisDeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDeadLetters")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl RedisDeadLetters {
    /// Letters go to `stream` through `connection`; each append waits at most `timeout`.
    pub fn new(
        connection: ConnectionManager,
        stream: impl Into<String>,
        timeout: Duration,
    ) -> Self {
        Self {
            connection,
            stream: stream.into(),
            timeout,
        }
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }
}

#[async_trait]
impl DeadLetterSink for RedisDeadLetters {
    async fn write(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let json = serde_json::to_string(letter)?;
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("XADD");
        command
            .arg(&self.stream)
            .arg("*")
            .arg("letter")
            .arg(json)
            .arg("error")
            .arg(&letter.error)
            .arg("attempts")
            .arg(letter.attempts);
        let added: Result<String, redis::RedisError> = surefoot_core_lifecycle::timeout(
            "dead letter XADD",
            self.timeout,
            command.query_async(&mut connection),
        )
        .await?;
        added
            .map(|_id| ())
            .map_err(|source| DeadLetterError::Redis {
                stream: self.stream.clone(),
                source,
            })
    }
}
