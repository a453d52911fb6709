//! Blocking work on tokio's blocking thread pool, supervised like any task.
//!
//! This is the only way surefoot starts a thread (the workspace forbids `spawn_blocking` and
//! `std::thread::spawn` elsewhere): the work is named, restarted per policy, reported and
//! stopped with the rest.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Supervisor;
use super::config::RestartPolicy;
use crate::task_group::{SpawnError, TaskError};

/// The blocking pool dropped the work without running it to the end (the runtime is shutting
/// down).
#[derive(Debug, thiserror::Error)]
#[error("blocking work was cancelled by the runtime")]
pub struct BlockingCancelled(#[source] tokio::task::JoinError);

impl Supervisor {
    /// Runs `work` on tokio's blocking thread pool as a task named `name`, restarted per
    /// `policy`.
    ///
    /// `work` gets the task's cancellation token and should check it between units of work
    /// (`token.is_cancelled()`) and return. A thread cannot be interrupted: if `work` is still
    /// running at the stop deadline it is named in [`StopReport::aborted`](crate::StopReport)
    /// and its thread is detached from the supervisor; it keeps running until `work` returns,
    /// holding nothing of the supervisor's. A panic in `work` is reported as a panic of the
    /// task.
    pub fn spawn_blocking<W, E>(
        &self,
        name: impl Into<String>,
        policy: RestartPolicy,
        work: W,
    ) -> Result<(), SpawnError>
    where
        W: Fn(CancellationToken) -> Result<(), E> + Send + Sync + 'static,
        E: Into<TaskError> + Send + 'static,
    {
        let work = Arc::new(work);
        self.spawn(name, policy, move |cancel: CancellationToken| {
            let work = work.clone();
            async move {
                match tokio::task::spawn_blocking(move || work(cancel)).await {
                    Ok(result) => result.map_err(Into::into),
                    Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
                    Err(join) => Err(TaskError::from(BlockingCancelled(join))),
                }
            }
        })
    }
}
