use std::time::Duration;

use async_trait::async_trait;
use surefoot_core_lifecycle::Status;

use crate::batch::SourceId;
use crate::error::ComponentError;

/// A producer of change batches (PostgreSQL replication, HTTP ingest).
///
/// A source is built with its output (a [`crate::BatchSender`]) and keeps it across restarts, so
/// two racing starts cannot hand it two different outputs.
///
/// Contract:
/// - Batches are sent to the output the source was built with, in position order, one source
///   transaction each (or several whole ones), each with a token from the source's own
///   [`crate::AckTracker`]. A full `output` makes the source wait; it never drops a batch.
/// - Only the tracker's watermark is ever confirmed upstream.
/// - Of two concurrent starts exactly one succeeds; the other gets an error.
#[async_trait]
pub trait Source: Send + Sync {
    /// The source's id.
    fn id(&self) -> &SourceId;

    /// Starts producing batches into the source's output. Returns once the source runs, or with
    /// the reason it could not start (in which case nothing it started is left running).
    async fn start(&self) -> Result<(), ComponentError>;

    /// Stops intake, waits up to `deadline` for batches in flight to settle, confirms the final
    /// watermark upstream and closes connections. What is not delivered by then is not confirmed
    /// and is delivered again after the next start.
    async fn stop(&self, deadline: Duration) -> Result<(), ComponentError>;

    /// The source's current status.
    fn status(&self) -> Status;
}
