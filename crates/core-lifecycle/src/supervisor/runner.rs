//! The loop that runs one supervised task: one instance at a time, restarts per policy.
//!
//! Every instance of a task runs inside the same runner, one after the other: the next instance
//! is created only after the previous one has returned, panicked or been dropped. Two instances
//! of one task can therefore never be alive at once, and a task's name stays taken (in the
//! supervisor's registry) from its spawn until its runner ends (FINDINGS D-H1).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::FutureExt;
use opentelemetry::KeyValue;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::RestartPolicy;
use super::exit::{ExitCause, PanicError};
use super::shared::{ChildTokens, Shared};
use crate::events::{EventBus, EventKind};
use crate::metrics::LifecycleMetrics;
use crate::retry::Backoff;
use crate::task_group::TaskError;

pub(crate) fn task_attrs(supervisor: &Arc<str>, task: &Arc<str>) -> [KeyValue; 2] {
    [
        KeyValue::new("supervisor", supervisor.clone()),
        KeyValue::new("task", task.clone()),
    ]
}

/// Everything a runner needs, without keeping its supervisor alive.
#[derive(Debug)]
pub(crate) struct ChildCtx {
    shared: Weak<Shared>,
    supervisor: Arc<str>,
    name: Arc<str>,
    id: u64,
    policy: RestartPolicy,
    cancel: CancellationToken,
    done: CancellationToken,
    metrics: LifecycleMetrics,
    events: EventBus,
    backoff: Backoff,
    period: Duration,
    attrs: [KeyValue; 2],
}

impl ChildCtx {
    pub(crate) fn new(
        shared: &Arc<Shared>,
        name: Arc<str>,
        policy: RestartPolicy,
        tokens: ChildTokens,
    ) -> Self {
        Self {
            shared: Arc::downgrade(shared),
            supervisor: shared.name.clone(),
            attrs: task_attrs(&shared.name, &name),
            name,
            id: tokens.id,
            policy,
            cancel: tokens.cancel,
            done: tokens.done,
            metrics: shared.metrics.clone(),
            events: shared.events.clone(),
            backoff: shared.config.backoff,
            period: shared.config.period,
        }
    }
}

/// Runs instances of a task until it ends for good; see the module docs.
pub(crate) async fn run_child<F, Fut, E>(ctx: ChildCtx, mut factory: F)
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<TaskError>,
{
    let _exit = ExitGuard {
        shared: ctx.shared.clone(),
        id: ctx.id,
        done: ctx.done.clone(),
    };
    let mut instance: u32 = 0;
    let mut streak: u32 = 0;
    loop {
        let started = Instant::now();
        let cause = run_instance(&ctx, &mut factory, instance).await;
        let wanted = !ctx.cancel.is_cancelled() && ctx.policy.restarts_after(&cause);
        let Some(shared) = ctx.shared.upgrade() else {
            break;
        };
        let restart = wanted && shared.note_restart();
        ctx.report_exit(&shared, &cause, restart);
        if wanted && !restart {
            shared.escalate(&ctx.name, cause);
        }
        if !restart {
            break;
        }
        drop(shared);
        if started.elapsed() >= ctx.period {
            streak = 0;
        }
        let delay = ctx.backoff.delay(streak);
        streak = streak.saturating_add(1);
        instance = instance.saturating_add(1);
        ctx.emit(EventKind::TaskRestarting {
            restart: instance,
            delay,
        });
        tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
        ctx.metrics.restarted.add(1, &ctx.attrs);
    }
}

/// Runs one instance to its end and says how it ended.
async fn run_instance<F, Fut, E>(ctx: &ChildCtx, factory: &mut F, instance: u32) -> ExitCause
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<TaskError>,
{
    ctx.metrics.spawned.add(1, &ctx.attrs);
    let _active = ActiveGuard::new(ctx);
    ctx.emit(EventKind::TaskStarted { instance });
    let token = ctx.cancel.clone();
    let future = match std::panic::catch_unwind(AssertUnwindSafe(|| factory(token))) {
        Ok(future) => future,
        Err(payload) => return ExitCause::Panicked(PanicError::from_payload(&*payload)),
    };
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(Ok(())) => ExitCause::Finished,
        Ok(Err(error)) => ExitCause::from_error(error),
        Err(payload) => ExitCause::Panicked(PanicError::from_payload(&*payload)),
    }
}

impl ChildCtx {
    fn emit(&self, kind: EventKind) {
        self.events.emit(&self.supervisor, Some(&self.name), kind);
    }

    /// Metric, log, event, health and stop-report record of an instance's end.
    fn report_exit(&self, shared: &Shared, cause: &ExitCause, restarting: bool) {
        match cause {
            ExitCause::Finished => {
                self.metrics.finished.add(1, &self.attrs);
                tracing::debug!(supervisor = %self.supervisor, task = %self.name, restarting, "task returned");
            }
            ExitCause::Failed(_) | ExitCause::Panicked(_) => {
                let counter = if cause.is_panic() {
                    &self.metrics.panicked
                } else {
                    &self.metrics.failed
                };
                counter.add(1, &self.attrs);
                let error = super::exit::chain_to_string(cause);
                tracing::error!(supervisor = %self.supervisor, task = %self.name, restarting, %error, "task failed");
                shared.record_failure(&self.name, cause);
                shared.health.task_failed(&self.name, cause.clone());
            }
        }
        self.emit(EventKind::TaskExited {
            cause: cause.clone(),
            restarting,
        });
    }
}

/// Keeps `surefoot.tasks.active` right even when the instance is aborted.
struct ActiveGuard<'a> {
    metrics: &'a LifecycleMetrics,
    attrs: &'a [KeyValue; 2],
}

impl<'a> ActiveGuard<'a> {
    fn new(ctx: &'a ChildCtx) -> Self {
        ctx.metrics.active.add(1, &ctx.attrs);
        Self {
            metrics: &ctx.metrics,
            attrs: &ctx.attrs,
        }
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.metrics.active.add(-1, self.attrs);
    }
}

/// Frees the task's name and signals its end, also when the runner is aborted.
struct ExitGuard {
    shared: Weak<Shared>,
    id: u64,
    done: CancellationToken,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.remove(self.id);
        }
        self.done.cancel();
    }
}
