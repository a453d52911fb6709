//! Partition leases with fencing tokens, and the registry of live consumers. Each operation is
//! one Lua script (atomic on the server) under a timeout.
//!
//! A lease is the key `<stream>:lease:<p>` holding `<consumer>#<token>` with a TTL, where the
//! token comes from `INCR <stream>:fence:<p>`: every acquisition gets a larger token, so a
//! consumer whose lease expired and was taken over can no longer renew it, release it or
//! delete an entry of the partition (the fenced `XDEL` compares the whole value).

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::error::RedisQueueError;
use super::partition::{consumers_key, fence_key, lease_key, released_key, takeovers_key};

static ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 1 then return {0, 0} end
        local token = redis.call('INCR', KEYS[2])
        redis.call('SET', KEYS[1], ARGV[1] .. '#' .. token, 'PX', ARGV[2])
        local clean = redis.call('DEL', KEYS[3])
        local taken_over = 0
        if token > 1 and clean == 0 then
            taken_over = 1
            redis.call('INCR', KEYS[4])
        end
        return {token, taken_over}
        ",
    )
});

static RENEW: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        if redis.call('GET', KEYS[1]) == ARGV[1] then
            return redis.call('PEXPIRE', KEYS[1], ARGV[2])
        end
        return 0
        ",
    )
});

static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        if redis.call('GET', KEYS[1]) == ARGV[1] then
            redis.call('DEL', KEYS[1])
            redis.call('SET', KEYS[2], 1)
            return 1
        end
        return 0
        ",
    )
});

static FENCED_XDEL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        if redis.call('GET', KEYS[1]) == ARGV[1] then
            redis.call('XDEL', KEYS[2], ARGV[2])
            return 1
        end
        return 0
        ",
    )
});

static HEARTBEAT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local time = redis.call('TIME')
        local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
        redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
        return redis.call('ZCARD', KEYS[1])
        ",
    )
});

/// One queue's leases, as seen by one consumer.
#[derive(Clone)]
pub(crate) struct Leases {
    pub(crate) connection: ConnectionManager,
    pub(crate) stream: String,
    pub(crate) consumer: String,
    pub(crate) ttl: Duration,
    pub(crate) op_timeout: Duration,
}

/// A lease held: the partition and the value that proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) partition: u32,
    /// `<consumer>#<token>`.
    pub(crate) value: String,
    /// The fencing token.
    pub(crate) token: u64,
    /// The previous lease expired instead of being released (its owner died or stalled).
    pub(crate) taken_over: bool,
}

impl Leases {
    fn ttl_millis(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisQueueError> {
        let mut connection = self.connection.clone();
        surefoot_core_lifecycle::timeout(
            operation,
            self.op_timeout,
            invocation.invoke_async(&mut connection),
        )
        .await?
        .map_err(|source| RedisQueueError::Redis {
            operation,
            stream: self.stream.clone(),
            source,
        })
    }

    /// Takes `partition`'s lease if nobody holds it.
    pub(crate) async fn acquire(&self, partition: u32) -> Result<Option<Lease>, RedisQueueError> {
        let mut invocation = ACQUIRE.prepare_invoke();
        invocation
            .key(lease_key(&self.stream, partition))
            .key(fence_key(&self.stream, partition))
            .key(released_key(&self.stream, partition))
            .key(takeovers_key(&self.stream))
            .arg(&self.consumer)
            .arg(self.ttl_millis());
        let (token, taken_over): (u64, u8) = self.invoke("lease acquire", &invocation).await?;
        Ok((token > 0).then(|| Lease {
            partition,
            value: format!("{}#{token}", self.consumer),
            token,
            taken_over: taken_over == 1,
        }))
    }

    /// Extends `lease`; false if it is no longer ours (it expired and someone took it).
    pub(crate) async fn renew(&self, lease: &Lease) -> Result<bool, RedisQueueError> {
        let mut invocation = RENEW.prepare_invoke();
        invocation
            .key(lease_key(&self.stream, lease.partition))
            .arg(&lease.value)
            .arg(self.ttl_millis());
        let renewed: u8 = self.invoke("lease renew", &invocation).await?;
        Ok(renewed == 1)
    }

    /// Gives `lease` up, marking the partition cleanly released.
    pub(crate) async fn release(&self, lease: &Lease) -> Result<bool, RedisQueueError> {
        let mut invocation = RELEASE.prepare_invoke();
        invocation
            .key(lease_key(&self.stream, lease.partition))
            .key(released_key(&self.stream, lease.partition))
            .arg(&lease.value);
        let released: u8 = self.invoke("lease release", &invocation).await?;
        Ok(released == 1)
    }

    /// Deletes entry `id` of `partition_stream` if `lease` is still ours; false otherwise.
    pub(crate) async fn fenced_delete(
        &self,
        lease: &Lease,
        partition_stream: &str,
        id: &str,
    ) -> Result<bool, RedisQueueError> {
        let mut invocation = FENCED_XDEL.prepare_invoke();
        invocation
            .key(lease_key(&self.stream, lease.partition))
            .key(partition_stream)
            .arg(&lease.value)
            .arg(id);
        let deleted: u8 = self.invoke("fenced XDEL", &invocation).await?;
        Ok(deleted == 1)
    }

    /// Records this consumer as live for one lease period; returns how many are live.
    pub(crate) async fn heartbeat(&self) -> Result<u32, RedisQueueError> {
        let mut invocation = HEARTBEAT.prepare_invoke();
        invocation
            .key(consumers_key(&self.stream))
            .arg(&self.consumer)
            .arg(self.ttl_millis());
        self.invoke("consumer heartbeat", &invocation).await
    }

    /// Removes this consumer from the live set (on a clean stop).
    pub(crate) async fn leave(&self) -> Result<(), RedisQueueError> {
        let mut connection = self.connection.clone();
        surefoot_core_lifecycle::timeout(
            "ZREM consumer",
            self.op_timeout,
            redis::cmd("ZREM")
                .arg(consumers_key(&self.stream))
                .arg(&self.consumer)
                .query_async::<()>(&mut connection),
        )
        .await?
        .map_err(|source| RedisQueueError::Redis {
            operation: "ZREM consumer",
            stream: self.stream.clone(),
            source,
        })
    }
}
