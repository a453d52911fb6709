//! Partitions: which partition stream a batch goes to, the names of the keys that belong to a
//! queue, and the partition count recorded in Redis.

use std::time::Duration;

use redis::aio::ConnectionManager;
use surefoot_core_model::SourceId;

use super::error::RedisQueueError;

/// Partitions per queue unless configured otherwise.
pub const DEFAULT_PARTITIONS: u32 = 16;

/// The partition of `source` among `partitions`: FNV-1a (64 bit) of the source id, modulo the
/// count. Stable across processes, platforms and releases (it decides where every producer
/// puts a source's batches, so it must never change).
pub fn partition_of(source: &SourceId, partitions: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in source.as_str().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    u32::try_from(hash % u64::from(partitions.max(1))).unwrap_or(0)
}

/// The stream holding partition `partition` of the queue `stream`: `<stream>:p<partition>`.
pub fn partition_stream(stream: &str, partition: u32) -> String {
    format!("{stream}:p{partition}")
}

/// The lease of a partition: `<stream>:lease:<partition>`, value `<consumer>#<token>`.
pub(crate) fn lease_key(stream: &str, partition: u32) -> String {
    format!("{stream}:lease:{partition}")
}

/// The fencing counter of a partition: `<stream>:fence:<partition>`.
pub(crate) fn fence_key(stream: &str, partition: u32) -> String {
    format!("{stream}:fence:{partition}")
}

/// Set when a partition's lease was released cleanly (so the next acquisition is not a
/// takeover): `<stream>:released:<partition>`.
pub(crate) fn released_key(stream: &str, partition: u32) -> String {
    format!("{stream}:released:{partition}")
}

/// Counts partitions taken over after their lease expired: `<stream>:takeovers`.
pub(crate) fn takeovers_key(stream: &str) -> String {
    format!("{stream}:takeovers")
}

/// The live consumers (sorted set, score = lease expiry in server milliseconds).
pub(crate) fn consumers_key(stream: &str) -> String {
    format!("{stream}:consumers")
}

/// The queue's settings recorded in Redis: `<stream>:meta`.
pub(crate) fn meta_key(stream: &str) -> String {
    format!("{stream}:meta")
}

/// Records `field` = `value` in the queue's meta hash if it is not set yet, and fails with
/// [`RedisQueueError::Config`] if it is set to something else: a producer and a consumer that
/// disagree on the partition count would put a source's batches where nobody looks.
pub(crate) async fn ensure_meta(
    connection: &ConnectionManager,
    stream: &str,
    field: &str,
    value: &str,
    limit: Duration,
) -> Result<(), RedisQueueError> {
    let mut connection = connection.clone();
    let mut pipe = redis::pipe();
    pipe.cmd("HSETNX")
        .arg(meta_key(stream))
        .arg(field)
        .arg(value)
        .ignore()
        .cmd("HGET")
        .arg(meta_key(stream))
        .arg(field);
    let (recorded,): (String,) =
        surefoot_core_lifecycle::timeout("HSETNX meta", limit, pipe.query_async(&mut connection))
            .await?
            .map_err(|source| RedisQueueError::Redis {
                operation: "HSETNX meta",
                stream: stream.to_owned(),
                source,
            })?;
    if recorded == value {
        Ok(())
    } else {
        Err(RedisQueueError::Config {
            problems: vec![format!(
                "redis_queue.{field}: `{value}` differs from `{recorded}`, recorded for stream `{stream}` in `{}`",
                meta_key(stream)
            )],
        })
    }
}

#[cfg(test)]
mod tests {
    use surefoot_core_model::SourceId;

    use super::partition_of;

    /// The partition function is part of the data format: these values must never change.
    #[test]
    fn partition_of_is_stable() {
        assert_eq!(partition_of(&SourceId::new(""), 16), 5);
        assert_eq!(partition_of(&SourceId::new("orders"), 1), 0);
        let spread: std::collections::BTreeSet<u32> = (0..64)
            .map(|i| partition_of(&SourceId::new(format!("s{i}")), 8))
            .collect();
        assert_eq!(spread.len(), 8);
    }
}
