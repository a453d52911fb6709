//! How a batch is laid out in a stream entry: fields `source`, `first`, `last` (positions as
//! JSON), `commit_time` (RFC 3339, empty when unknown) and `changes` (JSON array).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use redis::RedisWrite;
use redis::streams::StreamId;
use serde::Serialize;
use surefoot_core_model::{AckToken, Batch, Change, Position, SourceId};

use super::error::RedisQueueError;

/// Bytes reserved up front for one `XADD`'s arguments (a one-change batch needs about 300);
/// larger batches grow the buffer.
const XADD_BYTES: usize = 512;

/// Appends `XADD <stream> * <fields>` for `batch` to `pipe`.
///
/// The JSON fields are serialized into `scratch` (reused across fields and batches, so no
/// string is allocated per field) and copied into the command's buffer, which is sized up
/// front.
pub(crate) fn add_xadd(
    pipe: &mut redis::Pipeline,
    stream: &str,
    batch: &Batch,
    scratch: &mut Vec<u8>,
) -> Result<(), RedisQueueError> {
    let encode = |error: serde_json::Error| RedisQueueError::Codec {
        stream: stream.to_owned(),
        id: "-".to_owned(),
        reason: error.to_string(),
    };
    let mut cmd = redis::Cmd::with_capacity(13, XADD_BYTES + stream.len());
    cmd.arg("XADD")
        .arg(stream)
        .arg("*")
        .arg("source")
        .arg(batch.source.as_str())
        .arg("first");
    json_arg(&mut cmd, scratch, &batch.first).map_err(encode)?;
    cmd.arg("last");
    json_arg(&mut cmd, scratch, &batch.last).map_err(encode)?;
    cmd.arg("commit_time");
    match batch.commit_time {
        Some(time) => cmd.arg(time.to_rfc3339()),
        None => cmd.arg(""),
    };
    cmd.arg("changes");
    json_arg(&mut cmd, scratch, &*batch.changes).map_err(encode)?;
    pipe.add_command(cmd);
    Ok(())
}

/// Appends `value` as JSON as the command's next argument, serialized through `scratch`.
fn json_arg<T: Serialize + ?Sized>(
    cmd: &mut redis::Cmd,
    scratch: &mut Vec<u8>,
    value: &T,
) -> serde_json::Result<()> {
    scratch.clear();
    serde_json::to_writer(&mut *scratch, value)?;
    cmd.write_arg(scratch);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use surefoot_core_model::{AckToken, Batch, Change, Position, Row, SourceId, TableRef, Value};

    use super::add_xadd;

    fn batch(commit_time: Option<chrono::DateTime<chrono::Utc>>) -> Batch {
        let position = Position::Sequence(7);
        let row = Row::new()
            .with("id", Value::Text("7".to_owned()))
            .with("body", Value::Text("quote \" and \u{e9}".repeat(40)));
        Batch {
            source: SourceId::new("s0"),
            first: position,
            last: position,
            commit_time,
            changes: Arc::from(vec![Change::insert(
                position,
                TableRef::new("public", "items"),
                row,
            )]),
            ack: AckToken::detached(),
        }
    }

    /// The command as built from one string per field: the reused buffer must give the same
    /// bytes, for batches larger than the reserved size too.
    fn expected(batch: &Batch) -> Vec<u8> {
        redis::cmd("XADD")
            .arg("q")
            .arg("*")
            .arg("source")
            .arg(batch.source.as_str())
            .arg("first")
            .arg(serde_json::to_string(&batch.first).unwrap())
            .arg("last")
            .arg(serde_json::to_string(&batch.last).unwrap())
            .arg("commit_time")
            .arg(
                batch
                    .commit_time
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
            )
            .arg("changes")
            .arg(serde_json::to_string(&*batch.changes).unwrap())
            .get_packed_command()
    }

    #[test]
    fn xadd_bytes_match_one_string_per_field() {
        let batches = [batch(Some(chrono::Utc::now())), batch(None)];
        let mut pipe = redis::pipe();
        let mut scratch = Vec::new();
        for batch in &batches {
            add_xadd(&mut pipe, "q", batch, &mut scratch).unwrap();
        }
        let want: Vec<u8> = batches.iter().flat_map(expected).collect();
        assert_eq!(pipe.get_packed_pipeline(), want);
    }
}
