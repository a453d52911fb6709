//! Checkpoints: the last position applied per (sink, source), locked for the length of the sink
//! transaction and advanced in it.

use sqlx::PgConnection;
use surefoot_core_model::Position;

use super::record::{Item, Key, pack};
use crate::error::WriterError;
use crate::position::StoredPosition;

/// A locked checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Locked {
    /// The last position applied, if any.
    pub(crate) seen: Option<Position>,
    /// Positions at or below this were applied before applied-batch records were kept
    /// (migration 0003): a replay of them is skipped unproven, as before.
    pub(crate) unrecorded: Option<Key>,
}

/// Locks the (sink, source) checkpoint row (creating it empty when missing) and returns the
/// position it holds. The row lock serialises writers of the same sink and source: a second
/// writer waits here, then sees what the first committed.
pub(crate) async fn lock(
    conn: &mut PgConnection,
    sink: &str,
    source: &str,
) -> Result<Locked, WriterError> {
    const SELECT: &str = "SELECT kind, major, minor, unrecorded_major, unrecorded_minor \
                          FROM surefoot_writer.checkpoint \
                          WHERE sink = $1 AND source = $2 FOR UPDATE";
    type Columns = (
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );
    for _ in 0..2 {
        let row: Option<Columns> = sqlx::query_as(SELECT)
            .bind(sink)
            .bind(source)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| WriterError::sql("lock the checkpoint", e))?;
        match row {
            Some((kind, major, minor, unrecorded_major, unrecorded_minor)) => {
                let unrecorded = unrecorded_major.zip(unrecorded_minor);
                let (Some(kind), Some(major), Some(minor)) = (kind, major, minor) else {
                    return Ok(Locked::default());
                };
                let seen = StoredPosition::decode(&kind, major, minor)
                    .ok_or_else(|| WriterError::PositionRange(format!("{kind}:{major}:{minor}")))?;
                return Ok(Locked {
                    seen: Some(seen),
                    unrecorded,
                });
            }
            None => {
                sqlx::query(
                    "INSERT INTO surefoot_writer.checkpoint (sink, source) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(sink)
                .bind(source)
                .execute(&mut *conn)
                .await
                .map_err(|e| WriterError::sql("create the checkpoint", e))?;
            }
        }
    }
    Ok(Locked::default())
}

/// Advances the checkpoint to `position`; a position at or below the stored one leaves it as it
/// is, so the checkpoint never goes backwards.
pub(crate) async fn advance(
    conn: &mut PgConnection,
    sink: &str,
    source: &str,
    position: Position,
) -> Result<(), WriterError> {
    let stored = StoredPosition::encode(position)?;
    sqlx::query(
        "UPDATE surefoot_writer.checkpoint SET kind = $3, major = $4, minor = $5, \
         updated_at = now() WHERE sink = $1 AND source = $2 \
         AND (major IS NULL OR (major, minor) < ($4, $5))",
    )
    .bind(sink)
    .bind(source)
    .bind(stored.kind)
    .bind(stored.major)
    .bind(stored.minor)
    .execute(conn)
    .await
    .map_err(|e| WriterError::sql("advance the checkpoint", e))?;
    Ok(())
}

/// Advances the checkpoint to `position` as [`advance`] does and, in the same statement, records
/// `items`, the batches the transaction applied from this source (see `record`).
pub(crate) async fn advance_recording(
    conn: &mut PgConnection,
    sink: &str,
    source: &str,
    position: Position,
    items: &[Item],
) -> Result<(), WriterError> {
    let (Some(first), Some(last)) = (items.first(), items.last()) else {
        return advance(conn, sink, source, position).await;
    };
    let stored = StoredPosition::encode(position)?;
    sqlx::query(
        "WITH recorded AS (INSERT INTO surefoot_writer.applied \
           (sink, source, first_major, first_minor, last_major, last_minor, batches) \
           VALUES ($1, $2, $6, $7, $8, $9, $10)) \
         UPDATE surefoot_writer.checkpoint SET kind = $3, major = $4, minor = $5, \
         updated_at = now() WHERE sink = $1 AND source = $2 \
         AND (major IS NULL OR (major, minor) < ($4, $5))",
    )
    .bind(sink)
    .bind(source)
    .bind(stored.kind)
    .bind(stored.major)
    .bind(stored.minor)
    .bind(first.first.0)
    .bind(first.first.1)
    .bind(last.last.0)
    .bind(last.last.1)
    .bind(pack(items))
    .execute(conn)
    .await
    .map_err(|e| WriterError::sql("advance the checkpoint and record the batches", e))?;
    Ok(())
}

/// The checkpoint of (sink, source), without locking.
pub(crate) async fn read(
    conn: &mut PgConnection,
    sink: &str,
    source: &str,
) -> Result<Option<Position>, WriterError> {
    let row: Option<(Option<String>, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT kind, major, minor FROM surefoot_writer.checkpoint \
         WHERE sink = $1 AND source = $2",
    )
    .bind(sink)
    .bind(source)
    .fetch_optional(conn)
    .await
    .map_err(|e| WriterError::sql("read the checkpoint", e))?;
    Ok(match row {
        Some((Some(kind), Some(major), Some(minor))) => StoredPosition::decode(&kind, major, minor),
        _ => None,
    })
}
