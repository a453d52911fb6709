//! Starting and stopping a component.

use std::sync::Arc;
use std::time::Duration;

use super::{Component, Service, StartError, StopError};
use crate::status::Status;
use crate::supervisor::{SharedError, Supervisor};
use crate::task_group::StopReport;

impl<S: Service> Component<S> {
    /// Starts the component: `Stopped`/`Failed` → `Starting` → `Running`.
    ///
    /// Fails at once with [`StartError::Transition`] if the status is anything else (so of N
    /// concurrent starts exactly one proceeds). Coming from `Failed`, whatever the failed run
    /// still holds is stopped first (within the configured shutdown timeout). If the service's
    /// start fails, its supervisor is stopped and the component is `Failed`, holding nothing.
    ///
    /// Cancel safety: if the future is dropped before it completes, the new supervisor's tasks
    /// are cancelled and the component goes `Failed` (a later start or stop cleans up).
    pub async fn start(&self) -> Result<(), StartError> {
        let component = self.inner.name.clone();
        self.transition(&[Status::Stopped, Status::Failed], Status::Starting)
            .map_err(|source| StartError::Transition {
                component: component.clone(),
                source,
            })?;
        let mut guard = Interrupted::new(self);
        let leftover = self.slot().take();
        if let Some(leftover) = leftover {
            let report = leftover.stop(self.shutdown_timeout()).await;
            log_report(&component, "failed run cleaned up", &report);
        }
        let supervisor = Supervisor::for_component(
            component.clone(),
            self.inner.config.clone(),
            self.inner.status.clone(),
            self.inner.health.clone(),
        );
        *self.slot() = Some(supervisor.clone());
        let started = self.inner.service.start(&supervisor).await;
        match started {
            Ok(()) => {
                guard.disarm();
                self.finish_start(&supervisor)
            }
            Err(error) => {
                let source: SharedError = Arc::from(error);
                self.inner.health.set_failure(source.clone());
                let report = supervisor.stop(self.shutdown_timeout()).await;
                log_report(&component, "start failed", &report);
                // Cleared only if it is still ours: nothing else writes the slot while the
                // status is `Starting`.
                *self.slot() = None;
                self.fail_start();
                guard.disarm();
                Err(StartError::Service { component, source })
            }
        }
    }

    fn finish_start(&self, supervisor: &Supervisor) -> Result<(), StartError> {
        match self.transition(&[Status::Starting], Status::Running) {
            Ok(_) => {
                self.inner.health.clear_failure();
                self.inner.health.progress();
                Ok(())
            }
            Err(_) => match supervisor.escalation() {
                Some(source) => Err(StartError::GaveUp {
                    component: self.inner.name.clone(),
                    source,
                }),
                // Only an escalation moves a `Starting` component away from under us.
                None => Ok(()),
            },
        }
    }

    fn fail_start(&self) {
        if let Err(refused) = self.transition(&[Status::Starting], Status::Failed) {
            // Already `Failed` by an escalation during start: same outcome.
            tracing::debug!(%refused, "start failure left status as is");
        }
    }

    /// Stops the component: `Running`/`Failed` → `Stopping` → `Stopped`, and returns the stop
    /// report of its supervisor (see [`Supervisor::stop`]): what was aborted at `deadline`, and
    /// every failure, including errors returned while stopping (FINDINGS D-8a).
    ///
    /// Fails at once with [`StopError`] if the status is anything else (so of N concurrent
    /// stops exactly one proceeds, and a stop racing a start either waits its turn as an error
    /// or finds the component `Running`).
    ///
    /// Cancel safety: if the future is dropped before it completes, the supervisor's tasks are
    /// all cancelled and the component goes `Failed`; a later start or stop finishes the job.
    pub async fn stop(&self, deadline: Duration) -> Result<StopReport, StopError> {
        self.transition(&[Status::Running, Status::Failed], Status::Stopping)
            .map_err(|source| StopError {
                component: self.inner.name.clone(),
                source,
            })?;
        let mut guard = Interrupted::new(self);
        let supervisor = self.slot().clone();
        let report = match supervisor {
            Some(supervisor) => supervisor.stop(deadline).await,
            None => StopReport::default(),
        };
        guard.disarm();
        *self.slot() = None;
        if let Err(refused) = self.transition(&[Status::Stopping], Status::Stopped) {
            // Nothing else leaves `Stopping`; logged in case that ever changes.
            tracing::error!(%refused, "stop could not mark the component stopped");
        }
        log_report(&self.inner.name, "stopped", &report);
        Ok(report)
    }
}

fn log_report(component: &str, what: &str, report: &StopReport) {
    if report.is_clean() {
        tracing::info!(component, "{what}");
    } else {
        for failure in &report.failed {
            tracing::warn!(component, task = %failure.name, panicked = failure.panicked, reason = %failure.reason, "{what}: task failed");
        }
        tracing::warn!(component, aborted = ?report.aborted, "{what}");
    }
}

/// Marks the component `Failed` and cancels its supervisor if a start or stop future is
/// dropped before it completes.
struct Interrupted<'a, S: Service> {
    component: &'a Component<S>,
    armed: bool,
}

impl<'a, S: Service> Interrupted<'a, S> {
    fn new(component: &'a Component<S>) -> Self {
        Self {
            component,
            armed: true,
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl<S: Service> Drop for Interrupted<'_, S> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(supervisor) = self.component.slot().clone() {
            supervisor.cancellation_token().cancel();
        }
        let from = &[Status::Starting, Status::Stopping];
        if let Err(refused) = self.component.transition(from, Status::Failed) {
            tracing::debug!(%refused, "interrupted lifecycle call left status as is");
        }
    }
}
