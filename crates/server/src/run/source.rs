//! A PostgreSQL source's task: bootstrap on first start (or resume from its slot), stream until
//! cancelled, then stop: intake ends and the final watermark is confirmed.

use std::path::PathBuf;
use std::time::Duration;

use surefoot_core_lifecycle::{CancellationToken, Status};
use surefoot_core_model::{BatchSender, Source, TableRef};
use surefoot_source_postgres::{PostgresSource, PostgresSourceConfig};
use tokio::sync::{mpsc, oneshot};

use super::error::{RunError, chain};
use super::late::{LateQuery, snapshot_for_late_query};
use super::progress::CatchUp;
use super::registry::{Registry, State};
use super::skip::SkipSender;
use super::snapshot::{SnapshotDelivered, bootstrap, marker_path, record_bootstrap};

/// How often a streaming source's pending work and progress are read.
const PROGRESS_CHECK: Duration = Duration::from_secs(1);
/// Waits between attempts to start a source that could not start.
const RESTART_AFTER: Duration = Duration::from_secs(2);

/// What the API asks of a running source.
#[derive(Debug)]
pub(crate) enum SourceCommand {
    /// Stop streaming (intake ends, the final watermark is confirmed), then reply.
    Stop(oneshot::Sender<Result<(), String>>),
    /// Stream again, then reply.
    Start(oneshot::Sender<Result<(), String>>),
    /// Copy the tables again (every table when `None`) to every consumer (see `on_demand`),
    /// then reply with the rows copied.
    Snapshot(Option<Vec<TableRef>>, oneshot::Sender<Result<u64, String>>),
}

/// What a source task needs.
#[derive(Debug)]
pub(crate) struct SourceTask {
    pub(crate) commands: mpsc::Receiver<SourceCommand>,
    pub(crate) config: PostgresSourceConfig,
    pub(crate) bootstrap: bool,
    pub(crate) state_dir: PathBuf,
    pub(crate) output: BatchSender,
    pub(crate) registry: Registry,
    pub(crate) stop_deadline: Duration,
    /// Queries new to the file, each sent a snapshot of its own before the source streams.
    pub(crate) late: Vec<LateQuery>,
    /// The source's tables, as discovered at start.
    pub(crate) tables: Vec<TableRef>,
    /// What the source's fan-out drops after a snapshot of some tables (see `skip`).
    pub(crate) skips: SkipSender,
}

impl SourceTask {
    fn id(&self) -> String {
        self.config.id.to_string()
    }

    fn needs_bootstrap(&self) -> bool {
        self.bootstrap && !marker_path(&self.state_dir, &self.id()).exists()
    }

    /// Runs until `cancel`; a bootstrap failure ends the task with the error (the consumers
    /// hold part of a snapshot: see `docs/decisions/0013-server-wiring.md`).
    pub(crate) async fn run(mut self, cancel: CancellationToken) -> Result<(), RunError> {
        let id = self.id();
        let (source, delivered) = if self.needs_bootstrap() {
            self.registry.set(&id, State::Bootstrapping, None);
            let started = tokio::select! {
                started = bootstrap(self.config.clone(), self.output.clone(), &self.registry, &cancel) => started,
                () = cancel.cancelled() => return Err(RunError::source(&id, "stopped during the bootstrap")),
            };
            match started {
                Ok((source, delivered)) => (source, Some(delivered)),
                Err(error) => {
                    self.registry
                        .set(&id, State::Failed, Some(error.to_string()));
                    return Err(error);
                }
            }
        } else {
            self.snapshot_late_queries(&cancel).await?;
            self.resume_on_demand(&cancel).await?;
            let source = PostgresSource::new(self.config.clone(), self.output.clone())
                .map_err(|error| RunError::source(&id, chain(&error)))?;
            (source, None)
        };
        if !self.start(&source, &cancel).await {
            return Ok(());
        }
        self.stream(&source, delivered, &cancel).await;
        self.registry
            .set(&id, State::Stopped, Some("stopping".to_owned()));
        let stopped = source.stop(self.stop_deadline).await;
        drop(source);
        match stopped {
            Ok(()) => {
                self.registry.set(&id, State::Stopped, None);
                tracing::info!(source = %id, "source stopped; final watermark confirmed");
                Ok(())
            }
            Err(error) => {
                let reason = chain(&error);
                self.registry.set(&id, State::Failed, Some(reason.clone()));
                Err(RunError::source(&id, reason))
            }
        }
    }

    /// Sends each query new to the file its own snapshot, one after the other, before the
    /// source streams (see `late`); a failure fails the source, whose consumers wait.
    async fn snapshot_late_queries(&mut self, cancel: &CancellationToken) -> Result<(), RunError> {
        let id = self.id();
        for late in std::mem::take(&mut self.late) {
            if let Err(error) =
                snapshot_for_late_query(&self.config, &late, &self.registry, cancel).await
            {
                tracing::error!(source = %id, query = %late.query, %error, "the new query's snapshot failed");
                self.registry
                    .set(&late.query, State::Failed, Some(error.to_string()));
                self.registry
                    .set(&id, State::Failed, Some(error.to_string()));
                return Err(error);
            }
        }
        Ok(())
    }

    /// Starts the source, retrying until it starts or `cancel`: false if cancelled.
    pub(super) async fn start(&self, source: &PostgresSource, cancel: &CancellationToken) -> bool {
        let id = self.id();
        loop {
            match source.start().await {
                Ok(()) => {
                    self.registry.set(&id, State::Running, None);
                    tracing::info!(source = %id, "source streaming");
                    return true;
                }
                Err(error) => {
                    let reason = chain(&error);
                    tracing::warn!(source = %id, %reason, "source could not start; retrying");
                    self.registry.set(&id, State::Failed, Some(reason));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(RESTART_AFTER) => {}
                () = cancel.cancelled() => return false,
            }
        }
    }

    /// Carries out `command`; false if cancelled meanwhile (the task then stops).
    async fn command(
        &mut self,
        source: &PostgresSource,
        command: SourceCommand,
        cancel: &CancellationToken,
    ) -> bool {
        let id = self.id();
        let reply = match command {
            SourceCommand::Stop(reply) => reply,
            SourceCommand::Start(reply) => {
                // The asker may have gone; the source streams already.
                let _unasked = reply.send(Ok(()));
                return true;
            }
            SourceCommand::Snapshot(tables, reply) => {
                let (taken, streams) = self.snapshot_again(source, tables, cancel).await;
                // The asker may have gone; the snapshot is taken all the same.
                let _unasked = reply.send(taken);
                return streams;
            }
        };
        let stopped = source.stop(self.stop_deadline).await.map_err(|e| chain(&e));
        let ok = stopped.is_ok();
        // The asker may have gone; the source is stopped all the same.
        let _unasked = reply.send(stopped);
        if ok {
            tracing::info!(source = %id, "source stopped through the API; final watermark confirmed");
            self.registry.set(
                &id,
                State::Stopped,
                Some("stopped through the API".to_owned()),
            );
        }
        loop {
            tokio::select! {
                () = cancel.cancelled() => return false,
                command = self.commands.recv() => match command {
                    Some(SourceCommand::Start(reply)) => {
                        let started = self.start(source, cancel).await;
                        let _unasked = reply.send(Ok(()));
                        return started;
                    }
                    Some(SourceCommand::Stop(reply)) => {
                        let _unasked = reply.send(Ok(()));
                    }
                    Some(SourceCommand::Snapshot(_, reply)) => {
                        let refused = "the source is stopped: start it, then take the snapshot";
                        let _unasked = reply.send(Err(refused.to_owned()));
                    }
                    None => {
                        cancel.cancelled().await;
                        return false;
                    }
                },
            }
        }
    }

    /// Mirrors the source's status into the registry and records the bootstrap once its
    /// snapshot is delivered, until `cancel`.
    async fn stream(
        &mut self,
        source: &PostgresSource,
        delivered: Option<SnapshotDelivered>,
        cancel: &CancellationToken,
    ) {
        let id = self.id();
        let mut status = source.component().subscribe_status();
        let (state_dir, registry) = (self.state_dir.clone(), self.registry.clone());
        let recorded = async {
            let Some(delivered) = delivered else {
                return std::future::pending().await;
            };
            match delivered.wait().await {
                Ok(rows) => match record_bootstrap(&state_dir, &id, rows) {
                    Ok(()) => {
                        tracing::info!(source = %id, rows, "bootstrap delivered and recorded")
                    }
                    Err(error) => {
                        tracing::error!(source = %id, %error, "bootstrap could not be recorded");
                        registry.set(&id, State::Failed, Some(error.to_string()));
                    }
                },
                Err(reason) => {
                    tracing::error!(source = %id, %reason, "bootstrap not delivered");
                    registry.set(
                        &id,
                        State::Failed,
                        Some(format!("bootstrap not delivered: {reason}")),
                    );
                }
            }
            std::future::pending::<()>().await
        };
        tokio::pin!(recorded);
        let mut commands_open = true;
        let mut watch_progress = tokio::time::interval(PROGRESS_CHECK);
        let mut watermark = source.tracker().watermark();
        let mut catch_up = CatchUp::new();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = &mut recorded => {}
                command = self.commands.recv(), if commands_open => match command {
                    None => commands_open = false,
                    Some(command) => {
                        if !self.command(source, command, cancel).await {
                            return;
                        }
                        status = source.component().subscribe_status();
                    }
                },
                _ = watch_progress.tick() => {
                    // Batches sent and not yet settled are the source's pending work; the
                    // watermark moving is its progress. Pending with no progress for long is a
                    // stall, which readiness reports.
                    let now = source.tracker().watermark();
                    if now != watermark {
                        watermark = now;
                        self.registry.touch(&id);
                    }
                    self.registry.set_pending(&id, source.tracker().in_flight() as u64);
                    self.registry.set_lag(&id, source.lag_bytes());
                    catch_up.sample(&id, source.lag_bytes());
                    self.clear_passed_skip(source);
                }
                changed = status.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = *status.borrow_and_update();
                    let report = source.component().health().report();
                    match now {
                        Status::Running => self.registry.set(&id, State::Running, None),
                        Status::Failed => {
                            let reason = report.failure.map(|f| chain(&*f)).unwrap_or_default();
                            tracing::error!(source = %id, %reason, "source failed");
                            self.registry.set(&id, State::Failed, Some(reason));
                        }
                        Status::Starting => self.registry.set(&id, State::Starting, None),
                        Status::Stopping | Status::Stopped => {
                            self.registry.set(&id, State::Stopped, None);
                        }
                    }
                }
            }
        }
    }
}
