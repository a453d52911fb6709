//! A source's first start: its snapshot copied to the consumers, then the stream from the slot's
//! consistent point. The bootstrap is recorded as complete (a file in the state directory) only
//! once every snapshot batch was delivered by every consumer, so a restart never streams past a
//! snapshot the consumers did not finish.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use surefoot_bootstrap::postgres::Exported;
use surefoot_bootstrap::{BootstrapConfig, PostgresProvider};
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{
    AckOutcome, AckToken, Batch, BatchReceiver, BatchSender, SnapshotRequest, batch_channel,
};
use surefoot_source_postgres::{PostgresSource, PostgresSourceConfig};
use tokio::sync::watch;

use super::error::{RunError, chain};
use super::progress::Progress;
use super::registry::{Registry, State};

/// How often a bootstrap in progress logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Where a source's completed bootstrap is recorded.
pub(crate) fn marker_path(state_dir: &Path, source: &str) -> PathBuf {
    state_dir
        .join("sources")
        .join(format!("{source}.bootstrapped"))
}

/// Snapshot batches sent and not yet settled, and whether one failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    unsettled: u64,
    failed: bool,
}

/// The snapshot, then the stream: returns the started source, and a future that resolves once
/// every snapshot batch was delivered (then the bootstrap is recorded) or one failed.
pub(crate) async fn bootstrap(
    config: PostgresSourceConfig,
    output: BatchSender,
    registry: &Registry,
    cancel: &CancellationToken,
) -> Result<(PostgresSource, SnapshotDelivered), RunError> {
    let id = config.id.to_string();
    let provider = PostgresProvider::first_start(config, BootstrapConfig::default())
        .map_err(|error| RunError::source(&id, chain(&error)))?;
    let request = SnapshotRequest {
        consumer: id.clone(),
        tables: Vec::new(),
    };
    let (exported, delivered) = export_counted(&provider, &request, &id, &output, registry, cancel)
        .await
        .map_err(|failure| {
            failure
                .into_error(|reason| RunError::source(&id, format!("bootstrap failed: {reason}")))
        })?;
    tracing::info!(source = %id, rows = exported.complete.rows, "bootstrap: snapshot sent; streaming");
    let source = provider.stream_after(exported, output);
    Ok((source, delivered))
}

/// Why a counted export failed.
pub(crate) enum ExportFailed {
    /// The snapshot itself, with the reason.
    Snapshot(String),
    /// Forwarding it (the consumers went).
    Forward(RunError),
}

impl ExportFailed {
    /// The error, a snapshot's reason described by `describe`.
    pub(crate) fn into_error(self, describe: impl FnOnce(String) -> RunError) -> RunError {
        match self {
            ExportFailed::Snapshot(reason) => describe(reason),
            ExportFailed::Forward(error) => error,
        }
    }
}

/// Exports `provider`'s snapshot for `request` to `output` (source `id`'s), each batch counted
/// and progress logged: what was exported, and the wait for every batch's delivery.
pub(crate) async fn export_counted(
    provider: &PostgresProvider,
    request: &SnapshotRequest,
    id: &str,
    output: &BatchSender,
    registry: &Registry,
    cancel: &CancellationToken,
) -> Result<(Exported, SnapshotDelivered), ExportFailed> {
    let (tally, tally_seen) = watch::channel(Tally::default());
    let tally = Arc::new(tally);
    let (snapshot_output, mut snapshot_input) = batch_channel(16);
    let estimate = provider.estimated_rows();
    let exporting = async {
        let exported = provider.export(request, &snapshot_output, cancel).await;
        drop(snapshot_output);
        exported
    };
    let forwarding = forward(id, &mut snapshot_input, output, &tally, estimate, registry);
    let (exported, forwarded) = tokio::join!(exporting, forwarding);
    let exported = exported.map_err(|error| ExportFailed::Snapshot(chain(&error)))?;
    forwarded.map_err(ExportFailed::Forward)?;
    let rows = exported.complete.rows;
    Ok((
        exported,
        SnapshotDelivered {
            tally: tally_seen,
            rows,
        },
    ))
}

/// Forwards the snapshot's batches to `output`, each counted in `tally`, logging progress;
/// returns the rows forwarded.
pub(crate) async fn forward(
    id: &str,
    snapshot_input: &mut BatchReceiver,
    output: &BatchSender,
    tally: &Arc<watch::Sender<Tally>>,
    estimate: watch::Receiver<Option<u64>>,
    registry: &Registry,
) -> Result<u64, RunError> {
    let (mut rows, started, mut logged) = (0u64, Instant::now(), Instant::now());
    while let Some(batch) = snapshot_input.recv().await {
        rows += batch.changes.len() as u64;
        if logged.elapsed() >= PROGRESS_EVERY {
            let progress = Progress {
                rows,
                estimated: *estimate.borrow(),
                elapsed: started.elapsed(),
            };
            progress.log(id);
            registry.set(id, State::Bootstrapping, Some(progress.to_string()));
            logged = Instant::now();
        }
        if output.send(counted(batch, tally)).await.is_err() {
            return Err(RunError::source(
                id,
                "the consumers stopped during the bootstrap",
            ));
        }
    }
    Ok(rows)
}

/// Waits for the snapshot's delivery.
#[derive(Debug)]
pub(crate) struct SnapshotDelivered {
    pub(crate) tally: watch::Receiver<Tally>,
    pub(crate) rows: u64,
}

impl SnapshotDelivered {
    /// Resolves once every snapshot batch is settled: `Ok(rows)` if all were delivered.
    pub(crate) async fn wait(mut self) -> Result<u64, String> {
        let settled = self
            .tally
            .wait_for(|tally| tally.failed || tally.unsettled == 0)
            .await
            .map(|tally| *tally)
            .map_err(|_| "the snapshot's tally was dropped".to_owned())?;
        if settled.failed {
            Err("a snapshot batch was not delivered".to_owned())
        } else {
            Ok(self.rows)
        }
    }
}

/// `batch` with a token that also counts its settlement in `tally`.
pub(crate) fn counted(mut batch: Batch, tally: &Arc<watch::Sender<Tally>>) -> Batch {
    tally.send_modify(|t| t.unsettled += 1);
    let original = std::mem::replace(&mut batch.ack, AckToken::detached());
    let tally = Arc::clone(tally);
    batch.ack = AckToken::new(move |outcome| {
        original.settle_with(outcome);
        tally.send_modify(|t| {
            t.unsettled -= 1;
            t.failed |= outcome != AckOutcome::Delivered;
        });
    });
    batch
}

/// Records the bootstrap of `source` as complete (written to a temporary file, synced, renamed).
pub(crate) fn record_bootstrap(state_dir: &Path, source: &str, rows: u64) -> Result<(), RunError> {
    let path = marker_path(state_dir, source);
    let text = format!("{{\"source\":{source:?},\"rows\":{rows}}}\n");
    super::state_file::write_durably(&path, text.as_bytes())
        .map_err(|error| RunError::State(format!("{}: {error}", path.display())))
}
