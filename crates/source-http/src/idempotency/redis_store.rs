//! Keys kept in Redis, shared by every instance serving one source.
//!
//! A key is one Redis string `<prefix><source>:<key>`:
//!
//! - `P:<fingerprint>:<owner>` while pending, set with `SET NX PX pending_ttl`, so of any number
//!   of concurrent claims on any number of instances exactly one wins;
//! - `D:<fingerprint>:<status>:<body>` once answered, with `PX ttl`.
//!
//! Completing and releasing are compare-and-set scripts: they act only while the value is still
//! this owner's pending claim, so a claim that expired and was taken by another request is never
//! overwritten or deleted. Every command runs under the configured timeout.

use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use surefoot_core_lifecycle::timeout;
use tokio::sync::mpsc;

use super::{Begin, ClaimId, StoredAnswer};
use crate::error::HttpSourceError;

const COMPLETE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return 0";
const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// The Redis store. Holds one multiplexed connection, opened on first use and again after an
/// error.
pub(crate) struct RedisStore {
    client: redis::Client,
    namespace: String,
    ttl: Duration,
    pending_ttl: Duration,
    timeout: Duration,
    connection: Mutex<Option<MultiplexedConnection>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    pub(crate) fn new(
        url: &str,
        namespace: String,
        ttl: Duration,
        pending_ttl: Duration,
        timeout: Duration,
    ) -> Result<Self, HttpSourceError> {
        let client = redis::Client::open(url).map_err(|source| HttpSourceError::Redis {
            operation: "parse url",
            source,
        })?;
        Ok(Self {
            client,
            namespace,
            ttl,
            pending_ttl,
            timeout,
            connection: Mutex::new(None),
        })
    }

    async fn connection(&self) -> Result<MultiplexedConnection, HttpSourceError> {
        let cached = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(connection) = cached {
            return Ok(connection);
        }
        let opened = timeout(
            "connect to redis",
            self.timeout,
            self.client.get_multiplexed_async_connection(),
        )
        .await?
        .map_err(|source| HttpSourceError::Redis {
            operation: "connect",
            source,
        })?;
        *self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(opened.clone());
        Ok(opened)
    }

    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        command: &redis::Cmd,
    ) -> Result<T, HttpSourceError> {
        let mut connection = self.connection().await?;
        let result = timeout(
            operation,
            self.timeout,
            command.query_async(&mut connection),
        )
        .await;
        let failed = !matches!(result, Ok(Ok(_)));
        if failed {
            // The connection may be broken; the next command opens a new one.
            *self
                .connection
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
        result?.map_err(|source| HttpSourceError::Redis { operation, source })
    }

    /// `name` in this store's namespace (the configured prefix).
    pub(crate) fn namespaced(&self, name: &str) -> String {
        format!("{}{name}", self.namespace)
    }

    fn redis_key(&self, key: &str) -> String {
        format!("{}{}", self.namespace, key)
    }

    /// Claims `key` or reads its record. If this future is dropped while a claim may have been
    /// written (or a claim attempt fails with an unknown outcome), the claim is queued on
    /// `releases`: the release only deletes this owner's own pending value, so it is harmless
    /// when the claim never landed.
    pub(crate) async fn begin(
        &self,
        key: &str,
        fingerprint: [u8; 32],
        releases: &mpsc::Sender<ClaimId>,
    ) -> Result<Begin, HttpSourceError> {
        let redis_key = self.redis_key(key);
        let fingerprint_hex = hex(&fingerprint);
        // An answer that expires between the failed SET and the GET is claimed on the next turn.
        for _ in 0..3 {
            let owner: u64 = rand::random();
            let pending = format!("P:{fingerprint_hex}:{owner}");
            let mut set = redis::cmd("SET");
            set.arg(&redis_key).arg(&pending).arg("NX").arg("PX");
            set.arg(millis(self.pending_ttl));
            let id = ClaimId {
                key: key.to_owned(),
                fingerprint,
                owner,
            };
            let guard = ReleaseOnDrop {
                id,
                armed: true,
                releases,
            };
            let claimed: Option<String> = self.query("claim key", &set).await?;
            let id = guard.disarm();
            if claimed.is_some() {
                return Ok(Begin::New(id));
            }
            let mut get = redis::cmd("GET");
            get.arg(&redis_key);
            let found: Option<String> = self.query("read key", &get).await?;
            if let Some(found) = found {
                return Ok(interpret(&found, &fingerprint_hex));
            }
        }
        Ok(Begin::InProgress)
    }

    pub(crate) async fn complete(
        &self,
        claim: &ClaimId,
        answer: &StoredAnswer,
    ) -> Result<bool, HttpSourceError> {
        let fingerprint = hex(&claim.fingerprint);
        let done = format!("D:{fingerprint}:{}:{}", answer.status, answer.body);
        let mut eval = redis::cmd("EVAL");
        eval.arg(COMPLETE).arg(1).arg(self.redis_key(&claim.key));
        eval.arg(pending_value(claim))
            .arg(done)
            .arg(millis(self.ttl));
        let stored: i64 = self.query("store answer", &eval).await?;
        Ok(stored == 1)
    }

    pub(crate) async fn release(&self, claim: &ClaimId) -> Result<(), HttpSourceError> {
        let mut eval = redis::cmd("EVAL");
        eval.arg(RELEASE).arg(1).arg(self.redis_key(&claim.key));
        eval.arg(pending_value(claim));
        let _deleted: i64 = self.query("release key", &eval).await?;
        Ok(())
    }
}

/// Queues the release of a claim whose `SET` may have landed, unless disarmed.
struct ReleaseOnDrop<'a> {
    id: ClaimId,
    armed: bool,
    releases: &'a mpsc::Sender<ClaimId>,
}

impl ReleaseOnDrop<'_> {
    fn disarm(mut self) -> ClaimId {
        self.armed = false;
        self.id.clone()
    }
}

impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Err(error) = self.releases.try_send(self.id.clone())
        {
            tracing::warn!(%error, "idempotency claim left to expire");
        }
    }
}

fn pending_value(claim: &ClaimId) -> String {
    format!("P:{}:{}", hex(&claim.fingerprint), claim.owner)
}

fn interpret(found: &str, fingerprint_hex: &str) -> Begin {
    let mut parts = found.splitn(4, ':');
    let kind = parts.next();
    if parts.next() != Some(fingerprint_hex) {
        return Begin::Mismatch;
    }
    match kind {
        Some("D") => {
            let status = parts.next().and_then(|status| status.parse().ok());
            match (status, parts.next()) {
                (Some(status), Some(body)) => Begin::Replay(StoredAnswer {
                    status,
                    body: body.to_owned(),
                }),
                // Not written by this store: never ingest under a key we cannot read.
                _ => Begin::Mismatch,
            }
        }
        _ => Begin::InProgress,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(64), |mut text, byte| {
            // Writing to a String cannot fail.
            let _ignored = write!(text, "{byte:02x}");
            text
        })
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_are_read_back() {
        let fp = hex(&[7; 32]);
        let done = format!("D:{fp}:200:{{\"a\":\"b:c\"}}");
        assert!(
            matches!(interpret(&done, &fp), Begin::Replay(a) if a.status == 200 && a.body == "{\"a\":\"b:c\"}")
        );
        assert!(matches!(
            interpret(&format!("P:{fp}:9"), &fp),
            Begin::InProgress
        ));
        assert!(matches!(interpret(&done, &hex(&[8; 32])), Begin::Mismatch));
        assert!(matches!(
            interpret(&format!("D:{fp}:x"), &fp),
            Begin::Mismatch
        ));
    }
}
