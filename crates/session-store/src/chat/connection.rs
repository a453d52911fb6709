//! One websocket connection: requests in, replies and live messages out, heartbeats.
//!
//! Delivery rule: per room the connection remembers the (offset, epoch) it delivered last and
//! sends only the next offset; anything else (a gap, a lagging receiver, a new epoch) is filled
//! from the store's history. So each message reaches the client exactly once and in order.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use futures::StreamExt;
use surefoot_core_lifecycle::CancellationToken;
use tokio_stream::StreamMap;
use tokio_stream::wrappers::BroadcastStream;

use super::context::ChatContext;
use super::protocol::ServerMsg;
use crate::model::{Message, RoomId, SessionId};
use crate::store::expiry_in;

/// Websocket close code 1012: the service is restarting; reconnect.
const SERVICE_RESTART: u16 = 1012;

/// Why a connection ended abnormally (the client vanished or stopped reading).
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// Sending to the client failed or took too long.
    #[error("sending to the client failed: {0}")]
    Send(String),
}

pub(super) type Feed = BroadcastStream<Arc<Message>>;

#[derive(Debug, Clone)]
pub(super) struct Cursor {
    pub(super) offset: u64,
    pub(super) epoch: String,
}

/// A connection's state; owned by its task, so no lock.
pub(crate) struct Connection {
    pub(super) ctx: Arc<ChatContext>,
    pub(super) socket: WebSocket,
    pub(super) session: Option<(SessionId, String)>,
    pub(super) rooms: BTreeSet<RoomId>,
    pub(super) feeds: StreamMap<RoomId, Feed>,
    pub(super) cursors: HashMap<RoomId, Cursor>,
}

impl Connection {
    pub(crate) fn new(ctx: Arc<ChatContext>, socket: WebSocket) -> Self {
        Self {
            ctx,
            socket,
            session: None,
            rooms: BTreeSet::new(),
            feeds: StreamMap::new(),
            cursors: HashMap::new(),
        }
    }

    /// Serves the client until it leaves or `cancel` fires; on cancel it tells the client to
    /// reconnect and closes with code 1012. A client that vanishes (a send fails) ends the
    /// connection normally: that is the client leaving, logged, not a failure of the server.
    pub(crate) async fn run(self, cancel: CancellationToken) -> Result<(), ConnectionError> {
        match self.serve(cancel).await {
            Err(ConnectionError::Send(reason)) => {
                tracing::info!(%reason, "client gone; connection ended");
                Ok(())
            }
            other => other,
        }
    }

    async fn serve(mut self, cancel: CancellationToken) -> Result<(), ConnectionError> {
        let mut heartbeat = tokio::time::interval(self.ctx.config.heartbeat_interval);
        heartbeat.tick().await;
        let mut last_heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return self.goodbye().await,
                frame = self.socket.recv() => {
                    last_heard = tokio::time::Instant::now();
                    match frame {
                    Some(Ok(WsMessage::Text(text))) => {
                        let replies = self.handle_text(text.as_str()).await;
                        self.send_all(replies).await?;
                    }
                    Some(Ok(WsMessage::Close(_))) | None => {
                        self.depart_all().await;
                        return Ok(());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => {
                        tracing::debug!(%error, "client connection failed");
                        return Ok(());
                    }
                }},
                Some((room, item)) = self.feeds.next() => {
                    let out = self.deliver(room, item).await;
                    self.send_all(out).await?;
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > self.ctx.config.client_idle_timeout {
                        tracing::info!("client silent past the idle timeout; disconnecting");
                        self.depart_all().await;
                        return Ok(());
                    }
                    let out = self.heartbeat().await;
                    self.send_all(out).await?;
                    self.send_frame(WsMessage::Ping(Default::default())).await?;
                }
            }
        }
    }

    async fn goodbye(&mut self) -> Result<(), ConnectionError> {
        let after_ms = u64::try_from(self.ctx.config.reconnect_after.as_millis()).unwrap_or(0);
        self.send(ServerMsg::Reconnect { after_ms }).await?;
        let frame = CloseFrame {
            code: SERVICE_RESTART,
            reason: "server restarting; reconnect and resume".into(),
        };
        self.send_frame(WsMessage::Close(Some(frame))).await?;
        // Wait for the client's close reply (bounded), so the connection ends with the
        // closing handshake rather than a reset that could discard the hint unread.
        let answered = async {
            while let Some(Ok(frame)) = self.socket.recv().await {
                if matches!(frame, WsMessage::Close(_)) {
                    break;
                }
            }
        };
        if tokio::time::timeout(self.ctx.config.close_timeout, answered)
            .await
            .is_err()
        {
            tracing::debug!("client did not answer the close frame in time");
        }
        Ok(())
    }

    pub(super) async fn send_all(
        &mut self,
        messages: Vec<ServerMsg>,
    ) -> Result<(), ConnectionError> {
        for message in messages {
            self.send(message).await?;
        }
        Ok(())
    }

    async fn send(&mut self, message: ServerMsg) -> Result<(), ConnectionError> {
        let text =
            serde_json::to_string(&message).map_err(|e| ConnectionError::Send(e.to_string()))?;
        self.send_frame(WsMessage::Text(text.into())).await
    }

    async fn send_frame(&mut self, frame: WsMessage) -> Result<(), ConnectionError> {
        let limit = self.ctx.config.send_timeout;
        surefoot_core_lifecycle::timeout("websocket send", limit, self.socket.send(frame))
            .await
            .map_err(|e| ConnectionError::Send(e.to_string()))?
            .map_err(|e| ConnectionError::Send(e.to_string()))
    }

    pub(super) async fn heartbeat(&mut self) -> Vec<ServerMsg> {
        let Some((id, user)) = self.session.clone() else {
            return Vec::new();
        };
        let ctx = self.ctx.clone();
        let member = self.member(id, user);
        let rooms = self.rooms.clone();
        let expires = expiry_in(ctx.config.session_ttl);
        let beat = ctx
            .boundary
            .run("heartbeat", true, || async {
                ctx.store.touch(id, expires).await?;
                for room in &rooms {
                    ctx.store.heartbeat(room, &member).await?;
                }
                Ok(())
            })
            .await;
        beat.err().into_iter().collect()
    }

    async fn depart_all(&mut self) {
        let Some((id, _)) = self.session else { return };
        for room in &self.rooms {
            if let Err(error) = self.ctx.store.depart(room, id).await {
                // The entry lapses on its own after the presence ttl.
                tracing::warn!(%room, %error, "could not remove presence on disconnect");
            }
        }
    }
}
