//! The [`SessionStore`] trait: what every backend provides, and the operations built on it.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreError;
use crate::model::{
    HistoryPage, Message, NewSession, PresenceMember, Resume, RoomId, Session, SessionId,
    StreamPosition,
};
use crate::pool::PoolStats;

/// How many ids [`SessionStore::create`] tries before giving up (a collision of 122 random bits
/// is practically impossible; a second one means the random source is broken).
const CREATE_ATTEMPTS: usize = 3;
/// How many times [`SessionStore::join`] and [`SessionStore::leave`] reload after a conflict.
const CAS_ATTEMPTS: usize = 16;

/// Sessions, presence and per-room history, shared by every node of a realtime server.
///
/// Every backend passes the same conformance suite (`tests/conformance`). Every method is
/// cancel-safe in the sense that dropping its future leaves the store consistent: each write is
/// one atomic step (a Lua script, a transaction, a critical section).
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug + 'static {
    /// The backend's name (`memory`, `redis`, `postgres`).
    fn backend(&self) -> &'static str;

    /// Stores `session` unless its id is taken ([`StoreError::AlreadyExists`]).
    async fn insert(&self, session: &Session) -> Result<(), StoreError>;

    /// The session, or `None` if it does not exist or has expired.
    async fn load(&self, id: SessionId) -> Result<Option<Session>, StoreError>;

    /// Stores `session` if the stored version is still `session.version` and returns it with
    /// the next version; otherwise [`StoreError::Conflict`] (or [`StoreError::NotFound`]).
    /// Two requests that loaded the same version can never both succeed. The expiry kept is the
    /// later of the stored and the given one, so saving a copy loaded before a
    /// [`touch`](SessionStore::touch) does not undo it; use `touch` to shorten an expiry.
    async fn save(&self, session: &Session) -> Result<Session, StoreError>;

    /// Moves the session's expiry to `expires_at` without touching its data or version.
    /// Returns whether the session existed.
    async fn touch(&self, id: SessionId, expires_at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Deletes the session; returns whether it existed.
    async fn delete(&self, id: SessionId) -> Result<bool, StoreError>;

    /// Marks `member` present in `room` until its `expires_at`.
    async fn heartbeat(&self, room: &RoomId, member: &PresenceMember) -> Result<(), StoreError>;

    /// Removes `session` from `room`'s presence.
    async fn depart(&self, room: &RoomId, session: SessionId) -> Result<(), StoreError>;

    /// Members of `room` whose heartbeat has not expired.
    async fn presence(&self, room: &RoomId) -> Result<Vec<PresenceMember>, StoreError>;

    /// Appends `body` to `room`'s history and returns the stored message (offset and epoch).
    async fn publish(&self, room: &RoomId, body: &serde_json::Value)
    -> Result<Message, StoreError>;

    /// Up to `limit` messages of `room` after `offset`, with the room's position and earliest
    /// kept offset, read atomically.
    async fn history(
        &self,
        room: &RoomId,
        offset: u64,
        limit: usize,
    ) -> Result<HistoryPage, StoreError>;

    /// Deletes `room`'s history; the room gets a new epoch and starts again at offset 1.
    async fn delete_history(&self, room: &RoomId) -> Result<(), StoreError>;

    /// Removes expired sessions and presence entries that the backend does not expire by
    /// itself; returns how many.
    async fn sweep(&self) -> Result<u64, StoreError>;

    /// The pool's numbers.
    fn pool_stats(&self) -> PoolStats;

    /// Refuses new operations and closes the backend's connections.
    async fn close(&self);

    /// Creates a session with a fresh random id, retrying on the (practically impossible)
    /// collision.
    async fn create(&self, new: NewSession) -> Result<Session, StoreError> {
        let mut last = None;
        for _ in 0..CREATE_ATTEMPTS {
            let session = new.clone().into_session(SessionId::random());
            match self.insert(&session).await {
                Ok(()) => return Ok(session),
                Err(StoreError::AlreadyExists(id)) => {
                    tracing::warn!(%id, "session id collision; drawing another");
                    last = Some(StoreError::AlreadyExists(id));
                }
                Err(error) => return Err(error),
            }
        }
        Err(last.unwrap_or(StoreError::AlreadyExists(SessionId::random())))
    }

    /// Adds `room` to the session's rooms (compare-and-set, reloading on conflict) and returns
    /// the saved session.
    async fn join(&self, id: SessionId, room: &RoomId) -> Result<Session, StoreError> {
        self.update_rooms(id, room, true).await
    }

    /// Removes `room` from the session's rooms and its presence.
    async fn leave(&self, id: SessionId, room: &RoomId) -> Result<Session, StoreError> {
        let session = self.update_rooms(id, room, false).await?;
        self.depart(room, id).await?;
        Ok(session)
    }

    /// Shared by join and leave: load, change, save, and on a conflict start over.
    async fn update_rooms(
        &self,
        id: SessionId,
        room: &RoomId,
        add: bool,
    ) -> Result<Session, StoreError> {
        let mut last = None;
        for _ in 0..CAS_ATTEMPTS {
            let mut session = self.load(id).await?.ok_or(StoreError::NotFound(id))?;
            let changed = if add {
                session.rooms.insert(room.clone())
            } else {
                session.rooms.remove(room)
            };
            if !changed {
                return Ok(session);
            }
            match self.save(&session).await {
                Ok(saved) => return Ok(saved),
                Err(conflict @ StoreError::Conflict { .. }) => last = Some(conflict),
                Err(error) => return Err(error),
            }
        }
        Err(last.unwrap_or(StoreError::NotFound(id)))
    }

    /// The room's current position.
    async fn position(&self, room: &RoomId) -> Result<StreamPosition, StoreError> {
        Ok(self.history(room, u64::MAX, 0).await?.top)
    }

    /// What a client that saw `room` up to (`offset`, `epoch`) missed, at most `limit`
    /// messages. The session must exist and have joined the room.
    ///
    /// `recovered` is true only if the epoch is the room's current one, nothing after `offset`
    /// was trimmed, and every missed message fits in `limit`. Otherwise the client gets the
    /// oldest kept messages of the current epoch and must treat its view as incomplete.
    async fn resume(
        &self,
        session: SessionId,
        room: &RoomId,
        offset: u64,
        epoch: &str,
        limit: usize,
    ) -> Result<Resume, StoreError> {
        let current = self
            .load(session)
            .await?
            .ok_or(StoreError::NotFound(session))?;
        if !current.rooms.contains(room) {
            return Err(StoreError::NotFound(session));
        }
        let page = self.history(room, offset, limit).await?;
        if page.top.epoch == epoch && offset <= page.top.offset {
            let complete = page.messages.len() as u64 == page.top.offset - offset;
            let recovered = page.earliest <= offset.saturating_add(1) && complete;
            return Ok(Resume {
                messages: page.messages,
                recovered,
                top: page.top,
            });
        }
        // Another epoch (history lost or deleted) or an offset from the future: the client's
        // position means nothing here, so it gets the current history from its start.
        let page = self.history(room, 0, limit).await?;
        Ok(Resume {
            messages: page.messages,
            recovered: false,
            top: page.top,
        })
    }
}

/// A session's expiry `ttl` from now.
pub fn expiry_in(ttl: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}
