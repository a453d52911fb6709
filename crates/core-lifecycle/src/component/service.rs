//! What a component runs.

use std::fmt;
use std::future::Future;

use futures::future::BoxFuture;

use crate::supervisor::Supervisor;
use crate::task_group::TaskError;

/// The part of a component that knows what to run.
pub trait Service: Send + Sync + 'static {
    /// Spawns the component's tasks under `supervisor` (a fresh one on every start) and
    /// returns once they are started. An error fails the start: the supervisor is stopped,
    /// so nothing started here outlives it.
    ///
    /// The future is boxed so that `Component::start` stays `Send` for every service (an
    /// `impl Future` here trips rustc's higher-ranked `Send` inference in generic callers).
    fn start<'a>(&'a self, supervisor: &'a Supervisor) -> BoxFuture<'a, Result<(), TaskError>>;
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
    Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
{
    FnService { start }
}

impl<F, Fut> Service for FnService<F>
where
    F: Fn(Supervisor) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
{
    fn start<'a>(&'a self, supervisor: &'a Supervisor) -> BoxFuture<'a, Result<(), TaskError>> {
        Box::pin((self.start)(supervisor.clone()))
    }
}
