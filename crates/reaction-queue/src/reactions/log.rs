//! A reaction that logs each batch.

use async_trait::async_trait;
use surefoot_core_model::{Batch, ComponentError, Reaction};

/// Logs every batch at `info` level under the target `surefoot::reaction`: source, positions,
/// number of changes and idempotency key. Useful to watch a pipeline; cannot fail.
#[derive(Debug, Clone)]
pub struct LogReaction {
    name: String,
}

impl LogReaction {
    /// A log reaction called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

#[async_trait]
impl Reaction for LogReaction {
    fn name(&self) -> &str {
        &self.name
    }

    async fn apply(&self, batch: &Batch) -> Result<(), ComponentError> {
        tracing::info!(
            target: "surefoot::reaction",
            reaction = %self.name,
            source = %batch.source,
            first = %batch.first,
            last = %batch.last,
            changes = batch.changes.len(),
            key = %super::idempotency_key(batch),
            "batch"
        );
        Ok(())
    }
}
