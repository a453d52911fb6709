//! The example chat server's settings.

use std::net::SocketAddr;
use std::time::Duration;

use surefoot_core_lifecycle::retry::{Backoff, RetryPolicy};

/// Settings of a [`super::ChatServer`].
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Where to listen (port 0 picks a free one).
    pub listen: SocketAddr,
    /// This node's name, recorded as the owner of the sessions it serves.
    pub node: String,
    /// Sessions expire this long after their last heartbeat.
    pub session_ttl: Duration,
    /// Presence entries expire this long after their last heartbeat.
    pub presence_ttl: Duration,
    /// How often each connection refreshes its session and presence.
    pub heartbeat_interval: Duration,
    /// How often expired sessions and presence are swept.
    pub sweep_interval: Duration,
    /// The delay suggested to clients in the reconnect hint when the server stops.
    pub reconnect_after: Duration,
    /// Limit for sending one frame to a client.
    pub send_timeout: Duration,
    /// How long stop waits for a client to answer the close frame (the websocket closing
    /// handshake) before dropping the connection.
    pub close_timeout: Duration,
    /// A client that sends nothing (not even a pong to the ping sent on every heartbeat) for
    /// this long is disconnected.
    pub client_idle_timeout: Duration,
    /// Most messages sent in one resume or gap fill.
    pub resume_limit: usize,
    /// Retries of idempotent requests that failed with a retryable error.
    pub retry: RetryPolicy,
}

impl ChatConfig {
    /// Defaults for `node` listening on `listen`.
    pub fn new(listen: SocketAddr, node: impl Into<String>) -> Self {
        Self {
            listen,
            node: node.into(),
            session_ttl: Duration::from_secs(3600),
            presence_ttl: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(30),
            reconnect_after: Duration::from_millis(200),
            send_timeout: Duration::from_secs(5),
            client_idle_timeout: Duration::from_secs(60),
            close_timeout: Duration::from_secs(1),
            resume_limit: 1000,
            retry: RetryPolicy::new(Backoff::new(
                Duration::from_millis(20),
                Duration::from_millis(500),
            ))
            .with_max_attempts(4)
            .with_max_elapsed(Duration::from_secs(3)),
        }
    }
}
