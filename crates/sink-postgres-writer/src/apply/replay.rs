//! Telling a redelivery from a jump backwards (issue 14, X-4): the order of a flush's batches,
//! the proof of every change at or below its checkpoint, and the records of what a flush
//! applies (see `record` and decision 0007, "Proving a redelivery").

use std::collections::BTreeMap;

use sqlx::PgConnection;
use surefoot_core_model::{Batch, Change, Position};

use super::digest::Digest;
use super::record::{self, Item, key};
use super::{Checkpoints, FlushContext, seen};
use crate::error::{Refusal, RefusedBatch, WriterError};

/// Fails with [`WriterError::Unordered`] unless each source's batches are in increasing order
/// (each begins after the one before it ends): folding per key takes the last change, so a
/// batch below an earlier one in the same transaction would overwrite newer values.
pub(super) fn check_order(batches: &[&Batch]) -> Result<(), WriterError> {
    let mut ends: BTreeMap<&str, Position> = BTreeMap::new();
    for batch in batches {
        let source = batch.source.as_str();
        if ends.get(source).is_some_and(|end| batch.first <= *end) {
            return Err(WriterError::Unordered {
                source_id: source.to_owned(),
            });
        }
        ends.insert(source, batch.last);
    }
    Ok(())
}

/// The leading changes of `batch` at or below `seen`: the part proven (or refused) and skipped.
/// A batch's changes are in order; if one were not, a later change at or below `seen` is
/// applied, never skipped unproven.
pub(super) fn at_or_below(batch: &Batch, seen: Option<Position>) -> &[Change] {
    let Some(seen) = seen else { return &[] };
    let n = batch
        .changes
        .iter()
        .take_while(|change| change.position <= seen)
        .count();
    &batch.changes[..n]
}

/// Proves, for every batch reaching at or below its checkpoint, that those changes were applied
/// as given (see `record`); refuses the first that is not.
pub(super) async fn prove_replays(
    ctx: FlushContext<'_>,
    conn: &mut PgConnection,
    batches: &[&Batch],
    checkpoints: &Checkpoints<'_>,
) -> Result<(), WriterError> {
    for batch in batches {
        let source = batch.source.as_str();
        let locked = checkpoints.get(source).copied().unwrap_or_default();
        let old = at_or_below(batch, locked.seen);
        // Applied before records were kept (migration 0003): skipped unproven, as before.
        let mut unrecorded = 0;
        if let Some(horizon) = locked.unrecorded {
            for change in old {
                if key(change.position)? > horizon {
                    break;
                }
                unrecorded += 1;
            }
        }
        let old = &old[unrecorded..];
        if old.is_empty() {
            continue;
        }
        if let Err(refusal) = record::prove(conn, ctx.sink, source, old).await? {
            return Err(refused(batch, locked.seen, refusal));
        }
    }
    Ok(())
}

fn refused(batch: &Batch, seen: Option<Position>, refusal: Refusal) -> WriterError {
    WriterError::ReplayRefused(Box::new(RefusedBatch {
        source_id: batch.source.as_str().to_owned(),
        first: batch.first.to_string(),
        last: batch.last.to_string(),
        checkpoint: seen.map_or_else(|| "none".to_owned(), |seen| seen.to_string()),
        refusal,
    }))
}

/// The records of what this transaction applies, per source: each batch's changes above its
/// checkpoint. `digests` are the whole batches' digests (empty: computed here).
pub(super) fn items(
    batches: &[&Batch],
    checkpoints: &Checkpoints<'_>,
    digests: &[Digest],
) -> Result<BTreeMap<String, Vec<Item>>, WriterError> {
    let mut items: BTreeMap<String, Vec<Item>> = BTreeMap::new();
    for (index, batch) in batches.iter().enumerate() {
        let old = at_or_below(batch, seen(checkpoints, batch.source.as_str())).len();
        let new = &batch.changes[old..];
        let known = (old == 0).then(|| digests.get(index).copied()).flatten();
        if let Some(item) = Item::of(new, known)? {
            items
                .entry(batch.source.as_str().to_owned())
                .or_default()
                .push(item);
        }
    }
    Ok(items)
}
