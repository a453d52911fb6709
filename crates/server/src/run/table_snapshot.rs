//! A snapshot on demand of some of a source's tables (`POST /api/v1/sources/{id}/snapshot` with
//! `tables`). Unlike a snapshot of every table (see `resnapshot`), the slot does not move past
//! it: the other tables' changes committed meanwhile reach the consumers only through the
//! stream. So the source stops at its watermark F, the tables are copied from a temporary
//! slot's snapshot (consistent point C), and the source streams again from F, its fan-out
//! dropping the copied tables' changes committed before C (see `skip`).
//!
//! Positions: the truncate and the rows are given the snapshot positions of a consistent point
//! at F (ordered as if committed at `F - 1`): after everything the consumers hold (committed
//! before F) and before everything the stream sends again (committed at F or later). Rows are
//! numbered on from where the last attempt at this anchor stopped, so an attempt taken again
//! sorts after the part of a failed one the consumers hold. No earlier snapshot shares the
//! anchor: before stopping, the source confirms past a logical message emitted just then, so
//! F is later than the consistent point of every snapshot taken before.
//!
//! While the stream is between F and C, the copied tables are at C and the others behind them.

use std::sync::Arc;

use surefoot_bootstrap::postgres::SnapshotConnection;
use surefoot_bootstrap::{BootstrapConfig, PostgresProvider};
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{
    AckToken, Batch, BatchSender, Change, Lsn, Position, SnapshotRequest, SourceId, TableRef,
    batch_channel,
};
use surefoot_source_postgres::{PostgresSourceConfig, SlotName};
use tokio::sync::watch;

use super::added::temporary_slot;
use super::error::{RunError, chain};
use super::registry::{Registry, State};
use super::snapshot::{SnapshotDelivered, Tally, counted, forward};

/// The place a snapshot of some tables takes among a stopped source's positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Anchor {
    /// The source's confirmed position once stopped (F).
    pub(crate) at: Lsn,
    /// The next row number free at this anchor.
    pub(crate) next_row: u64,
}

impl Anchor {
    /// The next free position at the anchor.
    fn take(&mut self) -> Position {
        let position = Position::snapshot(self.at, self.next_row);
        self.next_row += 1;
        position
    }

    /// `batch` with each change moved to the anchor's next free position.
    fn reposition(&mut self, batch: Batch) -> Batch {
        let changes: Vec<Change> = batch
            .changes
            .iter()
            .map(|change| Change {
                position: self.take(),
                ..change.clone()
            })
            .collect();
        let (first, last) = match (changes.first(), changes.last()) {
            (Some(first), Some(last)) => (first.position, last.position),
            _ => (batch.first, batch.last),
        };
        Batch {
            first,
            last,
            changes: changes.into(),
            ..batch
        }
    }
}

/// Copies `tables` to `output` (the source's fan-out; the source is stopped) at `anchor`: one
/// batch truncating them, then their rows. Returns the snapshot's consistent point C and the
/// rows copied, once every consumer delivered them.
pub(crate) async fn snapshot_tables(
    config: &PostgresSourceConfig,
    tables: &[TableRef],
    anchor: &mut Anchor,
    output: &BatchSender,
    registry: &Registry,
    cancel: &CancellationToken,
) -> Result<(Lsn, u64), RunError> {
    let id = config.id.to_string();
    let failed = |reason: String| RunError::source(&id, reason);
    let slot =
        SlotName::parse(&temporary_slot(&id, "snapshot")).map_err(|error| failed(chain(&error)))?;
    let provider =
        PostgresProvider::added_consumer(config.clone(), slot, BootstrapConfig::default())
            .map_err(|error| failed(chain(&error)))?;
    let request = SnapshotRequest {
        consumer: format!("{id}-snapshot"),
        tables: tables.to_vec(),
    };
    let (tally, tally_seen) = watch::channel(Tally::default());
    let tally = Arc::new(tally);
    send_truncates(&id, tables, anchor.take(), output, &tally).await?;
    let (snapshot_output, mut snapshot_input) = batch_channel(16);
    let (moved_output, mut moved_input) = batch_channel(16);
    let estimate = provider.estimated_rows();
    let exporting = async {
        let exported = provider.export(&request, &snapshot_output, cancel).await;
        drop(snapshot_output);
        exported
    };
    // Each stage owns its receiver, so a stage that ends closes the channel behind it and the
    // one before it ends too, instead of waiting on a channel nobody reads.
    let moving = async move {
        while let Some(batch) = snapshot_input.recv().await {
            if moved_output.send(anchor.reposition(batch)).await.is_err() {
                break;
            }
        }
    };
    let forwarding = async {
        let forwarded = forward(&id, &mut moved_input, output, &tally, estimate, registry).await;
        drop(moved_input);
        forwarded
    };
    let (exported, (), forwarded) = tokio::join!(exporting, moving, forwarding);
    let exported =
        exported.map_err(|error| failed(format!("snapshot failed: {}", chain(&error))))?;
    let forwarded = forwarded?;
    let point = exported.slot.consistent_point();
    exported.slot.close();
    registry.set(
        &id,
        State::Bootstrapping,
        Some(format!(
            "snapshot of {forwarded} rows sent; waiting for delivery"
        )),
    );
    let delivered = SnapshotDelivered {
        tally: tally_seen,
        rows: forwarded,
    };
    let rows = tokio::select! {
        delivered = delivered.wait() => delivered.map_err(failed)?,
        () = cancel.cancelled() => return Err(failed("stopped before the snapshot was delivered".to_owned())),
    };
    Ok((point, rows))
}

/// One batch truncating `tables` at `position`.
async fn send_truncates(
    id: &str,
    tables: &[TableRef],
    position: Position,
    output: &BatchSender,
    tally: &Arc<watch::Sender<Tally>>,
) -> Result<(), RunError> {
    let changes: Vec<Change> = tables
        .iter()
        .map(|table| Change::truncate(position, table.clone()))
        .collect();
    let batch = Batch {
        source: SourceId::new(id),
        first: position,
        last: position,
        commit_time: None,
        changes: changes.into(),
        ack: AckToken::detached(),
    };
    output
        .send(counted(batch, tally))
        .await
        .map_err(|_| RunError::source(id, "the consumers stopped during the snapshot"))
}

/// Emits a logical message on the source's server: the LSN it was written at. A source that
/// confirms past it has delivered everything committed before it.
pub(crate) async fn emit_marker(config: &PostgresSourceConfig) -> Result<Lsn, RunError> {
    let id = config.id.to_string();
    let failed = |reason: String| RunError::source(&id, format!("mark the stream: {reason}"));
    let connection = SnapshotConnection::open(
        config.sql_config(&format!("surefoot-{id}-snapshot")),
        &config.tls,
        &BootstrapConfig::default(),
    )
    .await
    .map_err(|error| failed(chain(&error)))?;
    let emit = connection.client().query_one(
        "SELECT pg_logical_emit_message(true, 'surefoot.snapshot', '')::text",
        &[],
    );
    let limit = BootstrapConfig::default().statement_timeout;
    let row = match surefoot_core_lifecycle::timeout("mark the stream", limit, emit).await {
        Ok(Ok(row)) => row,
        Ok(Err(error)) => return Err(failed(chain(&error))),
        Err(error) => return Err(failed(chain(&error))),
    };
    let text: String = row.try_get(0).map_err(|error| failed(chain(&error)))?;
    text.parse()
        .map_err(|error| failed(format!("`{text}` is not an LSN: {error}")))
}
