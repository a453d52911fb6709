//! A reaction that appends each batch to a Redis stream or publishes it on a channel.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use surefoot_core_lifecycle::ErrorClass;
use surefoot_core_model::{Batch, ComponentError, Reaction};

use super::Payload;
use crate::redis_stream::RedisQueueError;
use crate::redis_stream::redis_class;

/// Where the batches go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// `XADD <stream> * key <idempotency key> batch <json>`: durable, readable later.
    Stream(String),
    /// `PUBLISH <channel> <json>`: for live subscribers only; a subscriber that is not
    /// connected misses it (Redis does not keep published messages).
    Publish(String),
}

/// Writes each batch (as JSON with its idempotency key) to Redis and returns once Redis has
/// acknowledged it.
#[derive(Clone)]
pub struct RedisReaction {
    name: String,
    connection: ConnectionManager,
    target: RedisTarget,
    timeout: Duration,
}

impl std::fmt::Debug for RedisReaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReaction")
            .field("name", &self.name)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl RedisReaction {
    /// A reaction called `name` writing to `target`; each write waits at most `timeout`.
    pub fn new(
        name: impl Into<String>,
        connection: ConnectionManager,
        target: RedisTarget,
        timeout: Duration,
    ) -> Self {
        Self {
            name: name.into(),
            connection,
            target,
            timeout,
        }
    }
}

#[async_trait]
impl Reaction for RedisReaction {
    fn name(&self) -> &str {
        &self.name
    }

    async fn apply(&self, batch: &Batch) -> Result<(), ComponentError> {
        let payload = Payload::of(batch);
        let json = serde_json::to_string(&payload)
            .map_err(|error| ComponentError::new("encode batch", ErrorClass::Permanent, error))?;
        let (operation, key, command) = match &self.target {
            RedisTarget::Stream(stream) => {
                let mut command = redis::cmd("XADD");
                command
                    .arg(stream)
                    .arg("*")
                    .arg("key")
                    .arg(payload.key())
                    .arg("batch")
                    .arg(json);
                ("XADD", stream, command)
            }
            RedisTarget::Publish(channel) => {
                let mut command = redis::cmd("PUBLISH");
                command.arg(channel).arg(json);
                ("PUBLISH", channel, command)
            }
        };
        let mut connection = self.connection.clone();
        let result: Result<redis::Value, redis::RedisError> = surefoot_core_lifecycle::timeout(
            operation,
            self.timeout,
            command.query_async(&mut connection),
        )
        .await
        .map_err(|error| ComponentError::classified("redis reaction", error))?;
        result.map(|_| ()).map_err(|source| {
            let class = redis_class(&source);
            let error = RedisQueueError::Redis {
                operation,
                stream: key.clone(),
                source,
            };
            ComponentError::new("redis reaction", class, error)
        })
    }
}
