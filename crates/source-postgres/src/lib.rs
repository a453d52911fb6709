#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod config;
pub mod error;
mod heartbeat;
pub mod ident;
mod liveness;
pub mod metrics;
pub mod pgoutput;
mod reconnect;
mod session;
pub mod setup;
mod source;
mod spill;
mod sql;
pub mod sqlstate;
pub mod transport;

pub use config::{ConfigError, PostgresSourceConfig, SlotLostPolicy};
pub use error::SourceError;
pub use heartbeat::HEARTBEAT_PREFIX;
pub use ident::{Identifier, IdentifierError, SlotName, TableName};
pub use liveness::Silence;
pub use source::{PostgresSource, Reconnect};
pub use spill::SpillStats;
