//! Checkpoints: the last position applied per (sink, source), locked for the length of the sink
//! transaction and advanced in it.

use sqlx::PgConnection;
use surefoot_core_model::Position;

use crate::error::WriterError;
use crate::position::StoredPosition;

/// Locks the (sink, source) checkpoint row (creating it empty when missing) and returns the
/// position it holds. The row lock serialises writers of the same sink and source: a second
/// writer waits here, then sees what the first committed.
pub(crate) async fn lock(
    conn: &mut PgConnection,
    sink: &str,
    source: &str,
) -> Result<Option<Position>, WriterError> {
    const SELECT: &str = "SELECT kind, major, minor FROM surefoot_writer.checkpoint \
                          WHERE sink = $1 AND source = $2 FOR UPDATE";
    for _ in 0..2 {
        let row: Option<(Option<String>, Option<i64>, Option<i64>)> = sqlx::query_as(SELECT)
            .bind(sink)
            .bind(source)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| WriterError::sql("lock the checkpoint", e))?;
        match row {
            Some((Some(kind), Some(major), Some(minor))) => {
                return StoredPosition::decode(&kind, major, minor)
                    .map(Some)
                    .ok_or_else(|| WriterError::PositionRange(format!("{kind}:{major}:{minor}")));
            }
            Some(_) => return Ok(None),
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
    Ok(None)
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
