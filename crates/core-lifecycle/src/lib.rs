//! Supervised tasks, component status, graceful shutdown and error classification for tokio
//! services.
//!
//! Every background task in surefoot is started through this crate, so that no task can die
//! unseen, outlive a stop, or be started twice under the same name.

#![deny(missing_docs)]

pub mod error_class;
pub mod status;
pub mod task_group;

pub use error_class::{Classify, ErrorClass};
pub use status::Status;
pub use task_group::{SpawnError, StopReport, TaskFailure, TaskGroup};
pub use tokio_util::sync::CancellationToken;
