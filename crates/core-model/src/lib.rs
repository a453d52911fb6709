#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod ack;
pub mod batch;
pub mod change;
pub mod error;
pub mod position;
pub mod row;
pub mod secret;
pub mod traits;
pub mod value;

pub use ack::{AckOutcome, AckToken, AckTracker, TrackerError, TrackerSnapshot};
pub use batch::{
    Batch, BatchPermit, BatchReceiver, BatchSender, ChannelClosed, SourceId, batch_channel,
};
pub use change::{Change, Operation, TableRef};
pub use error::ComponentError;
pub use position::{Lsn, LsnParseError, Position};
pub use row::{Column, Row};
pub use secret::{Secret, SecretUrl};
pub use traits::{BootstrapProvider, Reaction, SnapshotComplete, SnapshotRequest, Source};
pub use value::{Numeric, NumericParseError, Value};
