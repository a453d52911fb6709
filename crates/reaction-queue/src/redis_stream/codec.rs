//! How a batch is laid out in a stream entry: fields `source`, `first`, `last` (positions as
//! JSON), `commit_time` (RFC 3339, empty when unknown) and `changes` (JSON array).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use redis::streams::StreamId;
use surefoot_core_model::{AckToken, Batch, Change, Position, SourceId};

use super::error::RedisQueueError;

/// Appends `XADD <stream> * <fields>` for `batch` to `pipe`.
pub(crate) fn add_xadd(
    pipe: &mut redis::Pipeline,
    stream: &str,
    batch: &Batch,
) -> Result<(), RedisQueueError> {
    let encode = |error: serde_json::Error| RedisQueueError::Codec {
        stream: stream.to_owned(),
        id: "-".to_owned(),
        reason: error.to_string(),
    };
    let first = serde_json::to_string(&batch.first).map_err(encode)?;
    let last = serde_json::to_string(&batch.last).map_err(encode)?;
    let changes = serde_json::to_string(&*batch.changes).map_err(encode)?;
    let commit_time = batch
        .commit_time
        .map(|time| time.to_rfc3339())
        .unwrap_or_default();
    pipe.cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("source")
        .arg(batch.source.as_str())
        .arg("first")
        .arg(first)
        .arg("last")
        .arg(last)
        .arg("commit_time")
        .arg(commit_time)
        .arg("changes")
        .arg(changes);
    Ok(())
}

/// The batch in `entry`, with `ack` as its token.
pub(crate) fn decode(
    stream: &str,
    entry: &StreamId,
    ack: AckToken,
) -> Result<Batch, RedisQueueError> {
    let fail = |reason: String| RedisQueueError::Codec {
        stream: stream.to_owned(),
        id: entry.id.clone(),
        reason,
    };
    let text = |field: &str| -> Result<String, RedisQueueError> {
        entry
            .get::<String>(field)
            .ok_or_else(|| fail(format!("field `{field}` is missing")))
    };
    let position = |field: &str| -> Result<Position, RedisQueueError> {
        serde_json::from_str(&text(field)?).map_err(|error| fail(format!("`{field}`: {error}")))
    };
    let commit_time = text("commit_time")?;
    let commit_time = if commit_time.is_empty() {
        None
    } else {
        Some(
            DateTime::parse_from_rfc3339(&commit_time)
                .map_err(|error| fail(format!("`commit_time`: {error}")))?
                .with_timezone(&Utc),
        )
    };
    let changes: Vec<Change> = serde_json::from_str(&text("changes")?)
        .map_err(|error| fail(format!("`changes`: {error}")))?;
    Ok(Batch {
        source: SourceId::new(text("source")?),
        first: position("first")?,
        last: position("last")?,
        commit_time,
        changes: Arc::from(changes),
        ack,
    })
}

/// Milliseconds since the epoch at which the entry was added (the first part of its id).
pub(crate) fn added_at_millis(id: &str) -> Option<i64> {
    id.split('-').next()?.parse().ok()
}
