//! The in-process backend: for tests and single-process servers. Forgets everything when the
//! process ends, which resumes report through a new epoch.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreError;
use crate::config::StoreConfig;
use crate::model::{
    HistoryPage, Message, PresenceMember, RoomId, Session, SessionId, StreamPosition, new_epoch,
};
use crate::pool::{PoolGate, PoolStats};
use crate::store::SessionStore;

/// Sessions, presence and history in this process's memory.
///
/// One mutex guards all state; it is never held across an `.await`.
#[derive(Debug)]
pub struct MemoryStore {
    gate: PoolGate,
    max_len: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<SessionId, Session>,
    presence: HashMap<RoomId, HashMap<SessionId, PresenceMember>>,
    rooms: HashMap<RoomId, RoomLog>,
}

#[derive(Debug)]
struct RoomLog {
    epoch: String,
    top: u64,
    messages: VecDeque<Message>,
}

impl RoomLog {
    fn new() -> Self {
        Self {
            epoch: new_epoch(),
            top: 0,
            messages: VecDeque::new(),
        }
    }
}

impl MemoryStore {
    /// A store with `config`'s pool gate (its size bounds concurrent operations) and history
    /// length.
    pub fn new(config: StoreConfig) -> Result<Self, StoreError> {
        config.validate()?;
        Ok(Self {
            gate: PoolGate::new("memory", config.pool),
            max_len: config.history_max_len,
            state: Mutex::new(State::default()),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // State stays consistent under a panic: every mutation below is a single insert/remove.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut state)
    }

    async fn run<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&mut State) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.gate.run(operation, async { self.with(f) }).await
    }
}

fn live(session: &Session, now: DateTime<Utc>) -> bool {
    session.expires_at > now
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn insert(&self, session: &Session) -> Result<(), StoreError> {
        self.run("insert session", |state| {
            let now = Utc::now();
            if state
                .sessions
                .get(&session.id)
                .is_some_and(|s| live(s, now))
            {
                return Err(StoreError::AlreadyExists(session.id));
            }
            state.sessions.insert(session.id, session.clone());
            Ok(())
        })
        .await
    }

    async fn load(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        self.run("load session", |state| {
            let now = Utc::now();
            Ok(state.sessions.get(&id).filter(|s| live(s, now)).cloned())
        })
        .await
    }

    async fn save(&self, session: &Session) -> Result<Session, StoreError> {
        self.run("save session", |state| {
            let now = Utc::now();
            let stored = state
                .sessions
                .get_mut(&session.id)
                .filter(|s| live(s, now))
                .ok_or(StoreError::NotFound(session.id))?;
            if stored.version != session.version {
                return Err(StoreError::Conflict {
                    id: session.id,
                    expected: session.version,
                    actual: stored.version,
                });
            }
            let mut saved = session.clone();
            saved.version += 1;
            // A save of an older copy never undoes a touch.
            saved.expires_at = saved.expires_at.max(stored.expires_at);
            *stored = saved.clone();
            Ok(saved)
        })
        .await
    }

    async fn touch(&self, id: SessionId, expires_at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.run("touch session", |state| {
            let now = Utc::now();
            match state.sessions.get_mut(&id).filter(|s| live(s, now)) {
                Some(session) => {
                    session.expires_at = expires_at;
                    Ok(true)
                }
                None => Ok(false),
            }
        })
        .await
    }

    async fn delete(&self, id: SessionId) -> Result<bool, StoreError> {
        self.run("delete session", |state| {
            let now = Utc::now();
            Ok(state.sessions.remove(&id).is_some_and(|s| live(&s, now)))
        })
        .await
    }

    async fn heartbeat(&self, room: &RoomId, member: &PresenceMember) -> Result<(), StoreError> {
        self.run("heartbeat", |state| {
            state
                .presence
                .entry(room.clone())
                .or_default()
                .insert(member.session, member.clone());
            Ok(())
        })
        .await
    }

    async fn depart(&self, room: &RoomId, session: SessionId) -> Result<(), StoreError> {
        self.run("depart", |state| {
            if let Some(members) = state.presence.get_mut(room) {
                members.remove(&session);
            }
            Ok(())
        })
        .await
    }

    async fn presence(&self, room: &RoomId) -> Result<Vec<PresenceMember>, StoreError> {
        self.run("presence", |state| {
            let now = Utc::now();
            let mut members: Vec<PresenceMember> = state
                .presence
                .get(room)
                .map(|m| m.values().filter(|m| m.expires_at > now).cloned().collect())
                .unwrap_or_default();
            members.sort_by_key(|m| m.session);
            Ok(members)
        })
        .await
    }

    async fn publish(
        &self,
        room: &RoomId,
        body: &serde_json::Value,
    ) -> Result<Message, StoreError> {
        let max_len = self.max_len;
        self.run("publish", |state| {
            let log = state.rooms.entry(room.clone()).or_insert_with(RoomLog::new);
            log.top += 1;
            let message = Message {
                room: room.clone(),
                offset: log.top,
                epoch: log.epoch.clone(),
                body: body.clone(),
            };
            log.messages.push_back(message.clone());
            while log.messages.len() > max_len {
                log.messages.pop_front();
            }
            Ok(message)
        })
        .await
    }

    async fn history(
        &self,
        room: &RoomId,
        offset: u64,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        self.run("history", |state| {
            let log = state.rooms.entry(room.clone()).or_insert_with(RoomLog::new);
            let messages = log
                .messages
                .iter()
                .filter(|m| m.offset > offset)
                .take(limit)
                .cloned()
                .collect();
            let earliest = log.messages.front().map_or(log.top + 1, |m| m.offset);
            Ok(HistoryPage {
                messages,
                top: StreamPosition {
                    offset: log.top,
                    epoch: log.epoch.clone(),
                },
                earliest,
            })
        })
        .await
    }

    async fn delete_history(&self, room: &RoomId) -> Result<(), StoreError> {
        self.run("delete history", |state| {
            state.rooms.insert(room.clone(), RoomLog::new());
            Ok(())
        })
        .await
    }

    async fn sweep(&self) -> Result<u64, StoreError> {
        self.run("sweep", |state| {
            let now = Utc::now();
            let before = state.sessions.len();
            state.sessions.retain(|_, s| live(s, now));
            let mut removed = before - state.sessions.len();
            for members in state.presence.values_mut() {
                let before = members.len();
                members.retain(|_, m| m.expires_at > now);
                removed += before - members.len();
            }
            Ok(removed as u64)
        })
        .await
    }

    fn pool_stats(&self) -> PoolStats {
        self.gate.stats(None)
    }

    async fn close(&self) {
        self.gate.close();
    }
}
