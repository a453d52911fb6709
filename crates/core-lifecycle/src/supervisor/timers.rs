//! Timers as supervised tasks: registered by name, listed, cancellable, stopped with the rest
//! (FINDINGS S-5, S-6).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::Supervisor;
use super::config::RestartPolicy;
use crate::task_group::{SpawnError, TaskError};

impl Supervisor {
    /// Calls `tick` every `period` (first call after one period) in a task named `name`.
    ///
    /// The timer is a task like any other: it appears in [`Supervisor::live_task_names`],
    /// [`Supervisor::cancel_task`] ends it, stop ends it, and a tick that fails or panics
    /// restarts it under [`RestartPolicy::OnFailure`]. Ticks never overlap; a tick that
    /// overruns delays the next one rather than causing a burst. Cancellation is checked
    /// between ticks, never inside one.
    pub fn spawn_interval<T, Fut, E>(
        &self,
        name: impl Into<String>,
        period: Duration,
        tick: T,
    ) -> Result<(), SpawnError>
    where
        T: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<TaskError> + 'static,
    {
        let tick = Arc::new(tick);
        self.spawn(
            name,
            RestartPolicy::OnFailure,
            move |cancel: CancellationToken| {
                let tick = tick.clone();
                async move {
                    let start = tokio::time::Instant::now() + period;
                    let mut interval = tokio::time::interval_at(start, period);
                    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            biased;
                            () = cancel.cancelled() => return Ok::<(), E>(()),
                            _ = interval.tick() => tick().await?,
                        }
                    }
                }
            },
        )
    }
}
