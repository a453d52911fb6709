//! The state a supervisor shares with its tasks' runners.
//!
//! Lock order (FINDINGS D-6.1): `Shared::state` is the supervisor's only lock. It is held for
//! plain bookkeeping only: never across an `.await`, never while publishing an event, recording
//! health, changing status or touching another supervisor's state (a nested supervisor's state
//! is visited only after this one's guard is dropped). Tokio's spawn is the one call made under
//! it, so that a task cannot end before its entry exists.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::SupervisorConfig;
use super::exit::{ExitCause, IntensityExceeded, chain_to_string};
use crate::events::{EventBus, EventKind, supervisor_attrs};
use crate::health::Health;
use crate::metrics::LifecycleMetrics;
use crate::status::Status;
use crate::status_machine::StatusMachine;
use crate::task_group::{SpawnError, StopReport, TaskFailure};

/// Failures kept for the next stop report; beyond this they are counted in logs only.
const MAX_RECORDED_FAILURES: usize = 1024;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) config: SupervisorConfig,
    pub(crate) metrics: LifecycleMetrics,
    pub(crate) events: EventBus,
    pub(crate) cancel: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) status: StatusMachine,
    pub(crate) health: Health,
    /// True when this supervisor moves its own status on stop (standalone and nested ones);
    /// false when a [`Component`](crate::Component) does.
    pub(crate) owns_status: bool,
    next_id: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Live tasks, in start order.
    children: Vec<Child>,
    /// Restart times within the current period.
    restarts: VecDeque<Instant>,
    failures: Vec<TaskFailure>,
    aborted: Vec<String>,
    closed: bool,
    stop_deadline: Option<Instant>,
    escalation: Option<IntensityExceeded>,
}

#[derive(Debug)]
struct Child {
    id: u64,
    name: Arc<str>,
    cancel: CancellationToken,
    done: CancellationToken,
    abort: AbortHandle,
    nested: Option<Weak<Shared>>,
}

/// What the stop of one child waits on.
#[derive(Debug)]
pub(crate) struct Stopping {
    pub(crate) cancel: CancellationToken,
    pub(crate) done: CancellationToken,
}

/// The tokens a new child's runner gets.
#[derive(Debug)]
pub(crate) struct ChildTokens {
    pub(crate) id: u64,
    pub(crate) cancel: CancellationToken,
    pub(crate) done: CancellationToken,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Shared {
    pub(crate) fn new(
        name: Arc<str>,
        config: SupervisorConfig,
        cancel: CancellationToken,
        status: StatusMachine,
        health: Health,
        owns_status: bool,
    ) -> Self {
        let config = config.resolved();
        Self {
            name,
            metrics: config.metrics(),
            events: config.events(),
            config,
            cancel,
            tracker: TaskTracker::new(),
            status,
            health,
            owns_status,
            next_id: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a child named `name` and starts its runner with `start`, atomically with the
    /// name and closed checks.
    pub(crate) fn register(
        &self,
        id: u64,
        name: Arc<str>,
        start: impl FnOnce(ChildTokens) -> AbortHandle,
    ) -> Result<(), SpawnError> {
        let mut state = self.lock();
        let refuse = |name: &str| (self.name.to_string(), name.to_owned());
        if state.closed || self.cancel.is_cancelled() {
            let (group, name) = refuse(&name);
            return Err(SpawnError::Closed { group, name });
        }
        if state.children.iter().any(|child| child.name == name) {
            let (group, name) = refuse(&name);
            return Err(SpawnError::NameTaken { group, name });
        }
        let cancel = self.cancel.child_token();
        let done = CancellationToken::new();
        let abort = start(ChildTokens {
            id,
            cancel: cancel.clone(),
            done: done.clone(),
        });
        state.children.push(Child {
            id,
            name,
            cancel,
            done,
            abort,
            nested: None,
        });
        Ok(())
    }

    pub(crate) fn remove(&self, id: u64) {
        self.lock().children.retain(|child| child.id != id);
    }

    pub(crate) fn set_nested(&self, id: u64, nested: Weak<Shared>) {
        if let Some(child) = self.lock().children.iter_mut().find(|c| c.id == id) {
            child.nested = Some(nested);
        }
    }

    pub(crate) fn live_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .lock()
            .children
            .iter()
            .map(|c| c.name.to_string())
            .collect();
        names.sort();
        names
    }

    pub(crate) fn live_count(&self) -> usize {
        self.lock().children.len()
    }

    /// Cancels one child's token; true if it was alive.
    pub(crate) fn cancel_child(&self, name: &str) -> bool {
        let token = self
            .lock()
            .children
            .iter()
            .find(|child| &*child.name == name)
            .map(|child| child.cancel.clone());
        token.map(|token| token.cancel()).is_some()
    }

    /// Counts a restart; false when it would exceed the intensity.
    pub(crate) fn note_restart(&self) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        while let Some(&oldest) = state.restarts.front() {
            if now.saturating_duration_since(oldest) >= self.config.period {
                state.restarts.pop_front();
            } else {
                break;
            }
        }
        if state.restarts.len() >= self.config.intensity as usize {
            return false;
        }
        state.restarts.push_back(now);
        true
    }

    pub(crate) fn record_failure(&self, task: &str, cause: &ExitCause) {
        let failure = TaskFailure {
            name: task.to_owned(),
            reason: chain_to_string(cause),
            panicked: cause.is_panic(),
        };
        let mut state = self.lock();
        if state.failures.len() < MAX_RECORDED_FAILURES {
            state.failures.push(failure);
        } else {
            tracing::warn!(supervisor = %self.name, task, "failure list full; not kept for the stop report");
        }
    }

    /// Gives up: records why, moves the status to `Failed`, tells health and the event bus,
    /// and cancels every task. Only the first escalation counts.
    pub(crate) fn escalate(&self, task: &Arc<str>, last: ExitCause) {
        let error = IntensityExceeded {
            supervisor: self.name.clone(),
            task: task.clone(),
            intensity: self.config.intensity,
            period: self.config.period,
            last,
        };
        {
            let mut state = self.lock();
            if state.escalation.is_some() {
                return;
            }
            state.escalation = Some(error.clone());
        }
        tracing::error!(supervisor = %self.name, error = %chain_to_string(&error), "supervisor gave up");
        let error = Arc::new(error);
        self.health.set_failure(error.clone());
        match self
            .status
            .transition_from(&[Status::Starting, Status::Running], Status::Failed)
        {
            Ok(from) => self.emit_status(from, Status::Failed),
            // A stop already in progress owns the status; it will still report the failure.
            Err(refused) => tracing::debug!(%refused, "escalation left status to the stop"),
        }
        self.metrics
            .escalations
            .add(1, &supervisor_attrs(&self.name));
        self.events
            .emit(&self.name, None, EventKind::Escalated { error });
        self.cancel.cancel();
    }

    pub(crate) fn emit_status(&self, from: Status, to: Status) {
        self.events
            .emit(&self.name, None, EventKind::StatusChanged { from, to });
    }

    pub(crate) fn escalation(&self) -> Option<IntensityExceeded> {
        self.lock().escalation.clone()
    }

    pub(crate) fn stop_deadline(&self) -> Option<Instant> {
        self.lock().stop_deadline
    }

    /// Closes the supervisor and lists its children in reverse start order.
    pub(crate) fn begin_stop(&self, until: Instant) -> Vec<Stopping> {
        let mut state = self.lock();
        state.closed = true;
        state.stop_deadline.get_or_insert(until);
        state
            .children
            .iter()
            .rev()
            .map(|child| Stopping {
                cancel: child.cancel.clone(),
                done: child.done.clone(),
            })
            .collect()
    }

    /// Aborts every live task, nested supervisors' included, and returns their trackers to
    /// wait on. Names are recorded for the stop report, relative to this supervisor.
    pub(crate) fn abort_all(&self) -> Vec<TaskTracker> {
        let children = std::mem::take(&mut self.lock().children);
        let mut trackers = vec![self.tracker.clone()];
        let mut aborted = Vec::new();
        for child in children {
            child.cancel.cancel();
            child.abort.abort();
            tracing::warn!(supervisor = %self.name, task = %child.name, "task did not stop before the deadline; aborted");
            self.metrics
                .aborted
                .add(1, &super::runner::task_attrs(&self.name, &child.name));
            self.events
                .emit(&self.name, Some(&child.name), EventKind::TaskAborted);
            aborted.push(child.name.to_string());
            if let Some(nested) = child.nested.and_then(|nested| nested.upgrade()) {
                trackers.extend(nested.abort_all());
                self.absorb(&child.name, nested.take_report());
            }
        }
        self.lock().aborted.extend(aborted);
        trackers
    }

    /// Adds a nested supervisor's report to this one's, names prefixed with `prefix/`.
    pub(crate) fn absorb(&self, prefix: &str, report: StopReport) {
        let mut state = self.lock();
        state.aborted.extend(
            report
                .aborted
                .into_iter()
                .map(|name| format!("{prefix}/{name}")),
        );
        state
            .failures
            .extend(report.failed.into_iter().map(|mut failure| {
                failure.name = format!("{prefix}/{}", failure.name);
                failure
            }));
    }

    pub(crate) fn take_report(&self) -> StopReport {
        let mut state = self.lock();
        let mut aborted = std::mem::take(&mut state.aborted);
        aborted.sort();
        StopReport {
            aborted,
            failed: std::mem::take(&mut state.failures),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the bookkeeping consistent, so a panic elsewhere while the lock
        // was held cannot have broken it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
