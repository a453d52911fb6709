//! Live fan-out of published messages to this node's connections, one broadcast per room.
//!
//! The hub is only a fast path: each connection remembers the last offset it delivered per room
//! and fills any gap (a lagging receiver, two publishes racing) from the store's history, so a
//! message dropped here is delivered late, never lost, and never twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

use crate::model::{Message, RoomId};

/// Messages kept per room for slow receivers before they lag (and fill from history).
const ROOM_CAPACITY: usize = 1024;

/// Per-room broadcast channels. Cloning gives another handle to the same hub.
#[derive(Debug, Clone, Default)]
pub struct Hub {
    rooms: Arc<Mutex<HashMap<RoomId, broadcast::Sender<Arc<Message>>>>>,
}

impl Hub {
    /// A receiver of `room`'s live messages from now on.
    pub fn subscribe(&self, room: &RoomId) -> broadcast::Receiver<Arc<Message>> {
        self.lock()
            .entry(room.clone())
            .or_insert_with(|| broadcast::channel(ROOM_CAPACITY).0)
            .subscribe()
    }

    /// Sends `message` to the room's current receivers; none is fine (nobody is listening
    /// live; history has it).
    pub fn send(&self, message: Message) {
        let mut rooms = self.lock();
        let room = message.room.clone();
        if let Some(sender) = rooms.get(&room)
            && sender.send(Arc::new(message)).is_err()
        {
            // No receiver left: forget the room's channel.
            rooms.remove(&room);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, broadcast::Sender<Arc<Message>>>> {
        // The map holds channel handles only; a panicking holder cannot leave it half-changed.
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
