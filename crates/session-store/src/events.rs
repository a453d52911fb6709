//! Session events: an in-process bus, and a bridge that carries them between nodes through
//! Redis pub/sub.
//!
//! Events are observations (who opened, joined, left), not data: a subscriber that falls
//! behind is told how many it missed (a `Missed` event), never silently skipped.

use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use surefoot_core_lifecycle::{SpawnError, TaskGroup};
use tokio::sync::broadcast;

use crate::StoreError;
use crate::model::{RoomId, SessionId};

/// What happened to a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SessionEventKind {
    /// A new session was created.
    Opened,
    /// An existing session was continued on a (possibly new) node.
    Resumed,
    /// The session joined `room`.
    Joined {
        /// The room.
        room: RoomId,
    },
    /// The session left `room`.
    Left {
        /// The room.
        room: RoomId,
    },
    /// This subscriber fell behind and lost `count` events.
    Missed {
        /// Events lost.
        count: u64,
    },
}

/// One event, stamped with the node it happened on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEvent {
    /// The node.
    pub node: String,
    /// The session (nil for `Missed`).
    pub session: Option<SessionId>,
    /// What happened.
    #[serde(flatten)]
    pub kind: SessionEventKind,
}

/// A broadcast bus of [`SessionEvent`]s for one node. Cloning gives another handle.
#[derive(Debug, Clone)]
pub struct SessionEvents {
    node: String,
    tx: broadcast::Sender<SessionEvent>,
}

impl SessionEvents {
    /// A bus for `node` keeping `capacity` events per subscriber.
    pub fn new(node: impl Into<String>, capacity: usize) -> Self {
        Self {
            node: node.into(),
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Publishes `event`; never waits. With no subscriber it goes nowhere (nobody is owed it).
    pub fn publish(&self, event: SessionEvent) {
        // An error only means nobody subscribes right now.
        let _no_subscriber = self.tx.send(event);
    }

    fn emit(&self, session: SessionId, kind: SessionEventKind) {
        self.publish(SessionEvent {
            node: self.node.clone(),
            session: Some(session),
            kind,
        });
    }

    /// A session was created here.
    pub fn opened(&self, session: SessionId) {
        self.emit(session, SessionEventKind::Opened);
    }

    /// A session was continued here.
    pub fn resumed(&self, session: SessionId) {
        self.emit(session, SessionEventKind::Resumed);
    }

    /// A session joined `room` here.
    pub fn joined(&self, session: SessionId, room: &RoomId) {
        self.emit(session, SessionEventKind::Joined { room: room.clone() });
    }

    /// A session left `room` here.
    pub fn left(&self, session: SessionId, room: &RoomId) {
        self.emit(session, SessionEventKind::Left { room: room.clone() });
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> EventSubscription {
        EventSubscription {
            rx: self.tx.subscribe(),
            node: self.node.clone(),
        }
    }
}

/// One subscriber's view of a [`SessionEvents`] bus.
#[derive(Debug)]
pub struct EventSubscription {
    rx: broadcast::Receiver<SessionEvent>,
    node: String,
}

impl EventSubscription {
    /// The next event, a `Missed` event if this subscriber fell behind, `None` when the bus is
    /// gone. Cancel-safe.
    pub async fn recv(&mut self) -> Option<SessionEvent> {
        match self.rx.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(count)) => {
                tracing::warn!(missed = count, "session event subscriber fell behind");
                Some(SessionEvent {
                    node: self.node.clone(),
                    session: None,
                    kind: SessionEventKind::Missed { count },
                })
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// Carries `events` between nodes over the Redis channel `channel`: this node's own events are
/// published there, other nodes' events read from it are published on the local bus. Runs as
/// two tasks of `tasks` (`events-out`, `events-in`) that end when the group stops.
///
/// Pub/sub is at-most-once: an event published while a node is disconnected is not seen by it.
/// That suits observations; state lives in the store.
pub async fn bridge_through_redis(
    tasks: &TaskGroup,
    url: &str,
    channel: &str,
    events: &SessionEvents,
    timeout: Duration,
) -> Result<(), BridgeError> {
    let client = redis::Client::open(url).map_err(StoreError::redis("open client"))?;
    let subscribe = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let pubsub = surefoot_core_lifecycle::timeout("redis subscribe", timeout, subscribe)
        .await
        .map_err(StoreError::from)?
        .map_err(StoreError::redis("subscribe"))?;
    let connect = client.get_multiplexed_async_connection();
    let mut conn = surefoot_core_lifecycle::timeout("redis connect", timeout, connect)
        .await
        .map_err(StoreError::from)?
        .map_err(StoreError::redis("connect"))?;

    let mut local = events.subscribe();
    let node = events.node().to_owned();
    let out_channel = channel.to_owned();
    tasks.spawn("events-out", move |cancel| async move {
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return Ok::<(), StoreError>(()),
                event = local.recv() => match event { Some(e) => e, None => return Ok(()) },
            };
            if event.node != node || matches!(event.kind, SessionEventKind::Missed { .. }) {
                continue;
            }
            let text =
                serde_json::to_string(&event).map_err(|e| StoreError::corrupt("event", e))?;
            let mut cmd = redis::cmd("PUBLISH");
            cmd.arg(&out_channel).arg(text);
            let publish = cmd.query_async::<i64>(&mut conn);
            match surefoot_core_lifecycle::timeout("redis publish event", timeout, publish).await {
                Ok(Ok(_receivers)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "could not publish a session event to other nodes")
                }
                Err(error) => {
                    tracing::warn!(%error, "could not publish a session event to other nodes")
                }
            }
        }
    })?;

    let bus = events.clone();
    let own = events.node().to_owned();
    tasks.spawn("events-in", move |cancel| async move {
        let mut messages = pubsub.into_on_message();
        loop {
            let message = tokio::select! {
                () = cancel.cancelled() => return Ok::<(), StoreError>(()),
                message = messages.next() => message,
            };
            let Some(message) = message else {
                return Err(StoreError::corrupt(
                    "event stream",
                    "redis subscription ended",
                ));
            };
            let payload: String = match message.get_payload() {
                Ok(payload) => payload,
                Err(error) => {
                    tracing::warn!(%error, "unreadable session event from redis");
                    continue;
                }
            };
            match serde_json::from_str::<SessionEvent>(&payload) {
                Ok(event) if event.node != own => bus.publish(event),
                Ok(_own_event) => {}
                Err(error) => tracing::warn!(%error, "undecodable session event from redis"),
            }
        }
    })?;
    Ok(())
}

/// Why the Redis event bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// Redis could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The task group refused the bridge's tasks.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}
