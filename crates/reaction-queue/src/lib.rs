#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod dead_letter;
pub mod metrics;
pub mod queue;
pub mod reactions;
#[cfg(feature = "redis")]
pub mod redis_stream;
pub mod runtime;
pub mod upstream;

#[cfg(feature = "redis")]
pub use dead_letter::RedisDeadLetters;
pub use dead_letter::{DeadLetter, DeadLetterError, DeadLetterSink, FileDeadLetters};
pub use metrics::{MetricsSnapshot, QueueMetrics};
pub use queue::{
    ConfigError, OrderKey, Permit, QueueClosed, QueueConfig, QueueReceiver, QueueSender, Queued,
    SendError, TryRecvError, TrySendError, ordered_queue,
};
pub use reactions::{LogReaction, WebhookConfig, WebhookError, WebhookReaction, idempotency_key};
#[cfg(feature = "redis")]
pub use reactions::{RedisReaction, RedisTarget};
#[cfg(feature = "redis")]
pub use redis_stream::{
    DEFAULT_PARTITIONS, RedisQueueConfig, RedisQueueError, RedisQueueProducer, RedisStreamWorker,
    WorkerHealth, connection_manager, partition_of, partition_stream,
};
pub use runtime::{
    DEFAULT_ATTEMPT_TIMEOUT, HeldLane, ReactionRuntime, RuntimeConfig, RuntimeError, RuntimeHealth,
    StopSummary, key_by_source,
};
pub use upstream::{Fanout, PublishError, SubscribeError, Subscription};
