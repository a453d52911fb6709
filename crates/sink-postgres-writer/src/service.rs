//! The writer running as supervised tasks, and its graceful stop (FINDINGS W-3).

use std::time::Duration;

use surefoot_core_lifecycle::{CancellationToken, StopReport, TaskGroup};
use surefoot_core_model::BatchReceiver;

use crate::error::WriterError;
use crate::writer::PostgresWriter;

/// A writer whose sink loop and outbox relay run as tasks of a [`TaskGroup`].
#[derive(Debug)]
pub struct RunningWriter {
    writer: PostgresWriter,
    group: TaskGroup,
    sink_cancel: CancellationToken,
    sink_done: CancellationToken,
}

impl PostgresWriter {
    /// Starts the sink loop on `input` (task `sink`) and the outbox relay (task `outbox-relay`).
    pub fn start(&self, input: BatchReceiver) -> Result<RunningWriter, WriterError> {
        let group = TaskGroup::new(format!("pg-writer-{}", self.sink()));
        let sink_cancel = CancellationToken::new();
        let sink_done = CancellationToken::new();
        let spawn_error = |e| WriterError::Spawn(Box::new(e));
        let (writer, cancel, done) = (self.clone(), sink_cancel.clone(), sink_done.clone());
        group
            .spawn("sink", move |_group| async move {
                let _done = done.drop_guard();
                writer.run(input, cancel).await
            })
            .map_err(spawn_error)?;
        let writer = self.clone();
        group
            .spawn("outbox-relay", move |cancel| async move {
                writer.run_relay(cancel).await
            })
            .map_err(spawn_error)?;
        Ok(RunningWriter {
            writer: self.clone(),
            group,
            sink_cancel,
            sink_done,
        })
    }
}

impl RunningWriter {
    /// The writer.
    pub fn writer(&self) -> &PostgresWriter {
        &self.writer
    }

    /// Names of the tasks still alive.
    pub fn live_tasks(&self) -> Vec<String> {
        self.group.live_task_names()
    }

    /// Stops in order, within `deadline` overall: the sink loop finishes the transaction under
    /// way and takes no more batches (those queued are not acknowledged, so they are delivered
    /// again); then the relay publishes what was committed (one last round); then the pool
    /// closes. Tasks still alive at the deadline are aborted and named in the report.
    pub async fn stop(self, deadline: Duration) -> StopReport {
        let started = tokio::time::Instant::now();
        self.sink_cancel.cancel();
        self.writer.inner.stopping.cancel();
        let finished = tokio::time::timeout(deadline, self.sink_done.cancelled())
            .await
            .is_ok();
        if !finished {
            tracing::warn!(sink = %self.writer.sink(), ?deadline, "sink loop did not finish its transaction before the deadline");
        }
        let left = deadline.saturating_sub(started.elapsed());
        let report = self.group.stop(left).await;
        self.writer.pool().close().await;
        report
    }
}
