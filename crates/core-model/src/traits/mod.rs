//! The traits that sources, bootstrap providers and reactions implement.
//!
//! They are object safe (`Box<dyn Source>`), so the server can wire components chosen by
//! configuration.

mod bootstrap;
mod reaction;
mod source;

pub use bootstrap::{BootstrapProvider, SnapshotComplete, SnapshotRequest};
pub use reaction::Reaction;
pub use source::Source;
