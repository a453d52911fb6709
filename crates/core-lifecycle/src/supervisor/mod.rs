//! Supervisors: named tasks with restart policies, intensity, escalation and ordered stop.
//!
//! Modelled on Erlang/OTP supervisors, in our own code:
//!
//! - every task has a unique name while it is alive, a [`RestartPolicy`] and a cancellation
//!   token (a child of the supervisor's, which is a child of its parent's);
//! - a task that panics, fails or (under [`RestartPolicy::Always`]) returns is reported as an
//!   event, a metric, a health record and a stop-report entry, then restarted after a backoff
//!   with full jitter, in the same runner, so two instances never overlap;
//! - more than `intensity` restarts within `period` and the supervisor gives up: its status
//!   goes `Failed`, health says why ([`IntensityExceeded`]), its tasks are cancelled, and a
//!   parent supervisor sees the nested one fail (and applies its own policy);
//! - [`Supervisor::stop`] stops the tasks in reverse start order, each cancelled and awaited in
//!   turn, until the deadline; then the rest are aborted and named in the [`StopReport`](crate::StopReport). When
//!   `stop` returns the supervisor holds no task.

mod blocking;
mod config;
mod exit;
mod nested;
mod processor;
mod runner;
mod shared;
mod stop;
mod timers;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use blocking::BlockingCancelled;
pub use config::{RestartPolicy, SupervisorConfig};
pub use exit::{ExitCause, IntensityExceeded, PanicError, SharedError};
pub use nested::NestedError;
pub(crate) use processor::spawn_processor;
pub use stop::StopSummary;

use self::runner::{ChildCtx, run_child};
use self::shared::Shared;
use crate::events::EventBus;
use crate::health::Health;
use crate::metrics::LifecycleMetrics;
use crate::status::Status;
use crate::status_machine::StatusMachine;
use crate::task_group::{SpawnError, TaskError};

/// A supervisor of named tasks. Cloning gives another handle to the same supervisor.
///
/// Dropping the last handle cancels the supervisor's token, so tasks that honour it end; it
/// does not wait for them (use [`Supervisor::stop`]).
#[derive(Debug, Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

impl Supervisor {
    /// A standalone supervisor, `Running` at once, with its own cancellation token.
    pub fn new(name: impl Into<Arc<str>>, config: SupervisorConfig) -> Self {
        Self::build(name.into(), config, CancellationToken::new(), None)
    }

    /// A supervisor whose status and health belong to a component, which drives the status
    /// (the supervisor itself only ever moves it to `Failed`).
    pub(crate) fn for_component(
        name: Arc<str>,
        config: SupervisorConfig,
        status: StatusMachine,
        health: Health,
    ) -> Self {
        let shared = Shared::new(
            name,
            config,
            CancellationToken::new(),
            status,
            health,
            false,
        );
        Self {
            shared: Arc::new(shared),
        }
    }

    fn build(
        name: Arc<str>,
        config: SupervisorConfig,
        cancel: CancellationToken,
        status: Option<StatusMachine>,
    ) -> Self {
        let status = status.unwrap_or_else(|| StatusMachine::new(Status::Running));
        let health = Health::new(status.subscribe(), config.stall_after);
        let shared = Shared::new(name, config, cancel, status, health, true);
        Self {
            shared: Arc::new(shared),
        }
    }

    /// The supervisor's name (`parent/child` for nested supervisors).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its status: `Running` until it gives up (`Failed`) or stops.
    pub fn status(&self) -> Status {
        self.shared.status.current()
    }

    /// A receiver of its status changes.
    pub fn subscribe_status(&self) -> watch::Receiver<Status> {
        self.shared.status.subscribe()
    }

    /// Its health record.
    pub fn health(&self) -> Health {
        self.shared.health.clone()
    }

    /// The bus its events are published on.
    pub fn events(&self) -> EventBus {
        self.shared.events.clone()
    }

    /// The metrics it records.
    pub fn metrics(&self) -> LifecycleMetrics {
        self.shared.metrics.clone()
    }

    /// The token cancelled when the supervisor stops or gives up; tasks get child tokens of it.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.shared.cancel.clone()
    }

    /// Number of live tasks (a task being restarted counts as live).
    pub fn live_tasks(&self) -> usize {
        self.shared.live_count()
    }

    /// Names of the live tasks, sorted.
    pub fn live_task_names(&self) -> Vec<String> {
        self.shared.live_names()
    }

    /// Cancels the task named `name` (it ends at its next cancellation check and is not
    /// restarted); false if no such task is alive. Timers are stopped this way.
    pub fn cancel_task(&self, name: &str) -> bool {
        self.shared.cancel_child(name)
    }

    /// Why the supervisor gave up, if it did.
    pub fn escalation(&self) -> Option<IntensityExceeded> {
        self.shared.escalation()
    }

    /// Waits until the supervisor gives up and returns why.
    ///
    /// Cancel-safe. Never completes for a supervisor that does not give up.
    pub async fn gave_up(&self) -> IntensityExceeded {
        // An escalation is recorded before the status changes and before the token is
        // cancelled, so checking after either event cannot miss it.
        let mut status = self.shared.status.subscribe();
        loop {
            if let Some(error) = self.shared.escalation() {
                return error;
            }
            tokio::select! {
                changed = status.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = self.shared.cancel.cancelled() => break,
            }
        }
        match self.shared.escalation() {
            Some(error) => error,
            // Stopped or dropped without giving up: it never will.
            None => std::future::pending().await,
        }
    }

    /// Spawns a task named `name`, restarted per `policy`.
    ///
    /// `factory` is called for each instance with the task's cancellation token; the instance
    /// should return promptly once the token is cancelled, after finishing the unit of work in
    /// hand. Fails if a task with this name is alive (a name is taken from spawn until the task
    /// ends for good, restarts included) or the supervisor is stopping or has given up.
    ///
    /// Must be called from within a tokio runtime (it panics otherwise, as `tokio::spawn`
    /// does).
    pub fn spawn<F, Fut, E>(
        &self,
        name: impl Into<String>,
        policy: RestartPolicy,
        factory: F,
    ) -> Result<(), SpawnError>
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<TaskError> + 'static,
    {
        let id = self.shared.next_id();
        self.spawn_with_id(id, name.into(), policy, factory)
    }

    fn spawn_with_id<F, Fut, E>(
        &self,
        id: u64,
        name: String,
        policy: RestartPolicy,
        factory: F,
    ) -> Result<(), SpawnError>
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<TaskError> + 'static,
    {
        let name: Arc<str> = name.into();
        let shared = &self.shared;
        shared.register(id, name.clone(), |tokens| {
            let span = tracing::info_span!("task", supervisor = %shared.name, task = %name);
            let ctx = ChildCtx::new(shared, name, policy, tokens);
            let runner = run_child(ctx, factory).instrument(span);
            shared.tracker.spawn(runner).abort_handle()
        })
    }
}
