#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod backend;
pub mod chat;
pub mod config;
pub mod error;
pub mod events;
pub mod health;
pub mod metrics;
pub mod model;
pub mod pool;
mod record;
pub mod store;

pub use backend::memory::MemoryStore;
pub use backend::postgres::PgStore;
pub use backend::redis::RedisStore;
pub use config::StoreConfig;
pub use error::StoreError;
pub use model::{
    HistoryPage, Message, NewSession, PresenceMember, Resume, RoomId, Session, SessionId,
    StreamPosition,
};
pub use pool::{PoolConfig, PoolGate, PoolHealth, PoolStats};
pub use store::{SessionStore, expiry_in};
