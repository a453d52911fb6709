//! The supervised event processor behind [`EventBus::spawn_processor`](crate::EventBus).

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

use super::Supervisor;
use super::config::RestartPolicy;
use crate::events::{LifecycleEvent, Subscription};
use crate::task_group::{SpawnError, TaskError};

/// The subscription, parked here between instances of the processor task.
type Slot = Arc<Mutex<Option<Subscription>>>;

pub(crate) fn spawn_processor<H, Fut, E>(
    supervisor: &Supervisor,
    name: String,
    subscription: Subscription,
    handler: H,
) -> Result<(), SpawnError>
where
    H: Fn(LifecycleEvent) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<TaskError> + 'static,
{
    let slot: Slot = Arc::new(Mutex::new(Some(subscription)));
    let handler = Arc::new(handler);
    supervisor.spawn(
        name,
        RestartPolicy::OnFailure,
        move |cancel: CancellationToken| {
            let handler = handler.clone();
            let mut lease = Lease::take(&slot);
            async move {
                let Some(subscription) = lease.subscription.as_mut() else {
                    return Ok::<(), E>(());
                };
                loop {
                    let event = tokio::select! {
                        biased;
                        () = cancel.cancelled() => return Ok(()),
                        event = subscription.recv() => event,
                    };
                    match event {
                        Some(event) => handler(event).await?,
                        None => return Ok(()),
                    }
                }
            }
        },
    )
}

/// Holds the subscription for one instance and puts it back when the instance ends, however
/// it ends (return, error, panic, abort), so the next instance continues where it stopped.
struct Lease {
    slot: Slot,
    subscription: Option<Subscription>,
}

impl Lease {
    fn take(slot: &Slot) -> Self {
        let subscription = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
        Self {
            slot: slot.clone(),
            subscription,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = self.subscription.take();
        }
    }
}
