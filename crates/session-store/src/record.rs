//! How a session's fields other than id, version and expiry are stored (Redis, PostgreSQL).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::model::{RoomId, Session, SessionId};

/// The stored form of a session's data.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    user: String,
    data: serde_json::Value,
    rooms: BTreeSet<RoomId>,
    node: String,
}

impl SessionRecord {
    pub(crate) fn encode(session: &Session) -> Result<String, StoreError> {
        let record = SessionRecord {
            user: session.user.clone(),
            data: session.data.clone(),
            rooms: session.rooms.clone(),
            node: session.node.clone(),
        };
        serde_json::to_string(&record).map_err(|e| StoreError::corrupt("session", e))
    }

    pub(crate) fn decode(
        id: SessionId,
        text: &str,
        version: u64,
        expires_at: DateTime<Utc>,
    ) -> Result<Session, StoreError> {
        let record: SessionRecord =
            serde_json::from_str(text).map_err(|e| StoreError::corrupt("session", e))?;
        Ok(Session {
            id,
            user: record.user,
            data: record.data,
            rooms: record.rooms,
            node: record.node,
            version,
            expires_at,
        })
    }
}
