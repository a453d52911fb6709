use async_trait::async_trait;
use surefoot_core_lifecycle::CancellationToken;

use crate::batch::BatchSender;
use crate::change::TableRef;
use crate::error::ComponentError;
use crate::position::Position;

/// What a consumer asks a bootstrap provider for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// Who the snapshot is for (a query or reaction id).
    pub consumer: String,
    /// The tables to copy; empty means every table the provider serves.
    pub tables: Vec<TableRef>,
}

/// A snapshot delivered in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotComplete {
    /// The position the snapshot is consistent with: at or above every row of the snapshot and
    /// below every change of the stream that follows it. A bound, not necessarily a row's
    /// position: a consumer's checkpoint after the snapshot is its last row's position.
    pub consistent_point: Position,
    /// Rows delivered.
    pub rows: u64,
}

/// Produces a consistent initial state for a consumer before it follows the stream.
#[async_trait]
pub trait BootstrapProvider: Send + Sync {
    /// Sends the snapshot's rows to `output` as batches, each row at a position of its own,
    /// unique and increasing in the order sent (a consumer idempotent by position must apply
    /// every one), all at or below the consistent point, and returns [`SnapshotComplete`] only after the last row was sent. An error, or `cancel`
    /// firing, means the snapshot is incomplete and must not be treated as complete; every
    /// resource it held (connection, exported snapshot, temporary slot) is released.
    async fn snapshot(
        &self,
        request: SnapshotRequest,
        output: BatchSender,
        cancel: CancellationToken,
    ) -> Result<SnapshotComplete, ComponentError>;
}
