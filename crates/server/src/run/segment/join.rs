//! A reaction added to a running query joins with a snapshot of the query's current result:
//! one batch that truncates its table and inserts every result row, at the query's last
//! sequence S, then every result batch after S. Result batches at or below S (sent again
//! after a restart of the segment) are not sent to it: the snapshot holds them, and a writer
//! would refuse them, having no record of applying them.
//!
//! When the segment restarts, the reaction is sent a new snapshot unless its writer's
//! checkpoint shows it already holds the result through the last sequence.

use std::collections::BTreeMap;
use std::time::Duration;

use surefoot_core_lifecycle::timeout;
use surefoot_core_model::{AckToken, Batch, BatchSender, Change, Position};
use surefoot_query::{DurableQuery, EvalError};

use crate::run::writers::Writers;

/// Limit of reading a joining writer's checkpoint.
const CHECKPOINT_LIMIT: Duration = Duration::from_secs(10);

/// The last sequence of a result batch (0 for positions of other kinds).
pub(super) fn sequence_of(position: Position) -> u64 {
    match position {
        Position::Sequence(sequence) => sequence,
        _ => 0,
    }
}

/// The snapshot batch of `query`'s current result, at its last sequence; an error if the
/// result cannot be evaluated from the query's state (it is inconsistent).
pub(super) fn snapshot(query: &DurableQuery) -> Result<(u64, Batch), EvalError> {
    let query = query.query();
    let last = query.next_sequence().saturating_sub(1);
    let position = Position::Sequence(last);
    let table = query.output_table().clone();
    let mut changes = vec![Change::truncate(position, table.clone())];
    changes.extend(
        query
            .result()?
            .into_iter()
            .map(|row| Change::insert(position, table.clone(), row)),
    );
    let batch = Batch {
        source: query.id().clone(),
        first: position,
        last: position,
        commit_time: None,
        changes: changes.into(),
        // Not in the query's log: if it is lost the segment sends a new one.
        ack: AckToken::detached(),
    };
    Ok((last, batch))
}

/// Sends reaction `id` the snapshot (made by [`snapshot`]) unless its writer already holds
/// the result through the snapshot's sequence; returns the sequence it holds through, or
/// `None` if its output is closed.
pub(super) async fn join(
    id: &str,
    (last, batch): (u64, Batch),
    output: &BatchSender,
    writers: &Writers,
) -> Option<u64> {
    let source = batch.source.to_string();
    if let Some(writer) = writers.get(id) {
        let read = timeout(
            "joining checkpoint",
            CHECKPOINT_LIMIT,
            writer.checkpoint(&source),
        )
        .await;
        match read {
            Ok(Ok(Some(held))) if sequence_of(held) >= last => {
                tracing::info!(reaction = %id, sequence = last, "joined reaction holds the result");
                return Some(last);
            }
            Ok(Ok(_)) => {}
            // Sent the snapshot all the same: its truncate makes the table exact whatever it
            // held.
            Ok(Err(error)) => tracing::warn!(reaction = %id, %error, "checkpoint not read"),
            Err(error) => tracing::warn!(reaction = %id, %error, "checkpoint not read"),
        }
    }
    let rows = batch.changes.len() - 1;
    output.send(batch).await.ok()?;
    tracing::info!(reaction = %id, sequence = last, rows, "reaction joined with a snapshot of the result");
    Some(last)
}

/// The outputs a result batch ending at `last` goes to: all but the reactions that joined at
/// or after it.
pub(super) fn receivers<'a>(
    outputs: &'a BTreeMap<String, BatchSender>,
    joined: &BTreeMap<String, u64>,
    last: Position,
) -> Vec<&'a BatchSender> {
    let last = sequence_of(last);
    outputs
        .iter()
        .filter(|(id, _)| joined.get(*id).is_none_or(|held| *held < last))
        .map(|(_, output)| output)
        .collect()
}
