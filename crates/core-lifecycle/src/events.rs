//! The event bus: what happened to supervised tasks and components.
//!
//! Publishing never waits, so a slow or blocked subscriber cannot hold up a supervisor or a
//! shutdown (FINDINGS D-7.2). A subscriber that falls behind by more than the bus capacity is
//! not skipped silently: its next [`Subscription::recv`] returns an [`EventKind::Missed`] event
//! with the number of events it lost, and `surefoot.events.missed` counts them (FINDINGS D-M2's
//! lesson applied to lifecycle events). Run a processor with [`EventBus::spawn_processor`]: it
//! is a supervised, cancellable task like any other (FINDINGS D-C1, D-7.2).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::metrics::LifecycleMetrics;
use crate::status::Status;
use crate::supervisor::{ExitCause, IntensityExceeded, StopSummary};

/// Something that happened to a supervisor, one of its tasks or a component.
#[derive(Debug, Clone)]
pub struct LifecycleEvent {
    /// The supervisor or component it happened in.
    pub source: Arc<str>,
    /// The task, for task events.
    pub task: Option<Arc<str>>,
    /// When it happened.
    pub at: Instant,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EventKind {
    /// An instance of a task started (`instance` counts from 0 for the first run).
    TaskStarted {
        /// How many instances ran before this one.
        instance: u32,
    },
    /// An instance of a task ended.
    TaskExited {
        /// How it ended.
        cause: ExitCause,
        /// Whether it will be restarted.
        restarting: bool,
    },
    /// A task will be restarted after `delay`.
    TaskRestarting {
        /// Restarts of this task so far, this one included.
        restart: u32,
        /// The backoff before the restart.
        delay: Duration,
    },
    /// A task did not stop before the deadline and was aborted.
    TaskAborted,
    /// The supervisor exceeded its restart intensity; its component is `Failed`.
    Escalated {
        /// Why.
        error: Arc<IntensityExceeded>,
    },
    /// A component's status changed.
    StatusChanged {
        /// The status it left.
        from: Status,
        /// The status it entered.
        to: Status,
    },
    /// A stop finished.
    Stopped {
        /// What it did.
        summary: StopSummary,
    },
    /// This subscriber fell behind and missed `count` events.
    Missed {
        /// Events lost to this subscriber.
        count: u64,
    },
}

/// A broadcast bus of [`LifecycleEvent`]s. Cloning gives another handle to the same bus.
///
/// When every handle is dropped, subscribers read what is left for them and then get `None`.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<LifecycleEvent>,
    metrics: LifecycleMetrics,
}

impl EventBus {
    /// A bus that keeps up to `capacity` events for each subscriber (at least 1).
    pub fn new(capacity: usize, metrics: LifecycleMetrics) -> Self {
        let (tx, _rx) = broadcast::channel(capacity.max(1));
        Self { tx, metrics }
    }

    /// Publishes `event` to every current subscriber. Never waits; with no subscriber the event
    /// goes nowhere (events are observations, not data: nobody is owed them).
    pub fn publish(&self, event: LifecycleEvent) {
        // An error only means there is no subscriber right now, which is fine (see above).
        let _no_subscriber = self.tx.send(event);
    }

    pub(crate) fn emit(&self, source: &Arc<str>, task: Option<&Arc<str>>, kind: EventKind) {
        self.publish(LifecycleEvent {
            source: source.clone(),
            task: task.cloned(),
            at: Instant::now(),
            kind,
        });
    }

    /// A subscription to every event published from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
            metrics: self.metrics.clone(),
        }
    }

    /// Runs `handler` on every event, in a task named `name` supervised by `supervisor`
    /// (restarted if it fails or panics, within the supervisor's intensity). The subscription is
    /// made now and survives restarts of the handler task, so no event is lost between them
    /// without a [`EventKind::Missed`] event saying so.
    ///
    /// The task ends when it is cancelled, between events; a handler stuck on one event is
    /// aborted at the supervisor's stop deadline like any other task.
    pub fn spawn_processor<H, Fut, E>(
        &self,
        supervisor: &crate::Supervisor,
        name: impl Into<String>,
        handler: H,
    ) -> Result<(), crate::SpawnError>
    where
        H: Fn(LifecycleEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<crate::TaskError> + 'static,
    {
        crate::supervisor::spawn_processor(supervisor, name.into(), self.subscribe(), handler)
    }
}

/// One subscriber's view of an [`EventBus`].
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<LifecycleEvent>,
    metrics: LifecycleMetrics,
}

impl Subscription {
    /// The next event, or an [`EventKind::Missed`] event if this subscriber fell behind;
    /// `None` once every bus handle is dropped and the backlog is read.
    ///
    /// Cancel-safe: if the future is dropped before it completes, no event is consumed.
    pub async fn recv(&mut self) -> Option<LifecycleEvent> {
        match self.rx.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(count)) => {
                self.metrics.events_missed.add(count, &[]);
                tracing::warn!(missed = count, "event subscriber fell behind");
                Some(LifecycleEvent {
                    source: Arc::from("events"),
                    task: None,
                    at: Instant::now(),
                    kind: EventKind::Missed { count },
                })
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// Attributes for a supervisor-level metric.
pub(crate) fn supervisor_attrs(supervisor: &Arc<str>) -> [KeyValue; 1] {
    [KeyValue::new("supervisor", supervisor.clone())]
}
