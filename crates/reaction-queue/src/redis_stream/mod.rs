//! The Redis Streams backend: a durable queue per reaction, partitioned by source, shared by
//! any number of worker processes, keeping each source's order into the reaction (X-3; see
//! `docs/decisions/0010-ordered-delivery.md`).
//!
//! - **Partitions**: the queue `<stream>` is `partitions` streams `<stream>:p<i>`; a batch goes
//!   to [`partition_of`] its source, so one source's batches are in one stream, in append
//!   order. The count is recorded in `<stream>:meta`; a producer or consumer configured with
//!   another count is refused.
//! - **Producing**: [`RedisQueueProducer`] appends batches with `XADD` (pipelined for several
//!   batches). A batch counts as delivered to the queue once Redis has acknowledged its
//!   `XADD`; its token is settled then, and the source may confirm it. The producer waits
//!   while the partition holds `max_len` entries (bounded, never trimmed to make room).
//! - **Ownership**: each partition is consumed by the one consumer holding its lease
//!   (`<stream>:lease:<i>` = `<consumer>#<token>`, with a time to live; the token is a fencing
//!   token from `INCR <stream>:fence:<i>`). A [`RedisStreamWorker`]'s `run` loop renews its
//!   leases every third of `lease_ttl`, records itself in the live set (`<stream>:consumers`,
//!   expiry by the server's clock) and holds a fair share, `ceil(partitions / live)`: it gives
//!   up extra partitions between entries and takes free ones, including those whose lease
//!   expired because their owner died. Nothing is claimed entry by entry.
//! - **Consuming**: one task per partition held reads the partition stream in order (`XREAD`
//!   from its oldest entry), applies the reaction with retries and, only after the effect is
//!   done or the entry is dead-lettered to its own stream, deletes it with an `XDEL` fenced by
//!   the lease (a Lua script that compares the lease's value). An entry that cannot be settled
//!   (its attempts time out, its dead letter cannot be written) holds the partition: it is
//!   tried again and nothing after it is applied.
//! - **Delivery**: at least once, in order per partition. An entry is applied twice only when
//!   its consumer dies (or loses its lease) after the effect and before the delete; the
//!   repeat comes before anything later of its source, so a consumer idempotent by position
//!   (see [`surefoot_core_model::Reaction`]) recognises it and skips nothing it never applied.
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
mod consume;
mod error;
mod lease;
mod partition;
mod producer;
mod worker;

pub use config::RedisQueueConfig;
pub use error::RedisQueueError;
pub(crate) use error::redis_class;
pub use partition::{DEFAULT_PARTITIONS, partition_of, partition_stream};
pub use producer::RedisQueueProducer;
pub use worker::{RedisStreamWorker, WorkerHealth, connection_manager};
