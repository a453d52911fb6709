//! The Redis Streams backend: a durable queue per reaction, shared by several worker processes
//! through a consumer group.
//!
//! - **Producing**: [`RedisQueueProducer`] appends batches with `XADD` (pipelined for several
//!   batches). A batch counts as delivered to the queue once Redis has acknowledged its
//!   `XADD`; its token is settled then, and the source may confirm it. The producer waits
//!   while the stream holds `max_len` entries (bounded, never trimmed to make room).
//! - **Consuming**: each [`RedisStreamWorker`] is one consumer of the group. It reads new
//!   entries with `XREADGROUP`, applies the reaction with retries, and only after the effect
//!   is done (or the entry is dead-lettered to its own stream) acknowledges it: `XACK` and
//!   `XDEL` in one `MULTI`. Entries are never trimmed or deleted before they are acknowledged.
//! - **Dead consumers**: every `claim_interval` each worker runs `XAUTOCLAIM` for entries left
//!   pending longer than `claim_idle` and processes them, so the entries a killed worker held
//!   are taken over by the others. A restarted worker with the same consumer name first
//!   re-reads its own pending entries.
//! - **Delivery**: at least once. An entry can be applied twice when a worker dies after the
//!   effect and before `XACK`, or when a delivery outlasts `claim_idle`; reactions are
//!   idempotent by position (see [`surefoot_core_model::Reaction`]). Order: one consumer sees
//!   entries in stream order; several consumers share the stream, so per-key order across
//!   workers is not kept by this backend (use one worker per stream when it matters).
//!
//! # Redis settings this relies on
//!
//! An acknowledged `XADD` is only as durable as the server makes it:
//!
//! - `appendonly yes` — without the append-only file, a restart loses everything since the
//!   last RDB snapshot, including entries whose batches the source has already confirmed.
//! - `appendfsync always` for no loss even on power failure or kernel crash (each write is
//!   fsynced before the reply). `everysec` (Redis's default) survives a crash of the Redis
//!   process but may lose up to a second of acknowledged entries on a machine crash.
//! - `maxmemory-policy noeviction` — any evicting policy may delete the stream or the
//!   group's pending list. With `noeviction` a full server refuses `XADD`, which the producer
//!   reports as an error and the source redelivers.
//! - A replica is not a substitute: replication is asynchronous, and a failover can lose
//!   acknowledged writes unless `WAIT`/`WAITAOF` is used (not done here).

mod codec;
mod config;
mod error;
mod producer;
mod worker;

pub use config::RedisQueueConfig;
pub use error::RedisQueueError;
pub(crate) use error::redis_class;
pub use producer::RedisQueueProducer;
pub use worker::{RedisStreamWorker, connection_manager, create_group};
