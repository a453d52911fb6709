use async_trait::async_trait;

use crate::batch::Batch;
use crate::error::ComponentError;

/// Does something with result batches: writes them to a database, calls a webhook, publishes.
///
/// The runtime calls [`Reaction::apply`] and settles the batch's token after it returns `Ok`; a
/// reaction therefore returns only once its effect is done (committed, answered, durable).
/// Batches may be delivered again after a failure or a restart, so `apply` must be idempotent by
/// position: skip what was already applied.
#[async_trait]
pub trait Reaction: Send + Sync {
    /// The reaction's name, for logs and metrics.
    fn name(&self) -> &str;

    /// Applies the batch's changes.
    async fn apply(&self, batch: &Batch) -> Result<(), ComponentError>;
}
