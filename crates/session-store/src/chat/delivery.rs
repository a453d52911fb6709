//! Delivery of live messages: exactly once and in offset order per room, gaps filled from
//! history.

use std::sync::Arc;

use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::connection::{Connection, Cursor};
use super::protocol::ServerMsg;
use crate::model::{Message, RoomId};

impl Connection {
    pub(super) async fn deliver(
        &mut self,
        room: RoomId,
        item: Result<Arc<Message>, BroadcastStreamRecvError>,
    ) -> Vec<ServerMsg> {
        let Some(cursor) = self.cursors.get_mut(&room) else {
            return Vec::new();
        };
        if let Ok(message) = &item
            && message.epoch == cursor.epoch
        {
            if message.offset <= cursor.offset {
                return Vec::new();
            }
            if message.offset == cursor.offset + 1 {
                cursor.offset = message.offset;
                return vec![ServerMsg::Message(Message::clone(message))];
            }
        }
        self.fill(room).await
    }

    /// Sends what the cursor is missing from history: after a gap, a lag or an epoch change.
    async fn fill(&mut self, room: RoomId) -> Vec<ServerMsg> {
        let ctx = self.ctx.clone();
        let limit = ctx.config.resume_limit;
        let mut out = Vec::new();
        for _ in 0..16 {
            let Some(cursor) = self.cursors.get_mut(&room) else {
                break;
            };
            let from = cursor.offset;
            let page = match ctx
                .boundary
                .run("deliver", true, || ctx.store.history(&room, from, limit))
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    out.push(error);
                    break;
                }
            };
            if page.top.epoch != cursor.epoch {
                tracing::info!(%room, old = %cursor.epoch, new = %page.top.epoch, "room history has a new epoch");
                *cursor = Cursor {
                    offset: 0,
                    epoch: page.top.epoch.clone(),
                };
                continue;
            }
            let full = page.messages.len() >= limit;
            for message in page.messages {
                if message.offset > cursor.offset {
                    cursor.offset = message.offset;
                    out.push(ServerMsg::Message(message));
                }
            }
            if !full {
                break;
            }
        }
        out
    }
}
