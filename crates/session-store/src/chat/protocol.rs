//! The chat's wire protocol: one JSON object per websocket text frame, tagged by `type`.

use serde::{Deserialize, Serialize};

use crate::model::{Message, PresenceMember, RoomId};

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// First frame: continue `session` if given and alive, else start a new one for `user`.
    Hello {
        /// A session id from an earlier `welcome`.
        #[serde(default)]
        session: Option<String>,
        /// The user.
        user: String,
    },
    /// Join a room; live messages follow from the room's current position.
    Join {
        /// The room.
        room: RoomId,
    },
    /// Continue a joined room from (`offset`, `epoch`): missed messages, then live ones.
    Resume {
        /// The room.
        room: RoomId,
        /// The last offset the client has.
        offset: u64,
        /// The epoch that offset belongs to.
        epoch: String,
    },
    /// Leave a room.
    Leave {
        /// The room.
        room: RoomId,
    },
    /// Publish `body` to a joined room; `id` is echoed in the `published` reply.
    Publish {
        /// The room.
        room: RoomId,
        /// The client's id for this request.
        id: u64,
        /// What to publish.
        body: serde_json::Value,
    },
    /// Ask who is present in a room.
    Presence {
        /// The room.
        room: RoomId,
    },
}

impl ClientMsg {
    /// The request's name, for error events and logs.
    pub fn name(&self) -> &'static str {
        match self {
            ClientMsg::Hello { .. } => "hello",
            ClientMsg::Join { .. } => "join",
            ClientMsg::Resume { .. } => "resume",
            ClientMsg::Leave { .. } => "leave",
            ClientMsg::Publish { .. } => "publish",
            ClientMsg::Presence { .. } => "presence",
        }
    }

    /// Whether running the request twice has the same effect as once, so a failed attempt may
    /// be retried. Publishing is not: a publish whose reply was lost may have been stored.
    pub fn idempotent(&self) -> bool {
        !matches!(self, ClientMsg::Publish { .. })
    }
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// The session this connection speaks for.
    Welcome {
        /// Its id.
        session: String,
        /// Rooms it has joined (kept across reconnects and restarts).
        rooms: Vec<RoomId>,
        /// Whether an existing session was continued.
        resumed: bool,
    },
    /// A room was joined; messages after (`offset`, `epoch`) will follow.
    Joined {
        /// The room.
        room: RoomId,
        /// Its position.
        offset: u64,
        /// Its epoch.
        epoch: String,
    },
    /// A resume's outcome; `messages` are the missed ones, live messages follow.
    Resumed {
        /// The room.
        room: RoomId,
        /// Whether `messages` is everything missed.
        recovered: bool,
        /// The missed messages.
        messages: Vec<Message>,
        /// The room's position after them.
        offset: u64,
        /// The room's epoch.
        epoch: String,
    },
    /// A room was left.
    Left {
        /// The room.
        room: RoomId,
    },
    /// A publish was stored at `offset`.
    Published {
        /// The client's id for the request.
        id: u64,
        /// The message's offset.
        offset: u64,
        /// Its epoch.
        epoch: String,
    },
    /// A message in a joined room, delivered exactly once and in offset order.
    Message(Message),
    /// Who is in a room.
    Presence {
        /// The room.
        room: RoomId,
        /// Its members.
        members: Vec<PresenceMember>,
    },
    /// A request failed; `retryable` says whether sending it again can help.
    Error {
        /// The request's name.
        request: String,
        /// A short code (`conflict`, `pool_exhausted`, `not_found`, …).
        code: String,
        /// What went wrong.
        message: String,
        /// Whether the client may retry.
        retryable: bool,
    },
    /// The server is stopping: reconnect after `after_ms` and resume with your session.
    Reconnect {
        /// Suggested delay before reconnecting.
        after_ms: u64,
    },
}
