//! PostgreSQL logical replication source for surefoot.
//!
//! (Work in progress: issue 4.)

#![deny(missing_docs)]

pub mod config;
pub mod error;
pub mod ident;
pub mod pgoutput;
pub mod setup;
pub mod sqlstate;
pub mod transport;

pub use error::SourceError;
pub use ident::{Identifier, IdentifierError, SlotName, TableName};
