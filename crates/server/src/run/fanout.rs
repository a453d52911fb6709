//! One source's batches to every segment that reads it: each gets a fork holding a clone of the
//! batch's token, so the source confirms a batch only once every consumer delivered it.

use surefoot_core_model::{BatchReceiver, BatchSender};

use super::error::RunError;
use super::registry::Registry;

/// Forwards until the source's output closes (the source stopped).
pub(crate) async fn fan_out(
    source: String,
    mut input: BatchReceiver,
    mut consumers: Vec<BatchSender>,
    registry: Registry,
) -> Result<(), RunError> {
    while let Some(batch) = input.recv().await {
        registry.progress(&source);
        let mut open = Vec::with_capacity(consumers.len());
        for consumer in consumers.drain(..) {
            // A consumer that is gone drops its fork: the token is abandoned, so the source
            // does not confirm the batch and delivers it again after a restart.
            if consumer.send(batch.fork()).await.is_ok() {
                open.push(consumer);
            } else {
                tracing::warn!(%source, "a consumer of the source has stopped");
            }
        }
        consumers = open;
        batch.ack.delivered();
    }
    Ok(())
}
