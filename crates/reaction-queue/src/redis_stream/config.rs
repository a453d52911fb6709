//! The Redis backend's settings.

use std::time::Duration;

use surefoot_core_lifecycle::{Backoff, RetryPolicy};

use super::error::RedisQueueError;

/// A durable queue on Redis streams (one per partition), consumed by a set of consumers that
/// share the partitions through leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisQueueConfig {
    /// The queue's name (one per reaction); partition `p` is the stream `<stream>:p<p>`.
    pub stream: String,
    /// The name of the consumers' set. A queue has one: it is recorded in `<stream>:meta` by
    /// the first consumer, and a consumer naming another group is refused.
    pub group: String,
    /// This worker's consumer name, unique among the queue's live consumers.
    pub consumer: String,
    /// Partition streams. Must equal the producers' count; recorded in `<stream>:meta` by the
    /// first producer or consumer, and a different count is refused.
    pub partitions: u32,
    /// The stream dead letters go to.
    pub dead_letter_stream: String,
    /// The most entries one partition stream may hold; producers wait while it is full.
    pub max_len: u64,
    /// Entries read at a time from one partition.
    pub read_count: usize,
    /// How long one read blocks waiting for new entries.
    pub block: Duration,
    /// How long a partition lease lasts without renewal. The worker renews its leases every
    /// third of it; a consumer that dies (or stalls) for this long loses its partitions to the
    /// others, which go on from the oldest entry it left. Shorter means a faster takeover and
    /// more Redis traffic; it does not bound a delivery (a live consumer keeps renewing).
    pub lease_ttl: Duration,
    /// Limit of every Redis command apart from the blocking read.
    pub op_timeout: Duration,
    /// Retries of a failing reaction. After them an entry that failed permanently is
    /// dead-lettered; one that failed with retryable errors holds its partition and is tried
    /// again after the backoff.
    pub retry: RetryPolicy,
    /// Limit of one attempt of the reaction.
    pub attempt_timeout: Duration,
}

impl RedisQueueConfig {
    /// Defaults: [`DEFAULT_PARTITIONS`](super::DEFAULT_PARTITIONS) partitions, dead letters
    /// to `<stream>:dead`, at most 100,000 entries per partition, reads of 64 blocking 500 ms,
    /// leases of 10 s, 5 s per command, 5 attempts of at most
    /// [`DEFAULT_ATTEMPT_TIMEOUT`](crate::DEFAULT_ATTEMPT_TIMEOUT) each.
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
            partitions: super::DEFAULT_PARTITIONS,
            max_len: 100_000,
            read_count: 64,
            block: Duration::from_millis(500),
            lease_ttl: Duration::from_secs(10),
            op_timeout: Duration::from_secs(5),
            retry: RetryPolicy::new(Backoff::new(
                Duration::from_millis(100),
                Duration::from_secs(5),
            )),
            attempt_timeout: crate::runtime::DEFAULT_ATTEMPT_TIMEOUT,
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
        if self.partitions == 0 {
            problems.push("redis_queue.partitions: must be at least 1".into());
        }
        if self.consumer.contains('#') {
            problems.push("redis_queue.consumer: must not contain `#`".into());
        }
        if self.read_count == 0 {
            problems.push("redis_queue.read_count: must be at least 1".into());
        }
        for (path, value) in [
            ("redis_queue.block", self.block),
            ("redis_queue.lease_ttl", self.lease_ttl),
            ("redis_queue.op_timeout", self.op_timeout),
            ("redis_queue.attempt_timeout", self.attempt_timeout),
        ] {
            if value.is_zero() {
                problems.push(format!("{path}: must be more than 0"));
            }
        }
        if !self.lease_ttl.is_zero() && self.lease_ttl < Duration::from_millis(300) {
            problems.push("redis_queue.lease_ttl: must be at least 300 ms".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(RedisQueueError::Config { problems })
        }
    }
}
