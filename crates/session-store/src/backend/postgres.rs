//! The PostgreSQL backend through sqlx: embedded migrations, compare-and-set by
//! `UPDATE … WHERE version = $expected`, history in a table keyed by (room, offset) with a
//! per-room row holding the epoch and top offset, sweeps with `FOR UPDATE SKIP LOCKED`.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::postgres_sql as sql;
use crate::StoreError;
use crate::config::StoreConfig;
use crate::model::{
    HistoryPage, Message, PresenceMember, RoomId, Session, SessionId, StreamPosition, new_epoch,
};
use crate::pool::{PoolGate, PoolStats};
use crate::record::SessionRecord;
use crate::store::SessionStore;

/// Rows each sweep statement removes at most.
const SWEEP_BATCH: i64 = 1000;

/// A [`SessionStore`] on PostgreSQL.
#[derive(Debug)]
pub struct PgStore {
    gate: PoolGate,
    pool: PgPool,
    max_len: i64,
}

impl PgStore {
    /// Connects a pool of `config.pool.size` connections to `url` (applying its acquire and
    /// idle settings) and runs the embedded migrations.
    pub async fn connect(url: &str, config: StoreConfig) -> Result<Self, StoreError> {
        config.validate()?;
        let options = PgConnectOptions::from_str(url)
            .map_err(StoreError::pg("parse url"))?
            .application_name("surefoot-session-store");
        let pool_config = &config.pool;
        let pool = PgPoolOptions::new()
            .max_connections(u32::try_from(pool_config.size).unwrap_or(u32::MAX))
            .min_connections(u32::try_from(pool_config.min_idle).unwrap_or(u32::MAX))
            .acquire_timeout(pool_config.acquire_timeout)
            .idle_timeout(pool_config.idle_timeout)
            .connect_with(options);
        let limit = pool_config.operation_timeout;
        let pool = surefoot_core_lifecycle::timeout("postgres connect", limit, pool)
            .await?
            .map_err(StoreError::pg("connect"))?;
        let migrate = sqlx::migrate!("./migrations").run(&pool);
        surefoot_core_lifecycle::timeout("postgres migrate", limit * 4, migrate)
            .await?
            .map_err(StoreError::Migrate)?;
        Ok(Self {
            gate: PoolGate::new("postgres", config.pool),
            pool,
            max_len: i64::try_from(config.history_max_len).unwrap_or(i64::MAX),
        })
    }

    /// The sqlx pool (for health checks and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn page(
        &self,
        room: &RoomId,
        offset: u64,
        limit: usize,
    ) -> Result<Option<HistoryPage>, StoreError> {
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let row = sqlx::query(sql::HISTORY)
            .bind(room.as_str())
            .bind(offset)
            .bind(limit)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::pg("history"))?;
        row.map(|row| decode_page(room, &row)).transpose()
    }
}

fn decode_page(room: &RoomId, row: &sqlx::postgres::PgRow) -> Result<HistoryPage, StoreError> {
    #[derive(serde::Deserialize)]
    struct Entry {
        o: u64,
        b: serde_json::Value,
    }
    let get = |e: sqlx::Error| StoreError::corrupt("history row", e);
    let top: i64 = row.try_get("top_offset").map_err(get)?;
    let epoch: String = row.try_get("epoch").map_err(get)?;
    let earliest: i64 = row.try_get("earliest").map_err(get)?;
    let messages: String = row.try_get("messages").map_err(get)?;
    let entries: Vec<Entry> =
        serde_json::from_str(&messages).map_err(|e| StoreError::corrupt("history", e))?;
    Ok(HistoryPage {
        messages: entries
            .into_iter()
            .map(|e| Message {
                room: room.clone(),
                offset: e.o,
                epoch: epoch.clone(),
                body: e.b,
            })
            .collect(),
        top: StreamPosition {
            offset: u64::try_from(top).unwrap_or(0),
            epoch,
        },
        earliest: u64::try_from(earliest).unwrap_or(0),
    })
}

fn version(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[async_trait]
impl SessionStore for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn insert(&self, session: &Session) -> Result<(), StoreError> {
        let record = SessionRecord::encode(session)?;
        self.gate
            .run("insert session", async {
                let row = sqlx::query(sql::INSERT)
                    .bind(session.id.as_uuid())
                    .bind(record)
                    .bind(version(session.version))
                    .bind(session.expires_at)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(StoreError::pg("insert session"))?;
                row.map(|_| ()).ok_or(StoreError::AlreadyExists(session.id))
            })
            .await
    }

    async fn load(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        self.gate
            .run("load session", async {
                let row = sqlx::query(sql::LOAD)
                    .bind(id.as_uuid())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(StoreError::pg("load session"))?;
                let Some(row) = row else { return Ok(None) };
                let get = |e: sqlx::Error| StoreError::corrupt("session row", e);
                let record: String = row.try_get("record").map_err(get)?;
                let version: i64 = row.try_get("version").map_err(get)?;
                let expires_at: DateTime<Utc> = row.try_get("expires_at").map_err(get)?;
                let version =
                    u64::try_from(version).map_err(|e| StoreError::corrupt("version", e))?;
                SessionRecord::decode(id, &record, version, expires_at).map(Some)
            })
            .await
    }

    async fn save(&self, session: &Session) -> Result<Session, StoreError> {
        let record = SessionRecord::encode(session)?;
        self.gate
            .run("save session", async {
                let saved = sqlx::query(sql::SAVE)
                    .bind(session.id.as_uuid())
                    .bind(record)
                    .bind(version(session.version))
                    .bind(session.expires_at)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(StoreError::pg("save session"))?;
                if let Some(row) = saved {
                    let v: i64 = row
                        .try_get(0)
                        .map_err(|e| StoreError::corrupt("version", e))?;
                    let expires_at = row
                        .try_get(1)
                        .map_err(|e| StoreError::corrupt("expiry", e))?;
                    return Ok(Session {
                        version: u64::try_from(v).unwrap_or(0),
                        expires_at,
                        ..session.clone()
                    });
                }
                let stored = sqlx::query(sql::VERSION)
                    .bind(session.id.as_uuid())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(StoreError::pg("read session version"))?;
                match stored {
                    None => Err(StoreError::NotFound(session.id)),
                    Some(row) => {
                        let v: i64 = row
                            .try_get(0)
                            .map_err(|e| StoreError::corrupt("version", e))?;
                        Err(StoreError::Conflict {
                            id: session.id,
                            expected: session.version,
                            actual: u64::try_from(v).unwrap_or(0),
                        })
                    }
                }
            })
            .await
    }

    async fn touch(&self, id: SessionId, expires_at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.gate
            .run("touch session", async {
                let done = sqlx::query(sql::TOUCH)
                    .bind(id.as_uuid())
                    .bind(expires_at)
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::pg("touch session"))?;
                Ok(done.rows_affected() == 1)
            })
            .await
    }

    async fn delete(&self, id: SessionId) -> Result<bool, StoreError> {
        self.gate
            .run("delete session", async {
                let row = sqlx::query(sql::DELETE)
                    .bind(id.as_uuid())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(StoreError::pg("delete session"))?;
                match row {
                    None => Ok(false),
                    Some(row) => row
                        .try_get::<bool, _>(0)
                        .map_err(|e| StoreError::corrupt("delete", e)),
                }
            })
            .await
    }

    async fn heartbeat(&self, room: &RoomId, member: &PresenceMember) -> Result<(), StoreError> {
        self.gate
            .run("heartbeat", async {
                sqlx::query(sql::HEARTBEAT)
                    .bind(room.as_str())
                    .bind(member.session.as_uuid())
                    .bind(&member.user)
                    .bind(member.expires_at)
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::pg("heartbeat"))?;
                Ok(())
            })
            .await
    }

    async fn depart(&self, room: &RoomId, session: SessionId) -> Result<(), StoreError> {
        self.gate
            .run("depart", async {
                sqlx::query(sql::DEPART)
                    .bind(room.as_str())
                    .bind(session.as_uuid())
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::pg("depart"))?;
                Ok(())
            })
            .await
    }

    async fn presence(&self, room: &RoomId) -> Result<Vec<PresenceMember>, StoreError> {
        self.gate
            .run("presence", async {
                let rows = sqlx::query(sql::PRESENCE)
                    .bind(room.as_str())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(StoreError::pg("presence"))?;
                rows.iter()
                    .map(|row| {
                        let get = |e: sqlx::Error| StoreError::corrupt("presence row", e);
                        Ok(PresenceMember {
                            session: SessionId::from(row.try_get::<uuid::Uuid, _>(0).map_err(get)?),
                            user: row.try_get(1).map_err(get)?,
                            expires_at: row.try_get(2).map_err(get)?,
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn publish(
        &self,
        room: &RoomId,
        body: &serde_json::Value,
    ) -> Result<Message, StoreError> {
        self.gate
            .run("publish", async {
                let mut tx = self.pool.begin().await.map_err(StoreError::pg("begin"))?;
                let row = sqlx::query(sql::PUBLISH)
                    .bind(room.as_str())
                    .bind(new_epoch())
                    .bind(body)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(StoreError::pg("publish"))?;
                let get = |e: sqlx::Error| StoreError::corrupt("publish row", e);
                let offset: i64 = row.try_get(0).map_err(get)?;
                sqlx::query(sql::TRIM)
                    .bind(room.as_str())
                    .bind(offset)
                    .bind(self.max_len)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::pg("trim history"))?;
                tx.commit().await.map_err(StoreError::pg("commit"))?;
                Ok(Message {
                    room: room.clone(),
                    offset: u64::try_from(offset).unwrap_or(0),
                    epoch: row.try_get(1).map_err(get)?,
                    body: body.clone(),
                })
            })
            .await
    }

    async fn history(
        &self,
        room: &RoomId,
        offset: u64,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        self.gate
            .run("history", async {
                if let Some(page) = self.page(room, offset, limit).await? {
                    return Ok(page);
                }
                sqlx::query(sql::ENSURE_ROOM)
                    .bind(room.as_str())
                    .bind(new_epoch())
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::pg("create room"))?;
                self.page(room, offset, limit)
                    .await?
                    .ok_or_else(|| StoreError::corrupt("room", "row missing right after insert"))
            })
            .await
    }

    async fn delete_history(&self, room: &RoomId) -> Result<(), StoreError> {
        self.gate
            .run("delete history", async {
                let fail = StoreError::pg;
                let mut tx = self.pool.begin().await.map_err(fail("begin"))?;
                sqlx::query(sql::LOCK_ROOM)
                    .bind(room.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(fail("lock room"))?;
                sqlx::query(sql::DELETE_HISTORY)
                    .bind(room.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(fail("delete history"))?;
                sqlx::query(sql::NEW_EPOCH)
                    .bind(room.as_str())
                    .bind(new_epoch())
                    .execute(&mut *tx)
                    .await
                    .map_err(fail("new epoch"))?;
                tx.commit().await.map_err(fail("commit"))
            })
            .await
    }

    async fn sweep(&self) -> Result<u64, StoreError> {
        self.gate
            .run("sweep", async {
                let mut removed = 0;
                for (what, statement) in [
                    ("sweep sessions", sql::SWEEP_SESSIONS),
                    ("sweep presence", sql::SWEEP_PRESENCE),
                ] {
                    let done = sqlx::query(statement)
                        .bind(SWEEP_BATCH)
                        .execute(&self.pool)
                        .await
                        .map_err(StoreError::pg(what))?;
                    removed += done.rows_affected();
                }
                Ok(removed)
            })
            .await
    }

    fn pool_stats(&self) -> PoolStats {
        let open = usize::try_from(self.pool.size()).unwrap_or(usize::MAX);
        self.gate.stats(Some((open, self.pool.num_idle())))
    }

    async fn close(&self) {
        self.gate.close();
        self.pool.close().await;
    }
}
