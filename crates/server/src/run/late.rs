//! A query added to the file after its source was bootstrapped gets a snapshot of its own at
//! start, before the source streams: a temporary slot with an exported snapshot (taken now,
//! so its consistent point C is at or after everything the source's slot has confirmed), the
//! rows sent into the query alone, and the slot dropped. Then the query follows the source's
//! own stream, which resumes from its slot, at or before C: the query skips every change at or
//! below the snapshot's last position (those committed before C, which the snapshot holds)
//! and applies the rest, so nothing is missed or applied twice (the positions of
//! `docs/decisions/0005-snapshot-handoff.md`).
//!
//! A file marks the snapshot as under way until every batch of it was delivered; a start that
//! finds it refuses the query, whose state and targets then hold part of a snapshot.

use std::path::{Path, PathBuf};

use surefoot_bootstrap::{BootstrapConfig, PostgresProvider};
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{BatchSender, SnapshotRequest};
use surefoot_source_postgres::{PostgresSourceConfig, SlotName};

use super::added::temporary_slot;
use super::error::{RunError, chain};
use super::registry::{Registry, State};
use super::snapshot::export_counted;

/// A query that needs a snapshot of a bootstrapped source before the source streams.
#[derive(Debug)]
pub(crate) struct LateQuery {
    pub(crate) query: String,
    /// The query's own input (not the source's fan-out).
    pub(crate) input: BatchSender,
    /// The marker of the snapshot under way.
    pub(crate) pending: PathBuf,
}

/// Where the marker of query `query`'s snapshot of `source` is kept while under way.
pub(crate) fn pending_path(state_dir: &Path, source: &str, query: &str) -> PathBuf {
    state_dir
        .join("queries")
        .join(format!("{query}.snapshot-of-{source}.pending"))
}

/// Sends `late.query` a snapshot of `config`'s tables and waits until every batch of it was
/// delivered (the query's reactions applied its results); then removes the marker.
pub(crate) async fn snapshot_for_late_query(
    config: &PostgresSourceConfig,
    late: &LateQuery,
    registry: &Registry,
    cancel: &CancellationToken,
) -> Result<u64, RunError> {
    let id = config.id.to_string();
    let query = late.query.as_str();
    write_marker(&late.pending)?;
    registry.set(
        query,
        State::Bootstrapping,
        Some(format!("snapshot of `{id}`")),
    );
    tracing::info!(source = %id, %query, "a query new to the file: taking a snapshot for it");
    let slot = SlotName::parse(&temporary_slot(&id, query))
        .map_err(|error| RunError::source(&id, chain(&error)))?;
    // The source's own id: the snapshot's positions then compare with its stream's.
    let provider =
        PostgresProvider::added_consumer(config.clone(), slot, BootstrapConfig::default())
            .map_err(|error| RunError::source(&id, chain(&error)))?;
    let request = SnapshotRequest {
        consumer: query.to_owned(),
        tables: Vec::new(),
    };
    let (exported, delivered) =
        export_counted(&provider, &request, &id, &late.input, registry, cancel)
            .await
            .map_err(|failure| {
                failure.into_error(|reason| {
                    RunError::query(query, format!("snapshot of `{id}` failed: {reason}"))
                })
            })?;
    // The query streams from the source's own slot: the temporary one goes with its session.
    exported.slot.close();
    let rows = tokio::select! {
        delivered = delivered.wait() => delivered.map_err(|reason| RunError::query(query, reason))?,
        () = cancel.cancelled() => {
            return Err(RunError::query(query, "stopped before its snapshot was delivered"));
        }
    };
    remove_marker(&late.pending)?;
    registry.set(query, State::Running, None);
    tracing::info!(source = %id, %query, rows, "the new query's snapshot was delivered");
    Ok(rows)
}

fn write_marker(path: &Path) -> Result<(), RunError> {
    super::state_file::write_durably(path, b"")
        .map_err(|error| RunError::State(format!("{}: {error}", path.display())))
}

fn remove_marker(path: &Path) -> Result<(), RunError> {
    super::state_file::remove_durably(path)
        .map_err(|error| RunError::State(format!("{}: {error}", path.display())))
}
