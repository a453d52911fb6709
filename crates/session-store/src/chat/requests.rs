//! A connection's requests: each runs through the error boundary and answers with replies or
//! a typed error event.

use tokio_stream::wrappers::BroadcastStream;

use super::boundary::refused;
use super::connection::{Connection, Cursor};
use super::protocol::{ClientMsg, ServerMsg};
use crate::model::{PresenceMember, RoomId, SessionId};
use crate::store::expiry_in;

impl Connection {
    pub(super) async fn handle_text(&mut self, text: &str) -> Vec<ServerMsg> {
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

    pub(super) fn member(&self, session: SessionId, user: String) -> PresenceMember {
        PresenceMember {
            session,
            user,
            expires_at: expiry_in(self.ctx.config.presence_ttl),
        }
    }
}
