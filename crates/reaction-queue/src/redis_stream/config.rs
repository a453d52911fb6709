//! The Redis backend's settings.

use std::time::Duration;

use surefoot_core_lifecycle::{Backoff, RetryPolicy};

use super::error::RedisQueueError;

/// A durable queue on one Redis stream, consumed by one consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisQueueConfig {
    /// The stream holding the queue (one per reaction).
    pub stream: String,
    /// The consumer group; every worker of the reaction joins it.
    pub group: String,
    /// This worker's consumer name, unique within the group and stable across restarts (so a
    /// restarted worker takes back its own pending entries first).
    pub consumer: String,
    /// The stream dead letters go to.
    pub dead_letter_stream: String,
    /// The most entries the stream may hold; producers wait while it is full.
    pub max_len: u64,
    /// Entries read (or claimed) at a time.
    pub read_count: usize,
    /// How long one read blocks waiting for new entries.
    pub block: Duration,
    /// Entries pending this long without an acknowledgement are claimed from their consumer,
    /// which is taken for dead. Must be longer than the slowest delivery of `read_count`
    /// entries, retries included (an entry read with others waits for those before it):
    /// otherwise a live worker's entry is claimed too and delivered twice (at least once;
    /// reactions skip it by position).
    pub claim_idle: Duration,
    /// How often a worker looks for entries to claim.
    pub claim_interval: Duration,
    /// Limit of every Redis command apart from the blocking read.
    pub op_timeout: Duration,
    /// Retries of a failing reaction before the entry is dead-lettered.
    pub retry: RetryPolicy,
    /// Limit of one attempt of the reaction.
    pub attempt_timeout: Duration,
}

impl RedisQueueConfig {
    /// Defaults: dead letters to `<stream>:dead`, at most 100,000 entries, reads of 64 blocking
    /// 500 ms, claims after 60 s idle checked every 5 s, 5 s per command, 5 attempts.
    pub fn new(
        stream: impl Into<String>,
        group: impl Into<String>,
        consumer: impl Into<String>,
    ) -> Self {
        let stream = stream.into();
        Self {
            dead_letter_stream: format!("{stream}:dead"),
            stream,
            group: group.into(),
            consumer: consumer.into(),
            max_len: 100_000,
            read_count: 64,
            block: Duration::from_millis(500),
            claim_idle: Duration::from_secs(60),
            claim_interval: Duration::from_secs(5),
            op_timeout: Duration::from_secs(5),
            retry: RetryPolicy::new(Backoff::new(
                Duration::from_millis(100),
                Duration::from_secs(5),
            )),
            attempt_timeout: Duration::from_secs(30),
        }
    }

    /// Every problem with the settings.
    pub fn validate(&self) -> Result<(), RedisQueueError> {
        let mut problems = Vec::new();
        for (path, value) in [
            ("redis_queue.stream", &self.stream),
            ("redis_queue.group", &self.group),
            ("redis_queue.consumer", &self.consumer),
            ("redis_queue.dead_letter_stream", &self.dead_letter_stream),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("{path}: must not be empty"));
            }
        }
        if self.dead_letter_stream == self.stream {
            problems.push("redis_queue.dead_letter_stream: must differ from the stream".into());
        }
        if self.max_len == 0 {
            problems.push("redis_queue.max_len: must be at least 1".into());
        }
        if self.read_count == 0 {
            problems.push("redis_queue.read_count: must be at least 1".into());
        }
        for (path, value) in [
            ("redis_queue.block", self.block),
            ("redis_queue.claim_idle", self.claim_idle),
            ("redis_queue.claim_interval", self.claim_interval),
            ("redis_queue.op_timeout", self.op_timeout),
            ("redis_queue.attempt_timeout", self.attempt_timeout),
        ] {
            if value.is_zero() {
                problems.push(format!("{path}: must be more than 0"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(RedisQueueError::Config { problems })
        }
    }
}
