//! One source's batches to every segment that reads it: each gets a fork holding a clone of the
//! batch's token, so the source confirms a batch only once every consumer delivered it.
//! Consumers are removed between batches, on command. After a snapshot of some of the
//! source's tables, the stream's changes that snapshot holds are dropped here (see `skip`).

use tokio::sync::{mpsc, oneshot};

use super::error::RunError;
use super::plan::Consumers;
use super::registry::Registry;
use super::skip::SkipReceiver;

/// What the manager asks of a fan-out.
#[derive(Debug)]
pub(crate) enum FanOutCommand {
    /// Stop feeding the consumer with this key (its input closes once drained), then reply.
    Remove(String, oneshot::Sender<()>),
}

/// A source's fan-out.
#[derive(Debug)]
pub(crate) struct FanOut {
    pub(crate) source: String,
    pub(crate) consumers: Consumers,
    pub(crate) commands: mpsc::Receiver<FanOutCommand>,
    /// The stream's changes to drop, set by the source's task.
    pub(crate) skips: SkipReceiver,
    pub(crate) registry: Registry,
}

impl FanOut {
    /// Forwards until the source's output closes (the source stopped).
    pub(crate) async fn run(
        mut self,
        mut input: surefoot_core_model::BatchReceiver,
    ) -> Result<(), RunError> {
        let mut commands_open = true;
        loop {
            let batch = tokio::select! {
                biased;
                command = self.commands.recv(), if commands_open => {
                    match command {
                        Some(FanOutCommand::Remove(key, reply)) => {
                            self.consumers.retain(|(consumer, _)| *consumer != key);
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
            self.registry.progress(&self.source);
            let rule = self.skips.borrow().clone();
            let batch = match rule {
                Some(rule) => match rule.apply(batch) {
                    Some(batch) => batch,
                    None => continue,
                },
                None => batch,
            };
            self.send(batch).await;
        }
    }

    /// Sends `batch` to every consumer, then settles the original.
    async fn send(&mut self, batch: surefoot_core_model::Batch) {
        let mut open = Vec::with_capacity(self.consumers.len());
        for (key, consumer) in self.consumers.drain(..) {
            // A consumer that is gone drops its fork: the token is abandoned, so the source
            // does not confirm the batch and delivers it again after a restart.
            if consumer.send(batch.fork()).await.is_ok() {
                open.push((key, consumer));
            } else {
                tracing::warn!(source = %self.source, consumer = %key, "a consumer of the source has stopped");
            }
        }
        self.consumers = open;
        batch.ack.delivered();
    }
}
