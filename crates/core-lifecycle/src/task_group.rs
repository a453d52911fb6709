//! A named group of tracked tasks with cooperative cancellation and a bounded stop.
//!
//! A [`TaskGroup`] is the smallest unit of supervision: every task in it has a unique name while
//! it is alive, receives a [`CancellationToken`] it is expected to honour, and is accounted for
//! when the group stops. Stop cancels, waits up to a deadline, aborts whatever is left and returns
//! a [`StopReport`] naming the aborted tasks and the tasks that failed (returned an error or
//! panicked). After `stop` returns, the group holds zero tasks.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The boxed error a task may end with.
pub type TaskError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a task could not be spawned.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// A task with this name is still alive in the group.
    #[error("task `{name}` is already running in group `{group}`")]
    NameTaken {
        /// The group.
        group: String,
        /// The name that is taken.
        name: String,
    },
    /// The group is stopping or stopped and accepts no new tasks.
    #[error("task group `{group}` is stopping; `{name}` was not started")]
    Closed {
        /// The group.
        group: String,
        /// The task that was refused.
        name: String,
    },
}

/// A task that ended badly.
#[derive(Debug)]
pub struct TaskFailure {
    /// The task's name.
    pub name: String,
    /// What went wrong: the task's error, or the panic message.
    pub reason: String,
    /// True when the task panicked.
    pub panicked: bool,
}

/// What happened during [`TaskGroup::stop`].
#[derive(Debug, Default)]
pub struct StopReport {
    /// Tasks that did not finish before the deadline and were aborted.
    pub aborted: Vec<String>,
    /// Tasks that returned an error or panicked, during the group's life or its stop.
    pub failed: Vec<TaskFailure>,
}

impl StopReport {
    /// True when every task finished on its own and none failed.
    pub fn is_clean(&self) -> bool {
        self.aborted.is_empty() && self.failed.is_empty()
    }
}

#[derive(Debug, Default)]
struct Registry {
    /// Live tasks by name.
    live: HashMap<String, AbortHandle>,
    /// Failures not yet collected by a stop.
    failures: Vec<TaskFailure>,
    closed: bool,
}

/// A named set of tasks that stop together.
///
/// Cloning gives another handle to the same group. Dropping the last handle cancels the group's
/// token, so tasks that honour it end; it does not wait for them (use [`TaskGroup::stop`]).
#[derive(Debug, Clone)]
pub struct TaskGroup {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    cancel: CancellationToken,
    tracker: TaskTracker,
    registry: Mutex<Registry>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl TaskGroup {
    /// A new, empty group with its own cancellation token.
    pub fn new(name: impl Into<String>) -> Self {
        Self::with_token(name, CancellationToken::new())
    }

    /// A group nested in this one: cancelling this group cancels the child.
    pub fn child(&self, name: impl Into<String>) -> Self {
        let name = format!("{}/{}", self.inner.name, name.into());
        Self::with_token(name, self.inner.cancel.child_token())
    }

    fn with_token(name: impl Into<String>, cancel: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                cancel,
                tracker: TaskTracker::new(),
                registry: Mutex::new(Registry::default()),
            }),
        }
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The token cancelled when the group stops.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.inner.cancel.clone()
    }

    /// Number of tasks alive in the group.
    pub fn live_tasks(&self) -> usize {
        self.registry().live.len()
    }

    /// Names of the tasks alive in the group, sorted.
    pub fn live_task_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.registry().live.keys().cloned().collect();
        names.sort();
        names
    }

    /// Spawns `task` under `name`. The closure receives the group's cancellation token; the task
    /// should return promptly once it is cancelled.
    ///
    /// Fails when a task with the same name is alive or the group is stopping. A task that
    /// returns an error or panics is logged and recorded for the next [`StopReport`].
    pub fn spawn<F, Fut, E>(&self, name: impl Into<String>, task: F) -> Result<(), SpawnError>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<TaskError> + 'static,
    {
        let name = name.into();
        let mut registry = self.registry();
        if registry.closed {
            return Err(SpawnError::Closed {
                group: self.inner.name.clone(),
                name,
            });
        }
        if registry.live.contains_key(&name) {
            return Err(SpawnError::NameTaken {
                group: self.inner.name.clone(),
                name,
            });
        }
        let future = task(self.inner.cancel.clone());
        let inner = Arc::downgrade(&self.inner);
        let task_name = name.clone();
        let group_name = self.inner.name.clone();
        let wrapped = async move {
            let outcome = AssertUnwindSafe(future).catch_unwind().await;
            let failure = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(TaskFailure {
                    name: task_name.clone(),
                    reason: error_chain(&*error.into()),
                    panicked: false,
                }),
                Err(panic) => Some(TaskFailure {
                    name: task_name.clone(),
                    reason: panic_message(&*panic),
                    panicked: true,
                }),
            };
            if let Some(failure) = &failure {
                tracing::error!(group = %group_name, task = %failure.name, panicked = failure.panicked, reason = %failure.reason, "task failed");
            }
            if let Some(inner) = inner.upgrade() {
                let mut registry = lock(&inner.registry);
                registry.live.remove(&task_name);
                registry.failures.extend(failure);
            }
        };
        // The registry lock is held while spawning so the task cannot finish (and remove its
        // entry) before the entry is inserted.
        let handle = self.inner.tracker.spawn(wrapped);
        registry.live.insert(name, handle.abort_handle());
        Ok(())
    }

    /// Spawns `future` under `name` to run until it completes or the group is cancelled, when it
    /// is dropped. For futures that drive a resource, such as a database connection: its error,
    /// if it ends with one, is logged and reported like any task's.
    pub fn spawn_until_cancelled<Fut, E>(
        &self,
        name: impl Into<String>,
        future: Fut,
    ) -> Result<(), SpawnError>
    where
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<TaskError> + 'static,
    {
        self.spawn(name, |cancel| async move {
            tokio::select! {
                // A future that has ended reports how, even when cancellation came too.
                biased;
                result = future => result,
                () = cancel.cancelled() => Ok(()),
            }
        })
    }

    /// Cancels every task, waits up to `deadline` for them to end, aborts the rest and reports.
    ///
    /// The group refuses new tasks from the moment stop begins. When this returns, no task of
    /// the group is alive. Cancel-safe in the sense that dropping the future leaves the tasks
    /// cancelled; they are then aborted when the last handle to the group is dropped.
    pub async fn stop(&self, deadline: Duration) -> StopReport {
        self.registry().closed = true;
        self.inner.cancel.cancel();
        self.inner.tracker.close();
        let mut report = StopReport::default();
        if tokio::time::timeout(deadline, self.inner.tracker.wait())
            .await
            .is_err()
        {
            let stragglers: Vec<(String, AbortHandle)> = self.registry().live.drain().collect();
            for (name, handle) in stragglers {
                tracing::warn!(group = %self.inner.name, task = %name, ?deadline, "task did not stop before the deadline; aborting");
                handle.abort();
                report.aborted.push(name);
            }
            report.aborted.sort();
            self.inner.tracker.wait().await;
        }
        report.failed = std::mem::take(&mut self.registry().failures);
        report
    }

    /// Failures recorded so far and not yet collected by a stop.
    pub fn take_failures(&self) -> Vec<TaskFailure> {
        std::mem::take(&mut self.registry().failures)
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.inner.registry)
    }
}

fn lock(registry: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    // The registry holds plain data that every update leaves consistent, so a panic elsewhere
    // while it was held cannot have broken it.
    registry.lock().unwrap_or_else(PoisonError::into_inner)
}

fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[tokio::test]
    async fn stop_waits_for_cooperative_tasks_and_reports_clean() {
        let group = TaskGroup::new("g");
        group
            .spawn("worker", |cancel| async move {
                cancel.cancelled().await;
                Ok::<(), Infallible>(())
            })
            .unwrap();
        assert_eq!(group.live_tasks(), 1);
        let report = group.stop(Duration::from_secs(5)).await;
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(group.live_tasks(), 0);
    }

    #[tokio::test]
    async fn a_driven_future_ends_on_cancel_and_its_error_is_reported() {
        let group = TaskGroup::new("g");
        group
            .spawn_until_cancelled("forever", std::future::pending::<Result<(), Infallible>>())
            .unwrap();
        group
            .spawn_until_cancelled("broken", async {
                Err::<(), _>(std::io::Error::other("connection reset"))
            })
            .unwrap();
        let report = group.stop(Duration::from_secs(5)).await;
        assert!(report.aborted.is_empty(), "{report:?}");
        let failed: Vec<_> = report.failed.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(failed, ["broken"]);
    }

    #[tokio::test]
    async fn stop_aborts_stragglers_and_names_them() {
        let group = TaskGroup::new("g");
        group
            .spawn("stubborn", |_cancel| async move {
                std::future::pending::<()>().await;
                Ok::<(), Infallible>(())
            })
            .unwrap();
        let report = group.stop(Duration::from_millis(50)).await;
        assert_eq!(report.aborted, vec!["stubborn".to_owned()]);
        assert_eq!(group.live_tasks(), 0);
    }

    #[tokio::test]
    async fn a_live_name_cannot_be_spawned_twice() {
        let group = TaskGroup::new("g");
        let pending = |cancel: CancellationToken| async move {
            cancel.cancelled().await;
            Ok::<(), Infallible>(())
        };
        group.spawn("one", pending).unwrap();
        let second = group.spawn("one", pending);
        assert!(matches!(second, Err(SpawnError::NameTaken { .. })));
        group.stop(Duration::from_secs(1)).await;
        assert!(matches!(
            group.spawn("one", pending),
            Err(SpawnError::Closed { .. })
        ));
    }

    #[tokio::test]
    async fn panics_and_errors_are_reported() {
        let group = TaskGroup::new("g");
        group
            .spawn("panics", |_c| async move {
                panic!("boom");
                #[allow(unreachable_code)]
                Ok::<(), Infallible>(())
            })
            .unwrap();
        group
            .spawn("errs", |_c| async move {
                Err::<(), _>(std::io::Error::other("disk on fire"))
            })
            .unwrap();
        let report = group.stop(Duration::from_secs(5)).await;
        let mut names: Vec<_> = report.failed.iter().map(|f| f.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["errs", "panics"]);
        assert!(
            report
                .failed
                .iter()
                .any(|f| f.panicked && f.reason == "boom")
        );
    }
}
