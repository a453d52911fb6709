#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod answer;
mod auth;
mod batcher;
mod clock;
pub mod config;
pub mod error;
mod handler;
pub mod idempotency;
// Without Redis there is no instance lease: a stand-in with no value keeps the call sites.
#[cfg_attr(not(feature = "redis"), path = "lease_off.rs")]
mod lease;
pub mod metrics;
mod server;
mod settler;
mod source;
pub mod wire;

pub use answer::REPLAYED_HEADER;
pub use clock::{SystemClock, WallClock};
pub use config::{
    AckMode, Auth, BatchingConfig, ConfigError, HttpSourceConfig, IdempotencyBackend,
    IdempotencyConfig,
};
pub use error::HttpSourceError;
pub use handler::IDEMPOTENCY_HEADER;
pub use metrics::Stats;
pub use source::HttpSource;
