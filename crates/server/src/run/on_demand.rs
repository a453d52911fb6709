//! Snapshots on demand of a running PostgreSQL source (`POST /api/v1/sources/{id}/snapshot`):
//! of every table (see `resnapshot`) or of some (see `table_snapshot`), each taken again until
//! it completes. A file in the state directory records one under way, so a crash part-way is
//! repaired at the next start: a snapshot the consumers may hold part of is taken again, of
//! every table, before the source streams; the tables of one delivered keep their changes
//! before its consistent point dropped until the stream passes it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{Lsn, Source, TableRef};
use surefoot_source_postgres::PostgresSource;

use super::error::{RunError, chain};
use super::registry::State;
use super::resnapshot::{advance_slot, resnapshot};
use super::skip::SkipRule;
use super::source::SourceTask;
use super::state_file::{remove_durably, write_durably};
use super::table_snapshot::{Anchor, emit_marker, snapshot_tables};

/// Waits between attempts at a snapshot on demand that failed.
const AGAIN_AFTER: Duration = Duration::from_secs(2);
/// How long the source may take to confirm past the marker emitted before a snapshot of some
/// tables.
const MARKER_CONFIRM: Duration = Duration::from_secs(30);
/// How often the source's confirmed position is read while waiting for it.
const CONFIRM_POLL: Duration = Duration::from_millis(50);

/// A snapshot on demand under way, as recorded in the state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum OnDemand {
    /// Being sent: the consumers may hold part of it.
    Copying,
    /// `tables` delivered at the consistent point `until`: their changes committed before it
    /// are dropped until the stream passes it.
    Delivered { tables: Vec<TableRef>, until: Lsn },
}

/// Where a source's snapshot on demand under way is recorded.
pub(crate) fn on_demand_path(state_dir: &Path, source: &str) -> PathBuf {
    state_dir
        .join("sources")
        .join(format!("{source}.on-demand-snapshot"))
}

/// What an attempt at a snapshot on demand copies.
enum Attempt<'a> {
    /// Every table; the slot is then advanced past the snapshot.
    EveryTable,
    /// These tables, at the anchor.
    SomeTables(&'a [TableRef], &'a mut Anchor),
}

impl SourceTask {
    fn on_demand_path(&self) -> PathBuf {
        on_demand_path(&self.state_dir, &self.config.id.to_string())
    }

    fn record_on_demand(&self, state: Option<&OnDemand>) -> Result<(), RunError> {
        let path = self.on_demand_path();
        let written = match state {
            Some(state) => serde_json::to_vec(state)
                .map_err(std::io::Error::other)
                .and_then(|text| write_durably(&path, &text)),
            None => remove_durably(&path),
        };
        written.map_err(|error| RunError::State(format!("{}: {error}", path.display())))
    }

    /// Before the source first streams: repairs what a snapshot on demand the last run did not
    /// finish left (see the module docs). Fails only if cancelled or the record is unreadable.
    pub(crate) async fn resume_on_demand(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<(), RunError> {
        let id = self.config.id.to_string();
        let path = self.on_demand_path();
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(RunError::State(format!("{}: {error}", path.display()))),
        };
        let state: OnDemand = serde_json::from_slice(&text)
            .map_err(|error| RunError::State(format!("{}: {error}", path.display())))?;
        match state {
            OnDemand::Copying => {
                tracing::warn!(source = %id, "a snapshot on demand did not complete before the last stop; copying every table again before streaming");
                self.snapshot_every_table(cancel)
                    .await
                    .map(|_| ())
                    .ok_or_else(|| RunError::source(&id, "stopped during the snapshot on demand"))
            }
            OnDemand::Delivered { tables, until } => {
                self.set_skip(tables, until);
                Ok(())
            }
        }
    }

    /// Drops `tables`' changes committed before `until` from the fan-out.
    fn set_skip(&self, tables: Vec<TableRef>, until: Lsn) {
        tracing::info!(source = %self.config.id, %until, tables = ?tables,
            "the snapshotted tables' changes before its consistent point are dropped from the stream");
        let rule = SkipRule {
            tables: tables.into_iter().collect(),
            until,
        };
        self.skips.send_replace(Some(Arc::new(rule)));
    }

    /// Once the source confirmed past the rule's point, the rule and its record go.
    pub(crate) fn clear_passed_skip(&self, source: &PostgresSource) {
        let until = match &*self.skips.borrow() {
            Some(rule) => rule.until,
            None => return,
        };
        if source.confirmed() < until {
            return;
        }
        match self.record_on_demand(None) {
            Ok(()) => {
                self.skips.send_replace(None);
                tracing::info!(source = %self.config.id, %until, "the stream passed the snapshot of some tables");
            }
            Err(error) => {
                tracing::error!(source = %self.config.id, %error, "the snapshot's record could not be removed");
                self.registry.set(
                    &self.config.id.to_string(),
                    State::Failed,
                    Some(error.to_string()),
                );
            }
        }
    }

    /// Stops the source, copies `tables` (every table when `None` or all of them) again to
    /// every consumer until it completes, and streams again: the rows copied, and false if
    /// cancelled.
    pub(crate) async fn snapshot_again(
        &mut self,
        source: &PostgresSource,
        tables: Option<Vec<TableRef>>,
        cancel: &CancellationToken,
    ) -> (Result<u64, String>, bool) {
        let id = self.config.id.to_string();
        let some = tables.filter(|tables| tables.len() < self.tables.len());
        if some.is_some()
            && let Err(error) = self.confirm_past_marker(source).await
        {
            return (Err(error.to_string()), true);
        }
        if let Err(error) = self.record_on_demand(Some(&OnDemand::Copying)) {
            return (Err(error.to_string()), true);
        }
        if let Err(error) = source.stop(self.stop_deadline).await {
            return (Err(chain(&error)), true);
        }
        tracing::info!(source = %id, tables = ?some, "snapshot on demand: stopped streaming; copying");
        self.registry.set(
            &id,
            State::Bootstrapping,
            Some("snapshot on demand".to_owned()),
        );
        let taken = match some {
            Some(tables) => self.snapshot_some_tables(source, tables, cancel).await,
            None => self.snapshot_every_table(cancel).await,
        };
        let Some(rows) = taken else {
            return (
                Err("stopped before the snapshot on demand completed".to_owned()),
                false,
            );
        };
        let streams = self.start(source, cancel).await;
        (Ok(rows), streams)
    }

    /// Emits a logical message and waits until the source confirmed past it, so its
    /// watermark, once stopped, is later than every earlier snapshot's consistent point.
    async fn confirm_past_marker(&self, source: &PostgresSource) -> Result<(), RunError> {
        let marker = emit_marker(&self.config).await?;
        let deadline = Instant::now() + MARKER_CONFIRM;
        while source.confirmed() <= marker {
            if Instant::now() >= deadline {
                return Err(RunError::source(
                    self.config.id.to_string(),
                    format!("the source did not confirm past {marker} within {MARKER_CONFIRM:?}"),
                ));
            }
            tokio::time::sleep(CONFIRM_POLL).await;
        }
        Ok(())
    }

    /// Every table, taken again until it completes (the source stopped), then the slot
    /// advanced past it; `None` if cancelled first.
    async fn snapshot_every_table(&mut self, cancel: &CancellationToken) -> Option<u64> {
        // Every table: the slot then moves past the snapshot, which must hold every change
        // committed before it. A failed attempt may have reached the consumers in part (a
        // truncate, some rows), and streaming from the old watermark would then be refused by
        // the writers or skipped by the queries: so it is taken again until it completes, each
        // attempt's truncate sorting after whatever the last one sent.
        let (_, rows) = self.until_taken(cancel, Attempt::EveryTable).await?;
        self.record_or_report(None);
        Some(rows)
    }

    /// `tables`, taken again until it completes at the stopped source's watermark; the
    /// stream then drops their changes before the snapshot; `None` if cancelled first.
    async fn snapshot_some_tables(
        &mut self,
        source: &PostgresSource,
        tables: Vec<TableRef>,
        cancel: &CancellationToken,
    ) -> Option<u64> {
        let mut anchor = Anchor {
            at: source.confirmed(),
            next_row: 0,
        };
        let (until, rows) = self
            .until_taken(cancel, Attempt::SomeTables(&tables, &mut anchor))
            .await?;
        self.record_or_report(Some(&OnDemand::Delivered {
            tables: tables.clone(),
            until,
        }));
        self.set_skip(tables, until);
        Some(rows)
    }

    /// Records `state`; a failure is logged and reported (the record left behind says the
    /// snapshot is under way, so the next start only copies every table again).
    fn record_or_report(&self, state: Option<&OnDemand>) {
        if let Err(error) = self.record_on_demand(state) {
            tracing::error!(source = %self.config.id, %error, "the snapshot on demand could not be recorded");
            self.registry.set(
                &self.config.id.to_string(),
                State::Failed,
                Some(error.to_string()),
            );
        }
    }

    /// One attempt: its consistent point and rows once delivered.
    async fn attempt_once(
        &self,
        attempt: &mut Attempt<'_>,
        cancel: &CancellationToken,
    ) -> Result<(Lsn, u64), RunError> {
        match attempt {
            Attempt::EveryTable => {
                let (point, rows) = resnapshot(
                    &self.config,
                    self.tables.clone(),
                    &self.output,
                    &self.registry,
                    cancel,
                )
                .await?;
                advance_slot(&self.config, point).await?;
                Ok((point, rows))
            }
            Attempt::SomeTables(tables, anchor) => {
                snapshot_tables(
                    &self.config,
                    tables,
                    anchor,
                    &self.output,
                    &self.registry,
                    cancel,
                )
                .await
            }
        }
    }

    /// `attempt` until it succeeds, waiting between attempts: its consistent point and rows,
    /// or `None` if cancelled first.
    async fn until_taken(
        &self,
        cancel: &CancellationToken,
        mut attempt: Attempt<'_>,
    ) -> Option<(Lsn, u64)> {
        let id = self.config.id.to_string();
        let mut number = 0u32;
        loop {
            number += 1;
            match self.attempt_once(&mut attempt, cancel).await {
                Ok((point, rows)) => {
                    tracing::info!(source = %id, rows, %point, attempt = number,
                        "snapshot on demand delivered");
                    return Some((point, rows));
                }
                Err(error) => {
                    tracing::error!(source = %id, %error, attempt = number,
                        "snapshot on demand failed; taking it again before streaming");
                    self.registry.set(
                        &id,
                        State::Failed,
                        Some(format!("snapshot on demand, attempt {number}: {error}")),
                    );
                }
            }
            tokio::select! {
                () = tokio::time::sleep(AGAIN_AFTER) => {}
                () = cancel.cancelled() => return None,
            }
        }
    }
}
