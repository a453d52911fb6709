//! The reaction runtime: a subscription, a dispatcher and keyed workers that apply a
//! [`Reaction`] to every batch, retry failures, dead-letter what keeps failing and settle each
//! token only after the effect is done.
//!
//! - **Start** subscribes first (a stopping upstream is a typed error and nothing is started),
//!   then starts the dispatcher and `concurrency` workers in one [`TaskGroup`].
//! - **Keys**: the dispatcher sends every item to the worker `key(batch) % concurrency`; a
//!   worker handles one item at a time, so two items with the same key are never processed at
//!   once, and items with the same key are processed in queue order. The default key is the
//!   source, which keeps each source's position order through the runtime.
//! - **Stop** (D-C2): closes intake and removes the subscription from the upstream at once,
//!   lets the workers drain what is queued until the deadline, then cancels: the item in
//!   progress is dropped and it and everything still queued is settled as failed, i.e. left
//!   unacknowledged for redelivery. The group then holds zero tasks.
//! - **Never past an unsettled item** (X-3): a worker moves to the next item of its lane only
//!   once the current one is settled delivered (applied, or dead-lettered). An item whose
//!   attempts all fail with retryable errors (a timeout: its effect may still land; a
//!   transient failure: the target is down) or whose dead letter cannot be written holds the
//!   lane and is tried again with backoff; see `runtime::hold` and [`ReactionRuntime::health`].
//!   Per-source order into a position-idempotent consumer needs the default key (the source):
//!   a key that splits one source over several workers lets them commit out of order.

mod config;
pub(crate) mod deliver;
mod dispatch;
mod error;
pub(crate) mod hold;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use surefoot_core_lifecycle::{CancellationToken, Status, StatusMachine, TaskGroup};
use surefoot_core_model::{Batch, Reaction};
use tokio::sync::mpsc;

pub use config::{DEFAULT_ATTEMPT_TIMEOUT, RuntimeConfig};
pub use dispatch::KeyFn;
pub use error::{AttemptError, RuntimeError};
pub use hold::HeldLane;

use crate::dead_letter::DeadLetterSink;
use crate::metrics::QueueMetrics;
use crate::upstream::{Fanout, Subscription};
use deliver::Deliverer;
use dispatch::Dispatcher;

/// How long stopped tasks get to notice cancellation before they are aborted.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// A runtime's health: its status, and the lanes held at an item that is not settled
/// delivered.
#[derive(Debug, Clone)]
pub struct RuntimeHealth {
    /// The status.
    pub status: Status,
    /// Lanes held now, oldest first.
    pub held: Vec<HeldLane>,
}

impl RuntimeHealth {
    /// Running, with no lane held.
    pub fn is_healthy(&self) -> bool {
        self.status == Status::Running && self.held.is_empty()
    }
}

/// What a stop did.
#[derive(Debug, Default)]
pub struct StopSummary {
    /// True when everything queued was delivered before the deadline.
    pub drained: bool,
    /// Tasks aborted after the grace period (should be empty).
    pub aborted: Vec<String>,
    /// Tasks that had failed (an upstream that closed, say), with why.
    pub failed: Vec<String>,
}

struct Running {
    group: TaskGroup,
    subscription: Arc<Subscription>,
    draining: CancellationToken,
    done: mpsc::Receiver<()>,
}

/// Runs one reaction. See the module docs.
pub struct ReactionRuntime {
    config: RuntimeConfig,
    deliverer: Arc<Deliverer>,
    key: KeyFn,
    status: StatusMachine,
    running: Mutex<Option<Running>>,
}

impl std::fmt::Debug for ReactionRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReactionRuntime")
            .field("name", &self.deliverer.name)
            .field("status", &self.status.current())
            .finish_non_exhaustive()
    }
}

/// The default key: the batch's source.
pub fn key_by_source(batch: &Batch) -> u64 {
    let mut hasher = DefaultHasher::new();
    batch.source.hash(&mut hasher);
    hasher.finish()
}

impl ReactionRuntime {
    /// A stopped runtime for `reaction`, dead-lettering into `dead_letters`.
    pub fn new(
        config: RuntimeConfig,
        reaction: Arc<dyn Reaction>,
        dead_letters: Arc<dyn DeadLetterSink>,
        metrics: QueueMetrics,
    ) -> Self {
        let deliverer = Deliverer {
            name: config.queue.name.clone(),
            operation: format!("reaction `{}`", config.queue.name).into(),
            reaction,
            dead_letters,
            retry: config.retry,
            attempt_timeout: config.attempt_timeout,
            dead_letter_timeout: config.dead_letter_timeout,
            metrics,
            holds: hold::Holds::default(),
        };
        Self {
            config,
            deliverer: Arc::new(deliverer),
            key: Arc::new(key_by_source),
            status: StatusMachine::new(Status::Stopped),
            running: Mutex::new(None),
        }
    }

    /// Uses `key` to assign items to workers.
    pub fn with_key(mut self, key: impl Fn(&Batch) -> u64 + Send + Sync + 'static) -> Self {
        self.key = Arc::new(key);
        self
    }

    /// The reaction's name.
    pub fn name(&self) -> &str {
        &self.deliverer.name
    }

    /// The status now.
    pub fn status(&self) -> Status {
        self.status.current()
    }

    /// The status and the lanes held now: a lane that holds an item it cannot settle
    /// delivered makes the runtime unhealthy while it lasts.
    pub fn health(&self) -> RuntimeHealth {
        RuntimeHealth {
            status: self.status.current(),
            held: self.deliverer.holds.held(),
        }
    }

    /// The status machine, to wait for changes.
    pub fn status_machine(&self) -> &StatusMachine {
        &self.status
    }

    /// The metrics.
    pub fn metrics(&self) -> &QueueMetrics {
        &self.deliverer.metrics
    }

    /// Tasks alive now.
    pub fn live_tasks(&self) -> usize {
        self.running()
            .as_ref()
            .map_or(0, |running| running.group.live_tasks())
    }

    /// Subscribes to `upstream` and starts the workers.
    ///
    /// If the upstream refuses (it is stopping), returns [`RuntimeError::Subscribe`], the
    /// status becomes `Failed` and no task is left.
    pub fn start(&self, upstream: &Fanout) -> Result<(), RuntimeError> {
        self.config.validate()?;
        self.status
            .transition_from(&[Status::Stopped, Status::Failed], Status::Starting)
            .map_err(|source| RuntimeError::Status {
                reaction: self.name().to_owned(),
                source,
            })?;
        match self.start_tasks(upstream) {
            Ok(running) => {
                *self.running() = Some(running);
                self.set_status(Status::Starting, Status::Running);
                Ok(())
            }
            Err(error) => {
                self.set_status(Status::Starting, Status::Failed);
                Err(error)
            }
        }
    }

    fn start_tasks(&self, upstream: &Fanout) -> Result<Running, RuntimeError> {
        let subscription = upstream
            .subscribe(
                self.name(),
                self.config.queue.clone(),
                self.deliverer.metrics.clone(),
            )
            .map_err(|source| RuntimeError::Subscribe {
                reaction: self.name().to_owned(),
                source,
            })?;
        let subscription = Arc::new(subscription);
        let group = TaskGroup::new(format!("reaction/{}", self.name()));
        let (done_tx, done) = mpsc::channel::<()>(1);
        let draining = CancellationToken::new();
        let mut lanes = Vec::with_capacity(self.config.concurrency);
        let spawned = (|| {
            for index in 0..self.config.concurrency {
                let (lane_tx, lane_rx) = mpsc::channel(self.config.lane_capacity);
                lanes.push(lane_tx);
                let deliverer = Arc::clone(&self.deliverer);
                let done = done_tx.clone();
                group.spawn(format!("worker-{index}"), move |cancel| async move {
                    let _done = done;
                    dispatch::work(lane_rx, deliverer, cancel).await
                })?;
            }
            let dispatcher = Dispatcher {
                name: self.name().to_owned(),
                subscription: Arc::clone(&subscription),
                lanes: std::mem::take(&mut lanes),
                key: Arc::clone(&self.key),
                draining: draining.clone(),
                status: self.status.clone(),
                deliverer: Arc::clone(&self.deliverer),
            };
            let done = done_tx;
            group.spawn("dispatcher", move |cancel| async move {
                let _done = done;
                dispatcher.run(cancel).await
            })
        })();
        if let Err(source) = spawned {
            subscription.close();
            // Cancels whatever did start; those tasks end at once (their lanes are empty).
            group.cancellation_token().cancel();
            return Err(RuntimeError::Spawn {
                reaction: self.name().to_owned(),
                source,
            });
        }
        Ok(Running {
            group,
            subscription,
            draining,
            done,
        })
    }

    /// Stops intake (the subscription is removed from the upstream at once), delivers what is
    /// queued until `deadline`, then leaves the rest unacknowledged and ends every task.
    ///
    /// A stopped runtime returns at once. Cancel safety: if the future is dropped, the tasks
    /// are cancelled when the runtime is dropped; call it to completion.
    pub async fn stop(&self, deadline: Duration) -> StopSummary {
        if self
            .status
            .transition_from(&[Status::Running, Status::Failed], Status::Stopping)
            .is_err()
        {
            return StopSummary {
                drained: true,
                ..StopSummary::default()
            };
        }
        let Some(mut running) = self.running().take() else {
            self.set_status(Status::Stopping, Status::Stopped);
            return StopSummary {
                drained: true,
                ..StopSummary::default()
            };
        };
        running.draining.cancel();
        running.subscription.close();
        drop(running.subscription);
        let drained =
            surefoot_core_lifecycle::timeout("reaction drain", deadline, running.done.recv())
                .await
                .is_ok();
        if !drained {
            tracing::warn!(reaction = %self.name(), ?deadline, "drain deadline reached; what is left stays unacknowledged for redelivery");
        }
        let report = running.group.stop(CANCEL_GRACE).await;
        self.set_status(Status::Stopping, Status::Stopped);
        StopSummary {
            drained,
            aborted: report.aborted,
            failed: report
                .failed
                .into_iter()
                .map(|failure| format!("{}: {}", failure.name, failure.reason))
                .collect(),
        }
    }

    fn set_status(&self, from: Status, to: Status) {
        if let Err(error) = self.status.transition(from, to) {
            tracing::debug!(reaction = %self.name(), %error, "status changed meanwhile");
        }
    }

    fn running(&self) -> MutexGuard<'_, Option<Running>> {
        // Holds an Option only; a panic cannot leave it half-updated.
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
