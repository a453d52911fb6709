//! The data model: sessions, rooms, presence and per-room history.
//!
//! History positions follow one rule everywhere: a room's history is append-only, each message
//! gets the next **offset** (1, 2, 3, …), and the pair (offset, **epoch**) names a point in it.
//! The epoch is a random token that changes whenever the room's history may have been lost
//! (deleted, evicted, a store that forgot it), so a client holding an old epoch can be told that
//! its offset no longer means anything, instead of being handed a wrong continuation.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A session's id: 128 random bits, shown as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(uuid::Uuid);

impl SessionId {
    /// A new id from the operating system's random source (UUID v4: 122 random bits).
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// The id as a UUID (the PostgreSQL backend's key).
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl From<uuid::Uuid> for SessionId {
    fn from(id: uuid::Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.simple())
    }
}

impl FromStr for SessionId {
    type Err = uuid::Error;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(text).map(Self)
    }
}

/// A room's name: 1 to 128 characters of `[A-Za-z0-9_.:-]`, so it is safe in any key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomId(String);

/// A room name that does not follow [`RoomId`]'s rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid room name {0:?}: use 1 to 128 characters of A-Z a-z 0-9 _ . : -")]
pub struct InvalidRoom(pub String);

impl RoomId {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidRoom> {
        let name = name.into();
        let valid = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if valid {
            Ok(Self(name))
        } else {
            Err(InvalidRoom(name))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RoomId {
    type Error = InvalidRoom;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::new(name)
    }
}

impl From<RoomId> for String {
    fn from(room: RoomId) -> Self {
        room.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user's session, shared by every request and connection that presents its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Its id.
    pub id: SessionId,
    /// The user it belongs to.
    pub user: String,
    /// Application data.
    pub data: serde_json::Value,
    /// Rooms the session has joined.
    pub rooms: BTreeSet<RoomId>,
    /// The node (server instance) that last owned it.
    pub node: String,
    /// Bumped by every successful save; a save must name the version it read.
    pub version: u64,
    /// When it expires unless touched or saved.
    pub expires_at: DateTime<Utc>,
}

/// What [`crate::SessionStore::create`] needs.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    /// The user.
    pub user: String,
    /// Initial data.
    pub data: serde_json::Value,
    /// The creating node.
    pub node: String,
    /// When it expires unless touched or saved.
    pub expires_at: DateTime<Utc>,
}

impl NewSession {
    /// The session with `id` and version 1.
    pub fn into_session(self, id: SessionId) -> Session {
        Session {
            id,
            user: self.user,
            data: self.data,
            rooms: BTreeSet::new(),
            node: self.node,
            version: 1,
            expires_at: self.expires_at,
        }
    }
}

/// A point in a room's history: everything up to and including `offset` in `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The offset of the last message (0 when there is none).
    pub offset: u64,
    /// The history's epoch.
    pub epoch: String,
}

/// One message in a room's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The room.
    pub room: RoomId,
    /// Its offset in the room (1 for the first).
    pub offset: u64,
    /// The epoch it was written in.
    pub epoch: String,
    /// What was published.
    pub body: serde_json::Value,
}

/// A slice of a room's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    /// Messages after the requested offset, oldest first, at most the requested limit.
    pub messages: Vec<Message>,
    /// The room's latest position when the page was read.
    pub top: StreamPosition,
    /// The lowest offset still kept (`top.offset + 1` when nothing is kept).
    pub earliest: u64,
}

/// What [`crate::SessionStore::resume`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    /// The missed messages, oldest first.
    pub messages: Vec<Message>,
    /// Whether `messages` is everything missed since the client's position: the epoch matched,
    /// no message after the offset had been trimmed, and nothing was cut by the limit.
    pub recovered: bool,
    /// The room's position to continue from.
    pub top: StreamPosition,
}

/// A member present in a room until `expires_at` unless its heartbeat is renewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceMember {
    /// The member's session.
    pub session: SessionId,
    /// The member's user.
    pub user: String,
    /// When the member is gone without a new heartbeat.
    pub expires_at: DateTime<Utc>,
}

/// A new random epoch token (64 random bits as hex).
pub fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}
