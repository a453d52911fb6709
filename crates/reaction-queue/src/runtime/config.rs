//! The runtime's settings.

use std::time::Duration;

use surefoot_core_lifecycle::{Backoff, RetryPolicy};

use crate::queue::{ConfigError, QueueConfig};

/// The default limit of one attempt: 90 s, longer than the PostgreSQL writer's default
/// `transaction_timeout` (60 s), so that the sink's own bound fires first.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(90);

/// How a reaction runtime runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// The reaction's queue.
    pub queue: QueueConfig,
    /// Workers; items with the same key always go to the same worker, one at a time.
    pub concurrency: usize,
    /// Items handed to one worker ahead of the one it is working on.
    pub lane_capacity: usize,
    /// Retries of a failing item. After them an item that failed permanently is
    /// dead-lettered; one that failed with retryable errors holds its lane and is tried again
    /// after the backoff.
    pub retry: RetryPolicy,
    /// Limit of one attempt of the reaction. Keep it longer than the sink's own bound on one
    /// apply (the PostgreSQL writer's `transaction_timeout`, 60 s by default): the sink then
    /// gives up first, with a definite error, instead of the runtime abandoning an attempt
    /// whose effect may still commit. An attempt that times out is never dead-lettered or
    /// passed; its lane holds it.
    pub attempt_timeout: Duration,
    /// Limit of writing one dead letter.
    pub dead_letter_timeout: Duration,
}

impl RuntimeConfig {
    /// One worker, a queue of `capacity`, 5 attempts from 100 ms to 5 s,
    /// [`DEFAULT_ATTEMPT_TIMEOUT`] per attempt.
    pub fn new(name: impl Into<String>, capacity: usize) -> Self {
        Self {
            queue: QueueConfig::new(name, capacity),
            concurrency: 1,
            lane_capacity: 16,
            retry: RetryPolicy::new(Backoff::new(
                Duration::from_millis(100),
                Duration::from_secs(5),
            )),
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            dead_letter_timeout: Duration::from_secs(10),
        }
    }

    /// Sets the number of workers.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Sets the limit of one attempt (see [`Self::attempt_timeout`]).
    pub fn with_attempt_timeout(mut self, limit: Duration) -> Self {
        self.attempt_timeout = limit;
        self
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Every problem with the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = self.queue.problems("reaction.queue");
        if self.concurrency == 0 {
            problems.push("reaction.concurrency: must be at least 1".to_owned());
        }
        if self.lane_capacity == 0 {
            problems.push("reaction.lane_capacity: must be at least 1".to_owned());
        }
        if self.attempt_timeout.is_zero() {
            problems.push("reaction.attempt_timeout: must be more than 0".to_owned());
        }
        if self.dead_letter_timeout.is_zero() {
            problems.push("reaction.dead_letter_timeout: must be more than 0".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}
