//! The example chat server as a process: `SUREFOOT_CHAT_LISTEN` (default 127.0.0.1:8080),
//! `SUREFOOT_CHAT_STORE` (`memory`, a `redis://` or a `postgres://` URL), `SUREFOOT_CHAT_NODE`.
//! Stops gracefully on SIGTERM or SIGINT.

use std::sync::Arc;
use std::time::Duration;

use surefoot_session_store::chat::{ChatConfig, ChatServer};
use surefoot_session_store::events::{SessionEvents, bridge_through_redis};
use surefoot_session_store::{MemoryStore, PgStore, RedisStore, SessionStore, StoreConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let listen = std::env::var("SUREFOOT_CHAT_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let store_url = std::env::var("SUREFOOT_CHAT_STORE").unwrap_or_else(|_| "memory".into());
    let node = std::env::var("SUREFOOT_CHAT_NODE").unwrap_or_else(|_| "chat-1".into());
    let config = StoreConfig::default();
    let store: Arc<dyn SessionStore> = if store_url.starts_with("redis://") {
        Arc::new(RedisStore::connect(&store_url, config).await?)
    } else if store_url.starts_with("postgres://") {
        Arc::new(PgStore::connect(&store_url, config).await?)
    } else {
        Arc::new(MemoryStore::new(config)?)
    };
    let stop = surefoot_core_lifecycle::signal::shutdown_signal()?;
    let events = SessionEvents::new(node.clone(), 1024);
    let server = ChatServer::start(
        ChatConfig::new(listen.parse()?, node),
        store,
        events.clone(),
    )
    .await?;
    if store_url.starts_with("redis://") {
        // Session events reach the other nodes through Redis; the bridge stops with the server.
        let limit = Duration::from_secs(5);
        bridge_through_redis(
            server.tasks(),
            &store_url,
            "surefoot-chat-events",
            &events,
            limit,
        )
        .await?;
    }
    tracing::info!(addr = %server.local_addr(), "ready");
    let signal = stop.await;
    tracing::info!(?signal, "stopping");
    let report = server.stop(Duration::from_secs(5)).await;
    tracing::info!(live_tasks = report.live_tasks, aborted = ?report.tasks.aborted, "stopped");
    Ok(())
}
