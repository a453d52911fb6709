//! One source's batches to every segment that reads it: each gets a fork holding a clone of the
//! batch's token, so the source confirms a batch only once every consumer delivered it.
//! Consumers are removed between batches, on command.

use tokio::sync::{mpsc, oneshot};

use super::error::RunError;
use super::plan::Consumers;
use super::registry::Registry;

/// What the manager asks of a fan-out.
#[derive(Debug)]
pub(crate) enum FanOutCommand {
    /// Stop feeding the consumer with this key (its input closes once drained), then reply.
    Remove(String, oneshot::Sender<()>),
}

/// Forwards until the source's output closes (the source stopped).
pub(crate) async fn fan_out(
    source: String,
    mut input: surefoot_core_model::BatchReceiver,
    mut consumers: Consumers,
    mut commands: mpsc::Receiver<FanOutCommand>,
    registry: Registry,
) -> Result<(), RunError> {
    let mut commands_open = true;
    loop {
        let batch = tokio::select! {
            biased;
            command = commands.recv(), if commands_open => {
                match command {
                    Some(FanOutCommand::Remove(key, reply)) => {
                        consumers.retain(|(consumer, _)| *consumer != key);
                        // The asker may have given up waiting; the consumer is removed.
                        let _unasked = reply.send(());
                    }
                    None => commands_open = false,
                }
                continue;
            }
            batch = input.recv() => batch,
        };
        let Some(batch) = batch else {
            return Ok(());
        };
        registry.progress(&source);
        let mut open = Vec::with_capacity(consumers.len());
        for (key, consumer) in consumers.drain(..) {
            // A consumer that is gone drops its fork: the token is abandoned, so the source
            // does not confirm the batch and delivers it again after a restart.
            if consumer.send(batch.fork()).await.is_ok() {
                open.push((key, consumer));
            } else {
                tracing::warn!(%source, consumer = %key, "a consumer of the source has stopped");
            }
        }
        consumers = open;
        batch.ack.delivered();
    }
}
