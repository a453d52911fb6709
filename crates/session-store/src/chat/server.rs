//! The chat server: an axum app with `/ws` and `/health`, its connections and its sweeper all
//! tasks of one core-lifecycle [`TaskGroup`], so stop reaches every one of them (FINDINGS S-5,
//! S-6).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use axum::routing::get;
use surefoot_core_lifecycle::{SpawnError, StopReport, TaskGroup};

use super::boundary::Boundary;
use super::config::ChatConfig;
use super::connection::Connection;
use super::context::ChatContext;
use super::hub::Hub;
use crate::events::SessionEvents;
use crate::health;
use crate::metrics::StoreMetrics;
use crate::pool::PoolStats;
use crate::store::SessionStore;

/// Why a chat server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The task group refused a task.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

/// A running chat server.
#[derive(Debug)]
pub struct ChatServer {
    addr: std::net::SocketAddr,
    tasks: TaskGroup,
    ctx: Arc<ChatContext>,
}

/// What [`ChatServer::stop`] did.
#[derive(Debug)]
pub struct ChatStopReport {
    /// The task group's stop: tasks aborted at the deadline and tasks that failed.
    pub tasks: StopReport,
    /// Tasks still alive afterwards (always 0).
    pub live_tasks: usize,
    /// The pool after closing.
    pub pool: PoolStats,
}

#[derive(Clone)]
struct AppState {
    ctx: Arc<ChatContext>,
    tasks: TaskGroup,
    next: Arc<AtomicU64>,
}

impl ChatServer {
    /// Binds `config.listen` and starts serving `store`.
    pub async fn start(
        config: ChatConfig,
        store: Arc<dyn SessionStore>,
        events: SessionEvents,
    ) -> Result<Self, ChatError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ChatError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ChatError::Bind {
            addr: config.listen,
            source,
        })?;
        let metrics = StoreMetrics::global(store.backend());
        let ctx = Arc::new(ChatContext {
            boundary: Boundary::new(config.retry, metrics.clone()),
            hub: Hub::default(),
            metrics,
            events,
            store: store.clone(),
            config,
        });
        let tasks = TaskGroup::new(format!("chat-{}", ctx.config.node));
        let state = AppState {
            ctx: ctx.clone(),
            tasks: tasks.clone(),
            next: Arc::default(),
        };
        let app = Router::new()
            .route("/ws", get(upgrade))
            .with_state(state)
            .merge(health::router(vec![store]));
        tasks.spawn("http", |cancel| async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await
        })?;
        spawn_sweeper(&tasks, ctx.clone())?;
        tracing::info!(%addr, node = %ctx.config.node, backend = ctx.store.backend(), "chat server listening");
        Ok(Self { addr, tasks, ctx })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Tasks alive now: `http`, `sweeper` and one per connection.
    pub fn live_tasks(&self) -> usize {
        self.tasks.live_tasks()
    }

    /// The task group, for adding related work (such as the Redis event bridge) that must stop
    /// with the server.
    pub fn tasks(&self) -> &TaskGroup {
        &self.tasks
    }

    /// Stops: every connection sends the reconnect hint and closes with code 1012, the
    /// listener and the sweeper end, stragglers are aborted at `deadline` and named in the
    /// report, and the store's pools are closed.
    pub async fn stop(self, deadline: Duration) -> ChatStopReport {
        let tasks = self.tasks.stop(deadline).await;
        if !tasks.is_clean() {
            tracing::warn!(?tasks, "chat server stopped with aborted or failed tasks");
        }
        self.ctx.store.close().await;
        ChatStopReport {
            tasks,
            live_tasks: self.tasks.live_tasks(),
            pool: self.ctx.store.pool_stats(),
        }
    }
}

async fn upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| async move {
        let n = state.next.fetch_add(1, Ordering::Relaxed);
        let connection = Connection::new(state.ctx.clone(), socket);
        if let Err(error) = state
            .tasks
            .spawn(format!("conn-{n}"), |cancel| connection.run(cancel))
        {
            // The server is stopping; dropping the socket closes it and the client reconnects.
            tracing::info!(%error, "connection refused while stopping");
        }
    })
}

fn spawn_sweeper(tasks: &TaskGroup, ctx: Arc<ChatContext>) -> Result<(), SpawnError> {
    tasks.spawn("sweeper", move |cancel| async move {
        let mut tick = tokio::time::interval(ctx.config.sweep_interval);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok::<(), std::convert::Infallible>(()),
                _ = tick.tick() => match ctx.store.sweep().await {
                    Ok(0) => {}
                    Ok(removed) => tracing::debug!(removed, "swept expired sessions and presence"),
                    Err(error) => tracing::warn!(%error, "sweep failed; will try again"),
                },
            }
        }
    })
}
