//! Stopping a supervisor: reverse start order, a deadline, then abort and report.

use std::time::Duration;

use tokio::time::Instant;

use super::Supervisor;
use super::shared::Stopping;
use crate::events::EventKind;
use crate::status::Status;
use crate::task_group::StopReport;

/// The names in a [`StopReport`], for events (a report's errors are not cloneable).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StopSummary {
    /// Tasks aborted at the deadline.
    pub aborted: Vec<String>,
    /// Tasks that failed or panicked during the supervisor's life or its stop.
    pub failed: Vec<String>,
}

impl From<&StopReport> for StopSummary {
    fn from(report: &StopReport) -> Self {
        Self {
            aborted: report.aborted.clone(),
            failed: report.failed.iter().map(|f| f.name.clone()).collect(),
        }
    }
}

impl Supervisor {
    /// Stops every task and reports what happened; afterwards the supervisor holds no task
    /// and refuses new ones.
    ///
    /// Tasks are stopped in reverse start order: each one's token is cancelled and the task
    /// is awaited before the next is cancelled, so a task started later (which may depend on
    /// an earlier one) is gone before what it depends on stops. A task is awaited for at most
    /// its fair share of the time left (time left / tasks left); one that overruns stays
    /// cancelled and the stop moves on, so a straggler cannot starve the tasks before it of
    /// their chance to finish the unit of work in hand. Nested supervisors stop their own
    /// tasks the same way within the same deadline. When `deadline` passes, every task still
    /// alive is aborted and named in [`StopReport::aborted`].
    /// Failures, including errors returned while stopping, are in [`StopReport::failed`]
    /// (FINDINGS D-8a). A second call returns an empty report.
    ///
    /// Cancel safety: if the future is dropped, every task of the supervisor is cancelled at
    /// once (the supervisor's token is cancelled by a drop guard) but not awaited or aborted;
    /// call `stop` again to finish.
    pub async fn stop(&self, deadline: Duration) -> StopReport {
        let shared = &self.shared;
        let _cancel_all = shared.cancel.clone().drop_guard();
        let until = Instant::now() + deadline;
        let children = shared.begin_stop(until);
        if shared.owns_status {
            self.move_status(&[Status::Running, Status::Failed], Status::Stopping);
        }
        shared.tracker.close();
        let late = !stop_in_reverse_order(&children, until).await;
        let trackers = if late {
            shared.abort_all()
        } else {
            vec![shared.tracker.clone()]
        };
        shared.cancel.cancel();
        for tracker in trackers {
            tracker.close();
            tracker.wait().await;
        }
        let report = shared.take_report();
        if shared.owns_status {
            self.move_status(&[Status::Stopping], Status::Stopped);
        }
        if !report.is_clean() {
            tracing::warn!(supervisor = %shared.name, aborted = ?report.aborted, failed = report.failed.len(), "stopped with problems");
        }
        shared.events.emit(
            &shared.name,
            None,
            EventKind::Stopped {
                summary: StopSummary::from(&report),
            },
        );
        report
    }

    fn move_status(&self, from: &'static [Status], to: Status) {
        match self.shared.status.transition_from(from, to) {
            Ok(left) => self.shared.emit_status(left, to),
            // Already stopping or stopped: a second stop has nothing to move.
            Err(refused) => tracing::debug!(%refused, "status left as is"),
        }
    }
}

/// Cancels `children` in order, each awaited for its fair share of the time left, then waits
/// for all of them until `until`. True if all ended in time.
async fn stop_in_reverse_order(children: &[Stopping], until: Instant) -> bool {
    for (index, child) in children.iter().enumerate() {
        child.cancel.cancel();
        let left = u32::try_from(children.len() - index).unwrap_or(u32::MAX);
        let share = until.saturating_duration_since(Instant::now()) / left;
        // Overrunning its share is not an error: the task stays cancelled and is awaited (or
        // aborted) below; the stop moves on to the tasks before it.
        let _overran = tokio::time::timeout(share, child.done.cancelled()).await;
    }
    for child in children {
        if tokio::time::timeout_at(until, child.done.cancelled())
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}
