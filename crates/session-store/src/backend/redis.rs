//! The Redis backend: sessions as hashes with a version field, compare-and-set by Lua script;
//! presence as sorted sets scored by expiry; history as one stream per room whose entry ids are
//! the offsets, with the room's epoch and top offset in a hash beside it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use super::redis_scripts::Scripts;

use crate::StoreError;
use crate::config::StoreConfig;
use crate::model::{
    HistoryPage, Message, PresenceMember, RoomId, Session, SessionId, StreamPosition, new_epoch,
};
use crate::pool::{PoolGate, PoolStats};
use crate::record::SessionRecord;
use crate::store::SessionStore;

/// A [`SessionStore`] on Redis.
///
/// `pool.size` multiplexed connections (each reconnects by itself) are used round-robin and at
/// most `pool.size` operations run at once. Every operation is one command or one Lua script,
/// so it is atomic and bounded by the operation timeout.
#[derive(Debug)]
pub struct RedisStore {
    gate: PoolGate,
    /// Emptied by `close`, which drops (and so closes) the connections.
    connections: RwLock<Vec<ConnectionManager>>,
    next: AtomicUsize,
    prefix: String,
    max_len: usize,
    scripts: Scripts,
}

impl RedisStore {
    /// Connects `config.pool.size` connections to `url` and checks the eviction policy: any
    /// policy but `noeviction` lets Redis evict history under memory pressure, which resumes
    /// would then report as `recovered = false`; that is logged as a warning at start.
    pub async fn connect(url: &str, config: StoreConfig) -> Result<Self, StoreError> {
        config.validate()?;
        let client = redis::Client::open(url).map_err(StoreError::redis("open client"))?;
        let limit = config.pool.operation_timeout;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(limit))
            .set_response_timeout(Some(limit))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let mut connections = Vec::with_capacity(config.pool.size);
        for _ in 0..config.pool.size {
            let connect = client.get_connection_manager_with_config(manager_config.clone());
            let connection = surefoot_core_lifecycle::timeout("redis connect", limit, connect)
                .await?
                .map_err(StoreError::redis("connect"))?;
            connections.push(connection);
        }
        let store = Self {
            gate: PoolGate::new("redis", config.pool),
            connections: RwLock::new(connections),
            next: AtomicUsize::new(0),
            prefix: config.key_prefix,
            max_len: config.history_max_len,
            scripts: Scripts::new(),
        };
        store.warn_on_eviction().await;
        Ok(store)
    }

    /// Redis' `maxmemory-policy`, or `None` if `CONFIG GET` is not allowed.
    pub async fn eviction_policy(&self) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn()?;
        self.gate
            .run("config get", async move {
                let reply: Vec<String> = redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("maxmemory-policy")
                    .query_async(&mut conn)
                    .await
                    .map_err(StoreError::redis("config get"))?;
                Ok(reply.get(1).cloned())
            })
            .await
    }

    async fn warn_on_eviction(&self) {
        match self.eviction_policy().await {
            Ok(Some(policy)) if policy == "noeviction" => {}
            Ok(Some(policy)) => tracing::warn!(
                %policy,
                "redis maxmemory-policy is not noeviction: under memory pressure Redis may evict \
                 sessions and room history; resumes will then report recovered = false"
            ),
            Ok(None) => {
                tracing::warn!("redis did not report maxmemory-policy; cannot check eviction")
            }
            Err(error) => {
                tracing::warn!(error = %error, "could not read redis maxmemory-policy; cannot check eviction")
            }
        }
    }

    fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let connections = self.read_connections();
        if connections.is_empty() {
            return Err(StoreError::Closed("redis".to_owned()));
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % connections.len();
        Ok(connections[i].clone())
    }

    fn read_connections(&self) -> std::sync::RwLockReadGuard<'_, Vec<ConnectionManager>> {
        // The vector is only ever replaced whole; a panicking holder cannot leave it torn.
        self.connections
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn key(&self, kind: &str, name: impl std::fmt::Display) -> String {
        format!("{}:{kind}:{name}", self.prefix)
    }

    async fn script<T: redis::FromRedisValue + Send>(
        &self,
        operation: &'static str,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        self.gate
            .run(operation, async move {
                invocation
                    .invoke_async(&mut conn)
                    .await
                    .map_err(StoreError::redis(operation))
            })
            .await
    }

    async fn command<T: redis::FromRedisValue + Send>(
        &self,
        operation: &'static str,
        cmd: redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        self.gate
            .run(operation, async move {
                cmd.query_async(&mut conn)
                    .await
                    .map_err(StoreError::redis(operation))
            })
            .await
    }
}

fn millis(at: DateTime<Utc>) -> String {
    at.timestamp_millis().to_string()
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[async_trait]
impl SessionStore for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn insert(&self, session: &Session) -> Result<(), StoreError> {
        let data = SessionRecord::encode(session)?;
        let keys = [self.key("s", session.id)];
        let args = [
            session.version.to_string(),
            data,
            millis(session.expires_at),
        ];
        let inserted: i64 = self
            .script("insert session", &self.scripts.insert, &keys, &args)
            .await?;
        if inserted == 1 {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists(session.id))
        }
    }

    async fn load(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.key("s", id)).arg("v").arg("d").arg("e");
        let (version, data, expires): (Option<u64>, Option<String>, Option<i64>) =
            self.command("load session", cmd).await?;
        let (Some(version), Some(data), Some(expires)) = (version, data, expires) else {
            return Ok(None);
        };
        let expires_at = from_millis(expires);
        if expires_at <= Utc::now() {
            return Ok(None);
        }
        SessionRecord::decode(id, &data, version, expires_at).map(Some)
    }

    async fn save(&self, session: &Session) -> Result<Session, StoreError> {
        let data = SessionRecord::encode(session)?;
        let keys = [self.key("s", session.id)];
        let args = [
            session.version.to_string(),
            data,
            millis(session.expires_at),
        ];
        let (status, version, expires): (i64, u64, i64) = self
            .script("save session", &self.scripts.save, &keys, &args)
            .await?;
        match status {
            0 => Ok(Session {
                version,
                expires_at: from_millis(expires),
                ..session.clone()
            }),
            1 => Err(StoreError::NotFound(session.id)),
            _ => Err(StoreError::Conflict {
                id: session.id,
                expected: session.version,
                actual: version,
            }),
        }
    }

    async fn touch(&self, id: SessionId, expires_at: DateTime<Utc>) -> Result<bool, StoreError> {
        let keys = [self.key("s", id)];
        let touched: i64 = self
            .script(
                "touch session",
                &self.scripts.touch,
                &keys,
                &[millis(expires_at)],
            )
            .await?;
        Ok(touched == 1)
    }

    async fn delete(&self, id: SessionId) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key("s", id));
        let deleted: i64 = self.command("delete session", cmd).await?;
        Ok(deleted == 1)
    }

    async fn heartbeat(&self, room: &RoomId, member: &PresenceMember) -> Result<(), StoreError> {
        let keys = [self.key("p", room), self.key("pu", room)];
        let args = [
            member.session.to_string(),
            member.user.clone(),
            millis(member.expires_at),
            millis(Utc::now()),
        ];
        let _one: i64 = self
            .script("heartbeat", &self.scripts.heartbeat, &keys, &args)
            .await?;
        Ok(())
    }

    async fn depart(&self, room: &RoomId, session: SessionId) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZREM")
            .arg(self.key("p", room))
            .arg(session.to_string())
            .ignore()
            .cmd("HDEL")
            .arg(self.key("pu", room))
            .arg(session.to_string())
            .ignore();
        let mut conn = self.conn()?;
        self.gate
            .run("depart", async move {
                pipe.query_async::<()>(&mut conn)
                    .await
                    .map_err(StoreError::redis("depart"))
            })
            .await
    }

    async fn presence(&self, room: &RoomId) -> Result<Vec<PresenceMember>, StoreError> {
        let keys = [self.key("p", room), self.key("pu", room)];
        let flat: Vec<String> = self
            .script(
                "presence",
                &self.scripts.presence,
                &keys,
                &[millis(Utc::now())],
            )
            .await?;
        flat.chunks_exact(3)
            .map(|chunk| {
                let session = chunk[0]
                    .parse()
                    .map_err(|e| StoreError::corrupt("presence", e))?;
                let score: f64 = chunk[1]
                    .parse()
                    .map_err(|e| StoreError::corrupt("presence", e))?;
                Ok(PresenceMember {
                    session,
                    user: chunk[2].clone(),
                    expires_at: from_millis(score as i64),
                })
            })
            .collect()
    }

    async fn publish(
        &self,
        room: &RoomId,
        body: &serde_json::Value,
    ) -> Result<Message, StoreError> {
        let keys = [self.key("m", room), self.key("h", room)];
        let args = [body.to_string(), new_epoch(), self.max_len.to_string()];
        let (offset, epoch): (u64, String) = self
            .script("publish", &self.scripts.publish, &keys, &args)
            .await?;
        Ok(Message {
            room: room.clone(),
            offset,
            epoch,
            body: body.clone(),
        })
    }

    async fn history(
        &self,
        room: &RoomId,
        offset: u64,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        let keys = [self.key("m", room), self.key("h", room)];
        let args = [
            format!("{}-0", offset.saturating_add(1)),
            limit.to_string(),
            new_epoch(),
        ];
        let reply: Value = self
            .script("history", &self.scripts.history, &keys, &args)
            .await?;
        decode_history(room, reply)
    }

    async fn delete_history(&self, room: &RoomId) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key("m", room)).arg(self.key("h", room));
        let _deleted: i64 = self.command("delete history", cmd).await?;
        Ok(())
    }

    async fn sweep(&self) -> Result<u64, StoreError> {
        // Redis expires sessions and presence keys itself (PEXPIREAT); members are pruned on
        // every heartbeat and presence read.
        Ok(0)
    }

    fn pool_stats(&self) -> PoolStats {
        self.gate.stats(Some((
            self.read_connections().len(),
            self.gate.stats(None).idle,
        )))
    }

    async fn close(&self) {
        // The gate refuses new work; dropping the managers closes their connections once the
        // operations already admitted (which hold clones) finish.
        self.gate.close();
        let connections = std::mem::take(
            &mut *self
                .connections
                .write()
                .unwrap_or_else(PoisonError::into_inner),
        );
        drop(connections);
    }
}

fn decode_history(room: &RoomId, reply: Value) -> Result<HistoryPage, StoreError> {
    type Entry = (String, Vec<String>);
    let (top, epoch, earliest, entries): (u64, String, u64, Vec<Entry>) =
        redis::FromRedisValue::from_redis_value(reply)
            .map_err(|e| StoreError::corrupt("history", e))?;
    let messages = entries
        .into_iter()
        .map(|(id, fields)| {
            let offset = id
                .split('-')
                .next()
                .and_then(|o| o.parse().ok())
                .ok_or_else(|| StoreError::corrupt("history entry id", &id))?;
            let body = fields
                .get(1)
                .ok_or_else(|| StoreError::corrupt("history entry", &id))
                .and_then(|b| {
                    serde_json::from_str(b).map_err(|e| StoreError::corrupt("history body", e))
                })?;
            Ok(Message {
                room: room.clone(),
                offset,
                epoch: epoch.clone(),
                body,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(HistoryPage {
        messages,
        top: StreamPosition { offset: top, epoch },
        earliest,
    })
}
