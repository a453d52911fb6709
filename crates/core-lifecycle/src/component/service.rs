//! What a component runs.

use std::fmt;
use std::future::Future;

use crate::supervisor::Supervisor;
use crate::task_group::TaskError;

/// The part of a component that knows what to run.
pub trait Service: Send + Sync + 'static {
    /// Spawns the component's tasks under `supervisor` (a fresh one on every start) and
    /// returns once they are started. An error fails the start: the supervisor is stopped,
    /// so nothing started here outlives it.
    fn start(
        &self,
        supervisor: &Supervisor,
    ) -> impl Future<Output = Result<(), TaskError>> + Send;
}

/// A [`Service`] made from a function; see [`service_fn`].
pub struct FnService<F> {
    start: F,
}

impl<F> fmt::Debug for FnService<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnService").finish_non_exhaustive()
    }
}

/// A [`Service`] whose start is `start(supervisor)`.
pub fn service_fn<F, Fut>(start: F) -> FnService<F>
where
    F: Fn(Supervisor) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), TaskError>> + Send,
{
    FnService { start }
}

impl<F, Fut> Service for FnService<F>
where
    F: Fn(Supervisor) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), TaskError>> + Send,
{
    fn start(
        &self,
        supervisor: &Supervisor,
    ) -> impl Future<Output = Result<(), TaskError>> + Send {
        (self.start)(supervisor.clone())
    }
}
