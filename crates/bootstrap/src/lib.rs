#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod config;
pub mod error;
pub mod jsonl;
pub mod postgres;

pub use config::{BootstrapConfig, ConfigError};
pub use error::{BootstrapError, Step};
pub use jsonl::JsonlProvider;
pub use postgres::{PostgresProvider, SlotKind};
