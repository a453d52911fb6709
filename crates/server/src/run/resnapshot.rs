//! A snapshot on demand (`POST /api/v1/sources/{id}/snapshot`): every table of a source copied
//! again to every consumer, for a target that drifted. Every table, because the slot then moves
//! past the snapshot: a change committed between the last watermark and the snapshot reaches
//! the consumers only inside it. (Some tables are copied differently: see `table_snapshot`.)
//! The source stops streaming (its final
//! watermark W is confirmed: every consumer delivered what it took), a temporary slot with an
//! exported snapshot is taken now (its consistent point C is after everything sent), and every
//! consumer is sent, through the source's fan-out, one batch truncating the tables and then
//! their rows. Once every consumer delivered all of it, the source's slot is advanced from W to
//! C (what lies between is in the snapshot) and the source streams again from C.
//!
//! Positions: the truncates sit at `(C - 2, 0)` and the rows at the snapshot's own positions
//! (ordered as if committed at `C - 1`), so both sort after everything a consumer holds (all
//! committed before C, whose commit records end at or before C) and before the stream from C.
//! While it runs, a consumer's copy of the tables is emptied and then filled again.

use std::sync::Arc;

use surefoot_bootstrap::postgres::SnapshotConnection;
use surefoot_bootstrap::{BootstrapConfig, PostgresProvider};
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{
    AckToken, Batch, BatchSender, Change, Lsn, Position, SnapshotRequest, TableRef, batch_channel,
};
use surefoot_source_postgres::{PostgresSourceConfig, SlotName};
use tokio::sync::watch;

use super::added::temporary_slot;
use super::error::{RunError, chain};
use super::registry::{Registry, State};
use super::snapshot::{SnapshotDelivered, Tally, counted, forward};

/// The snapshot of `tables` sent to `output`, the
/// source's fan-out, with the source stopped; returns the consistent point to advance the
/// source's slot to, and the rows sent, once every consumer delivered them.
pub(crate) async fn resnapshot(
    config: &PostgresSourceConfig,
    tables: Vec<TableRef>,
    output: &BatchSender,
    registry: &Registry,
    cancel: &CancellationToken,
) -> Result<(Lsn, u64), RunError> {
    let id = config.id.to_string();
    let slot = SlotName::parse(&temporary_slot(&id, "snapshot"))
        .map_err(|error| RunError::source(&id, chain(&error)))?;
    let provider =
        PostgresProvider::added_consumer(config.clone(), slot, BootstrapConfig::default())
            .map_err(|error| RunError::source(&id, chain(&error)))?;
    let request = SnapshotRequest {
        consumer: format!("{id}-snapshot"),
        tables: tables.clone(),
    };
    let (tally, tally_seen) = watch::channel(Tally::default());
    let tally = Arc::new(tally);
    let (snapshot_output, mut snapshot_input) = batch_channel(16);
    let (truncates, mut truncates_input) = batch_channel(1);
    let estimate = provider.estimated_rows();
    let exporting = async {
        let exported = provider.export(&request, &snapshot_output, cancel).await;
        drop(snapshot_output);
        exported
    };
    // The truncates go first: at the first row's consistent point, or after the export when
    // the tables are empty.
    let forwarding = async {
        let first = snapshot_input.recv().await;
        if let Some(batch) = &first {
            let point = consistent_point(batch.first);
            send_truncates(&id, &tables, point, output, &tally).await?;
        }
        let mut rest = first.into_iter().collect::<Vec<_>>();
        for batch in rest.drain(..) {
            truncates
                .send(batch)
                .await
                .map_err(|_| RunError::source(&id, "the consumers stopped during the snapshot"))?;
        }
        drop(truncates);
        let head = forward(
            &id,
            &mut truncates_input,
            output,
            &tally,
            estimate.clone(),
            registry,
        )
        .await?;
        let tail = forward(&id, &mut snapshot_input, output, &tally, estimate, registry).await?;
        Ok::<u64, RunError>(head + tail)
    };
    let (exported, forwarded) = tokio::join!(exporting, forwarding);
    let exported = exported
        .map_err(|error| RunError::source(&id, format!("snapshot failed: {}", chain(&error))))?;
    let forwarded = forwarded?;
    let point = exported.slot.consistent_point();
    if forwarded == 0 {
        send_truncates(&id, &tables, point, output, &tally).await?;
    }
    // The source's own slot goes on; the temporary one goes with its session.
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
        delivered = delivered.wait() => delivered.map_err(|reason| RunError::source(&id, reason))?,
        () = cancel.cancelled() => return Err(RunError::source(&id, "stopped before the snapshot was delivered")),
    };
    Ok((point, rows))
}

/// The consistent point of a snapshot row's position.
fn consistent_point(position: Position) -> Lsn {
    match position {
        Position::Snapshot {
            consistent_point, ..
        } => consistent_point,
        _ => Lsn::ZERO,
    }
}

/// One batch truncating `tables`, just before the snapshot taken at `point`.
async fn send_truncates(
    id: &str,
    tables: &[TableRef],
    point: Lsn,
    output: &BatchSender,
    tally: &Arc<watch::Sender<Tally>>,
) -> Result<(), RunError> {
    let position = Position::postgres(Lsn(point.0.saturating_sub(2)), 0);
    let changes: Vec<Change> = tables
        .iter()
        .map(|table| Change::truncate(position, table.clone()))
        .collect();
    let batch = Batch {
        source: surefoot_core_model::SourceId::new(id),
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

/// Advances the source's slot to `point` (it is not streaming): what lies before is in the
/// snapshot every consumer delivered.
pub(crate) async fn advance_slot(
    config: &PostgresSourceConfig,
    point: Lsn,
) -> Result<(), RunError> {
    let id = config.id.to_string();
    let failed = |reason: String| RunError::source(&id, format!("advance the slot: {reason}"));
    let connection = SnapshotConnection::open(
        config.sql_config(&format!("surefoot-{id}-snapshot")),
        &config.tls,
        &BootstrapConfig::default(),
    )
    .await
    .map_err(|error| failed(chain(&error)))?;
    let slot = config.slot.as_str();
    let point = point.to_string();
    let point = point.as_str();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&slot, &point];
    let advance = connection.client().execute(
        "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
        &params,
    );
    let limit = BootstrapConfig::default().statement_timeout;
    match surefoot_core_lifecycle::timeout("advance the slot", limit, advance).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(failed(chain(&error))),
        Err(error) => Err(failed(chain(&error))),
    }
}
