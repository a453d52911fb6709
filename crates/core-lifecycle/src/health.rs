//! Component health: status, last progress, pending work, and why it failed.
//!
//! A component is **stalled** when it is `Running`, has work pending, and has made no progress
//! for longer than its stall threshold: alive by status, dead in fact.
//!
//! Lock: one `std::sync::Mutex` around the progress record, taken briefly and never across an
//! `.await`; the status is read from its watch channel without holding it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::status::Status;
use crate::supervisor::{ExitCause, SharedError};

/// A handle that records a component's progress and reports its health. Cloning gives another
/// handle to the same record.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    status: watch::Receiver<Status>,
    stall_after: Duration,
    record: Mutex<Record>,
}

#[derive(Debug)]
struct Record {
    last_progress: Instant,
    pending: u64,
    failure: Option<SharedError>,
    task_failures: u64,
    last_task_failure: Option<(Arc<str>, ExitCause)>,
}

/// A snapshot of a component's health.
#[derive(Debug, Clone)]
pub struct HealthReport {
    /// The component's status.
    pub status: Status,
    /// Work items waiting, as last reported with [`Health::set_pending`].
    pub pending: u64,
    /// Time since the last [`Health::progress`] (or since the record was created).
    pub since_progress: Duration,
    /// Running, work pending, and no progress for longer than the stall threshold.
    pub stalled: bool,
    /// Why the component failed, if it did and has not started successfully since. The error
    /// keeps its source chain.
    pub failure: Option<SharedError>,
    /// Task instances that failed or panicked since the record was created (restarted or not).
    pub task_failures: u64,
    /// The most recent of those: the task's name and how it ended.
    pub last_task_failure: Option<(Arc<str>, ExitCause)>,
}

impl HealthReport {
    /// Running and not stalled.
    pub fn is_healthy(&self) -> bool {
        self.status == Status::Running && !self.stalled
    }
}

impl Health {
    /// A record for a component whose status is published on `status`, stalled after
    /// `stall_after` without progress while work is pending.
    pub fn new(status: watch::Receiver<Status>, stall_after: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                status,
                stall_after,
                record: Mutex::new(Record {
                    last_progress: Instant::now(),
                    pending: 0,
                    failure: None,
                    task_failures: 0,
                    last_task_failure: None,
                }),
            }),
        }
    }

    /// Records that the component made progress now.
    pub fn progress(&self) {
        self.lock().last_progress = Instant::now();
    }

    /// Records how many work items are waiting.
    pub fn set_pending(&self, pending: u64) {
        self.lock().pending = pending;
    }

    /// Records why the component failed; shown until [`Self::clear_failure`].
    pub fn set_failure(&self, failure: SharedError) {
        self.lock().failure = Some(failure);
    }

    /// Records that an instance of `task` failed or panicked.
    pub fn task_failed(&self, task: &Arc<str>, cause: ExitCause) {
        let mut record = self.lock();
        record.task_failures = record.task_failures.saturating_add(1);
        record.last_task_failure = Some((task.clone(), cause));
    }

    /// Forgets the recorded failure (done on a successful start).
    pub fn clear_failure(&self) {
        self.lock().failure = None;
    }

    /// The component's health now.
    pub fn report(&self) -> HealthReport {
        let status = *self.inner.status.borrow();
        let (last_progress, pending, failure, task_failures, last_task_failure) = {
            let record = self.lock();
            (
                record.last_progress,
                record.pending,
                record.failure.clone(),
                record.task_failures,
                record.last_task_failure.clone(),
            )
        };
        let since_progress = Instant::now().saturating_duration_since(last_progress);
        HealthReport {
            status,
            pending,
            since_progress,
            stalled: status == Status::Running
                && pending > 0
                && since_progress > self.inner.stall_after,
            failure,
            task_failures,
            last_task_failure,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Record> {
        // Each update writes one field completely; a panic elsewhere cannot leave it broken.
        self.inner
            .record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
