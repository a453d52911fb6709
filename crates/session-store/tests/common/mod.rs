//! Helpers shared by the session store's integration tests.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub(crate) mod client;

use std::time::Duration;

use surefoot_session_store::{
    MemoryStore, NewSession, PgStore, RedisStore, StoreConfig, expiry_in,
};
use surefoot_test_support::{PgServer, RedisServer};

/// How long a test waits for something that should happen.
pub(crate) const BOUND: Duration = Duration::from_secs(30);

/// A store config with `history_max_len` messages kept per room.
pub(crate) fn config(history_max_len: usize) -> StoreConfig {
    StoreConfig {
        history_max_len,
        ..StoreConfig::default()
    }
}

pub(crate) fn memory(history_max_len: usize) -> MemoryStore {
    MemoryStore::new(config(history_max_len)).unwrap()
}

pub(crate) async fn redis(server: &RedisServer, history_max_len: usize) -> RedisStore {
    RedisStore::connect(&server.url(), config(history_max_len))
        .await
        .unwrap()
}

pub(crate) async fn postgres(server: &PgServer, history_max_len: usize) -> PgStore {
    PgStore::connect(&server.url("postgres"), config(history_max_len))
        .await
        .unwrap()
}

/// A new session for `user` living an hour.
pub(crate) fn new_session(user: &str) -> NewSession {
    NewSession {
        user: user.to_owned(),
        data: serde_json::json!({ "n": 0 }),
        node: "test".to_owned(),
        expires_at: expiry_in(Duration::from_secs(3600)),
    }
}
