//! The runtime's tasks: one dispatcher that takes items from the subscription in order and
//! routes each to the worker owning its key, and the workers.

use std::sync::Arc;

use surefoot_core_lifecycle::{CancellationToken, Status, StatusMachine};
use surefoot_core_model::Batch;
use tokio::sync::mpsc;

use super::deliver::Deliverer;
use super::error::RuntimeError;
use crate::queue::Queued;
use crate::upstream::Subscription;

/// Maps an item to its key; items with equal keys are never processed at once, and are
/// processed in queue order.
pub type KeyFn = Arc<dyn Fn(&Batch) -> u64 + Send + Sync>;

pub(crate) struct Dispatcher {
    pub(crate) name: String,
    pub(crate) subscription: Arc<Subscription>,
    pub(crate) lanes: Vec<mpsc::Sender<Queued>>,
    pub(crate) key: KeyFn,
    /// Cancelled by stop before it closes the subscription: the end of the queue is then
    /// expected, not an upstream failure.
    pub(crate) draining: CancellationToken,
    pub(crate) status: StatusMachine,
    pub(crate) deliverer: Arc<Deliverer>,
}

impl Dispatcher {
    /// Routes items until the subscription ends or `cancel` fires. An end that stop did not
    /// ask for is reported: the status becomes `Failed` and the task ends with
    /// [`RuntimeError::UpstreamClosed`] (D-2.2).
    pub(crate) async fn run(self, cancel: CancellationToken) -> Result<(), RuntimeError> {
        let receiver = self.subscription.receiver();
        loop {
            let next = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                next = receiver.recv() => next,
            };
            let Some(queued) = next else {
                return self.ended();
            };
            let lane = lane_of(&self.key, &queued.batch, self.lanes.len());
            let permit = tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    self.deliverer.unacknowledged_item(queued);
                    break;
                }
                permit = self.lanes[lane].reserve() => permit,
            };
            match permit {
                Ok(permit) => permit.send(queued),
                Err(_closed) => {
                    // A worker ended early (it was cancelled): leave the item for redelivery.
                    self.deliverer.unacknowledged_item(queued);
                    break;
                }
            }
        }
        for queued in receiver.drain() {
            self.deliverer.unacknowledged_item(queued);
        }
        Ok(())
    }

    fn ended(&self) -> Result<(), RuntimeError> {
        if self.draining.is_cancelled() {
            return Ok(());
        }
        tracing::error!(reaction = %self.name, "upstream closed the subscription while the reaction was running");
        if let Err(error) = self
            .status
            .transition_from(&[Status::Running, Status::Starting], Status::Failed)
        {
            tracing::debug!(reaction = %self.name, %error, "status already changed");
        }
        Err(RuntimeError::UpstreamClosed {
            reaction: self.name.clone(),
        })
    }
}

fn lane_of(key: &KeyFn, batch: &Batch, lanes: usize) -> usize {
    let lanes = u64::try_from(lanes).unwrap_or(u64::MAX).max(1);
    usize::try_from(key(batch) % lanes).unwrap_or(0)
}

/// A worker: delivers the items of its lane one at a time until the lane ends or `cancel`
/// fires; then leaves what is left in the lane unacknowledged.
pub(crate) async fn work(
    mut lane: mpsc::Receiver<Queued>,
    deliverer: Arc<Deliverer>,
    cancel: CancellationToken,
) -> Result<(), RuntimeError> {
    loop {
        let next = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            next = lane.recv() => next,
        };
        let Some(queued) = next else { break };
        deliverer.deliver(queued, &cancel).await;
    }
    lane.close();
    while let Ok(queued) = lane.try_recv() {
        deliverer.unacknowledged_item(queued);
    }
    Ok(())
}
