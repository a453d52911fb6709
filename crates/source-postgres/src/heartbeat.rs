//! The heartbeat: a `pg_logical_emit_message` at a fixed interval, so that an idle slot keeps
//! advancing (the stream carries the message, and with nothing in flight its position is
//! confirmed) and a dead replication connection is noticed (the stream stays silent past the
//! liveness timeout). It also samples replication lag and retained WAL for the metrics.

use std::sync::Arc;
use std::time::Duration;

use surefoot_core_lifecycle::CancellationToken;
use tokio::time::MissedTickBehavior;

use crate::error::SourceError;
use crate::source::Shared;
use crate::sql::SqlConnection;

/// The prefix of the source's heartbeat messages.
pub const HEARTBEAT_PREFIX: &str = "surefoot.heartbeat";

/// Emits heartbeats until cancelled. A failed heartbeat is logged and retried at the next tick
/// on a new connection; it never ends the task (the replication task owns failure).
pub(crate) async fn run_heartbeat(
    shared: Arc<Shared>,
    interval: Duration,
    cancel: CancellationToken,
) -> Result<(), SourceError> {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut connection: Option<SqlConnection> = None;
    let mut beat: u64 = 0;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            _ = ticks.tick() => {}
        }
        beat += 1;
        if let Err(error) = heartbeat_once(&shared, &mut connection, beat).await {
            tracing::warn!(source = %shared.config.id, %error, "heartbeat failed; retrying at the next tick");
            connection = None;
        }
    }
}

async fn heartbeat_once(
    shared: &Shared,
    connection: &mut Option<SqlConnection>,
    beat: u64,
) -> Result<(), SourceError> {
    if connection.as_ref().is_none_or(SqlConnection::is_closed) {
        *connection = Some(SqlConnection::open(&shared.config, "heartbeat").await?);
    }
    let Some(sql) = connection.as_ref() else {
        return Ok(());
    };
    let content = beat.to_string();
    sql.run("emit heartbeat", |client| async move {
        client
            .execute(
                "SELECT pg_logical_emit_message(false, $1, $2)",
                &[&HEARTBEAT_PREFIX, &content],
            )
            .await
            .map_err(|error| SourceError::query("emit heartbeat", error))
    })
    .await?;
    let slot = shared.config.slot.as_str();
    let row = sql
        .run("sample slot lag", |client| async move {
            client
                .query_opt(
                    "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, \
                            (pg_current_wal_lsn() - restart_lsn)::bigint \
                     FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await
                .map_err(|error| SourceError::query("sample slot lag", error))
        })
        .await?;
    if let Some(row) = row {
        let bytes = |index: usize| {
            let value: Option<i64> = row.get(index);
            value.and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
        };
        shared.metrics.wal_positions(bytes(0), bytes(1));
        shared
            .lag_bytes
            .store(bytes(0), std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}
