//! Nested supervisors: a supervisor run as a task of another.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Supervisor;
use super::config::{RestartPolicy, SupervisorConfig};
use super::exit::IntensityExceeded;
use super::shared::Shared;
use crate::error_class::{Classify, ErrorClass};
use crate::task_group::SpawnError;

/// How a nested supervisor's task ended badly, as its parent sees it.
#[derive(Debug, thiserror::Error)]
pub enum NestedError {
    /// Its init function could not spawn its tasks.
    #[error("nested supervisor could not start its tasks")]
    Init(#[source] SpawnError),
    /// It exceeded its restart intensity and gave up.
    #[error("nested supervisor gave up")]
    GaveUp(#[source] IntensityExceeded),
}

impl Classify for NestedError {
    /// Both are [`ErrorClass::Transient`] from the parent's point of view: a fresh instance
    /// of the nested supervisor may well succeed, within the parent's own intensity.
    fn class(&self) -> ErrorClass {
        ErrorClass::Transient
    }
}

impl Supervisor {
    /// Runs a nested supervisor named `name` as a task of this one.
    ///
    /// For each instance, a new supervisor named `parent/name` is built with `config` (this
    /// supervisor's metrics and event bus unless `config` sets its own) and `init` spawns its
    /// tasks. If it gives up, it is stopped (within `config`'s shutdown timeout) and this
    /// supervisor sees the task fail with [`NestedError::GaveUp`]: per `policy` it is
    /// restarted, and the restart counts toward this supervisor's intensity, which escalates
    /// further up in turn. When this supervisor stops, the nested one stops its tasks in
    /// reverse order within the same deadline; its report is merged into this one's, names
    /// prefixed with `name/`.
    pub fn spawn_supervisor<I>(
        &self,
        name: impl Into<String>,
        policy: RestartPolicy,
        config: SupervisorConfig,
        mut init: I,
    ) -> Result<(), SpawnError>
    where
        I: FnMut(&Supervisor) -> Result<(), SpawnError> + Send + 'static,
    {
        let name = name.into();
        let id = self.shared.next_id();
        let parent = Arc::downgrade(&self.shared);
        let parent_token = self.shared.cancel.clone();
        let full_name: Arc<str> = format!("{}/{}", self.shared.name, name).into();
        let prefix: Arc<str> = name.as_str().into();
        let mut config = config;
        config.metrics = config.metrics.or_else(|| Some(self.shared.metrics.clone()));
        config.events = config.events.or_else(|| Some(self.shared.events.clone()));
        self.spawn_with_id(id, name, policy, move |cancel: CancellationToken| {
            // The nested token hangs off the parent's own token, not this task's: the parent's
            // ordered stop cancels this task's token, and the nested supervisor then stops its
            // tasks in order; cancelling the parent outright still reaches every task.
            let child = Supervisor::build(
                full_name.clone(),
                config.clone(),
                parent_token.child_token(),
                None,
            );
            if let Some(parent) = parent.upgrade() {
                parent.set_nested(id, Arc::downgrade(&child.shared));
            }
            let init = init(&child);
            let nested = Nested {
                child,
                parent: parent.clone(),
                prefix: prefix.clone(),
                timeout: config.shutdown_timeout,
            };
            async move {
                match init {
                    Ok(()) => nested.run(cancel).await,
                    Err(error) => {
                        nested.stop(None).await;
                        Err(NestedError::Init(error))
                    }
                }
            }
        })
    }
}

/// One instance of a nested supervisor, as run by its parent.
struct Nested {
    child: Supervisor,
    parent: Weak<Shared>,
    prefix: Arc<str>,
    timeout: Duration,
}

impl Nested {
    async fn run(self, cancel: CancellationToken) -> Result<(), NestedError> {
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                let until = self.parent.upgrade().and_then(|parent| parent.stop_deadline());
                self.stop(until).await;
                Ok(())
            }
            error = self.child.gave_up() => {
                self.stop(None).await;
                Err(NestedError::GaveUp(error))
            }
        }
    }

    /// Stops the nested supervisor by `until` (its own shutdown timeout if `None`) and hands
    /// its report to the parent.
    async fn stop(&self, until: Option<Instant>) {
        let limit = until.map_or(self.timeout, |until| {
            until.saturating_duration_since(Instant::now())
        });
        let report = self.child.stop(limit).await;
        if let Some(parent) = self.parent.upgrade() {
            parent.absorb(&self.prefix, report);
        }
    }
}
