//! The PostgreSQL exported-snapshot provider.
//!
//! - [`slot`]: a replication slot created with an exported snapshot on a replication session
//!   kept open and idle while the snapshot is used; the consistent point validated as an LSN.
//! - [`connection`]: the ordinary connection that imports the snapshot into a repeatable-read,
//!   read-only transaction and verifies it.
//! - `copy`, `text` and `decoder`: each table copied with `COPY ... TO STDOUT` in bounded
//!   chunks, rows decoded by a per-column decoder chosen once from the column's type and sent in
//!   batches with backpressure.
//! - [`provider`]: [`PostgresProvider`], the whole snapshot, bounded at every step.
//! - [`stream`]: for a consumer added later, the stream of its temporary slot.

pub mod connection;
mod copy;
mod decoder;
mod estimate;
pub mod provider;
mod read_ahead;
pub mod slot;
pub mod stream;
mod text;

pub use connection::{SnapshotConnection, parse_consistent_point};
pub use provider::{Exported, PostgresProvider, snapshot_end};
pub use slot::{ExportedSlot, SlotCreated, SlotKind};
pub use stream::SlotConnector;
