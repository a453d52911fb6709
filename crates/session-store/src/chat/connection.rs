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
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::boundary::refused;
use super::context::ChatContext;
use super::protocol::{ClientMsg, ServerMsg};
use crate::model::{Message, PresenceMember, RoomId, SessionId};
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

type Feed = BroadcastStream<Arc<Message>>;

#[derive(Debug, Clone)]
struct Cursor {
    offset: u64,
    epoch: String,
}

/// A connection's state; owned by its task, so no lock.
pub(crate) struct Connection {
    ctx: Arc<ChatContext>,
    socket: WebSocket,
    session: Option<(SessionId, String)>,
    rooms: BTreeSet<RoomId>,
    feeds: StreamMap<RoomId, Feed>,
    cursors: HashMap<RoomId, Cursor>,
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
    /// reconnect and closes with code 1012.
    pub(crate) async fn run(mut self, cancel: CancellationToken) -> Result<(), ConnectionError> {
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

    async fn send_all(&mut self, messages: Vec<ServerMsg>) -> Result<(), ConnectionError> {
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

    async fn handle_text(&mut self, text: &str) -> Vec<ServerMsg> {
        let request: ClientMsg = match serde_json::from_str(text) {
            Ok(request) => request,
            Err(error) => {
                self.ctx.boundary.count("bad_request");
                return vec![refused("unknown", "bad_request", error.to_string())];
            }
        };
        let name = request.name();
        let outcome = match request {
            ClientMsg::Hello { session, user } => self.hello(session, user).await,
            other => match self.session.clone() {
                None => Err(refused(name, "no_session", "send hello first")),
                Some(session) => self.handle(session, other).await,
            },
        };
        outcome.unwrap_or_else(|error| vec![error])
    }

    async fn handle(
        &mut self,
        (id, user): (SessionId, String),
        request: ClientMsg,
    ) -> Result<Vec<ServerMsg>, ServerMsg> {
        let name = request.name();
        match request {
            ClientMsg::Hello { .. } => Err(refused(name, "bad_request", "hello sent twice")),
            ClientMsg::Join { room } => self.join(id, user, room).await,
            ClientMsg::Resume {
                room,
                offset,
                epoch,
            } => {
                self.require_member(name, &room)?;
                self.resume(id, room, offset, epoch).await
            }
            ClientMsg::Leave { room } => {
                let ctx = self.ctx.clone();
                let session = ctx
                    .boundary
                    .run(name, true, || ctx.store.leave(id, &room))
                    .await?;
                self.rooms = session.rooms;
                self.feeds.remove(&room);
                self.cursors.remove(&room);
                ctx.events.left(id, &room);
                Ok(vec![ServerMsg::Left { room }])
            }
            ClientMsg::Publish {
                room,
                id: request_id,
                body,
            } => {
                self.require_member(name, &room)?;
                let ctx = self.ctx.clone();
                let message = ctx
                    .boundary
                    .run(name, false, || ctx.store.publish(&room, &body))
                    .await?;
                ctx.metrics.published.add(1, ctx.metrics.labels());
                let reply = ServerMsg::Published {
                    id: request_id,
                    offset: message.offset,
                    epoch: message.epoch.clone(),
                };
                ctx.hub.send(message);
                Ok(vec![reply])
            }
            ClientMsg::Presence { room } => {
                let ctx = self.ctx.clone();
                let members = ctx
                    .boundary
                    .run(name, true, || ctx.store.presence(&room))
                    .await?;
                Ok(vec![ServerMsg::Presence { room, members }])
            }
        }
    }

    fn require_member(&self, request: &str, room: &RoomId) -> Result<(), ServerMsg> {
        if self.rooms.contains(room) {
            Ok(())
        } else {
            Err(refused(request, "not_joined", format!("join {room} first")))
        }
    }

    async fn hello(
        &mut self,
        session: Option<String>,
        user: String,
    ) -> Result<Vec<ServerMsg>, ServerMsg> {
        if self.session.is_some() {
            return Err(refused("hello", "bad_request", "hello sent twice"));
        }
        let ctx = self.ctx.clone();
        let wanted: Option<SessionId> = session.and_then(|s| s.parse().ok());
        let (session, resumed) = ctx
            .boundary
            .run("hello", true, || ctx.open_session(wanted, &user))
            .await?;
        self.session = Some((session.id, session.user.clone()));
        self.rooms = session.rooms.clone();
        let mut out = vec![ServerMsg::Welcome {
            session: session.id.to_string(),
            rooms: session.rooms.iter().cloned().collect(),
            resumed,
        }];
        out.extend(self.heartbeat().await);
        Ok(out)
    }

    async fn join(
        &mut self,
        id: SessionId,
        user: String,
        room: RoomId,
    ) -> Result<Vec<ServerMsg>, ServerMsg> {
        let ctx = self.ctx.clone();
        // Subscribe before reading the position, so nothing published in between is missed.
        let feed = BroadcastStream::new(ctx.hub.subscribe(&room));
        let member = self.member(id, user);
        let (session, top) = ctx
            .boundary
            .run("join", true, || async {
                let session = ctx.store.join(id, &room).await?;
                ctx.store.heartbeat(&room, &member).await?;
                let top = ctx.store.position(&room).await?;
                Ok((session, top))
            })
            .await?;
        self.rooms = session.rooms;
        self.feeds.insert(room.clone(), feed);
        self.cursors.insert(
            room.clone(),
            Cursor {
                offset: top.offset,
                epoch: top.epoch.clone(),
            },
        );
        ctx.events.joined(id, &room);
        Ok(vec![ServerMsg::Joined {
            room,
            offset: top.offset,
            epoch: top.epoch,
        }])
    }

    async fn resume(
        &mut self,
        id: SessionId,
        room: RoomId,
        offset: u64,
        epoch: String,
    ) -> Result<Vec<ServerMsg>, ServerMsg> {
        let ctx = self.ctx.clone();
        let feed = BroadcastStream::new(ctx.hub.subscribe(&room));
        let limit = ctx.config.resume_limit;
        let resume = ctx
            .boundary
            .run("resume", true, || {
                ctx.store.resume(id, &room, offset, &epoch, limit)
            })
            .await?;
        let recovered = if resume.recovered { "true" } else { "false" };
        let mut labels = ctx.metrics.labels().to_vec();
        labels.push(opentelemetry::KeyValue::new("recovered", recovered));
        ctx.metrics.resumes.add(1, &labels);
        let delivered = resume
            .messages
            .last()
            .map_or(resume.top.offset, |m| m.offset);
        self.feeds.insert(room.clone(), feed);
        self.cursors.insert(
            room.clone(),
            Cursor {
                offset: delivered,
                epoch: resume.top.epoch.clone(),
            },
        );
        Ok(vec![ServerMsg::Resumed {
            room,
            recovered: resume.recovered,
            messages: resume.messages,
            offset: resume.top.offset,
            epoch: resume.top.epoch,
        }])
    }

    fn member(&self, session: SessionId, user: String) -> PresenceMember {
        PresenceMember {
            session,
            user,
            expires_at: expiry_in(self.ctx.config.presence_ttl),
        }
    }

    async fn deliver(
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

    async fn heartbeat(&mut self) -> Vec<ServerMsg> {
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
