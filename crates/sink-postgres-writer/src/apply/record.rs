//! Applied-batch records (issue 14, X-4): what each sink transaction applied, so that a batch
//! at or below the checkpoint is skipped only when it is proven to be what was applied.
//!
//! A sink transaction writes, per source, one row of `surefoot_writer.applied` holding an
//! [`Item`] per batch: the first and last position of the changes it applied from that batch,
//! their count and their [`digest`]. A batch delivered again is proven when its changes at or
//! below the checkpoint fall, without a gap, into recorded items, each matched whole (same
//! first position, same count, same digest). So a batch delivered again as it was, several
//! recorded batches coalesced into one, or one straddling the checkpoint (its new part is
//! applied) are proven; an earlier batch never applied, other content under the same
//! positions, or a part of a recorded batch are refused.

use sqlx::PgConnection;
use surefoot_core_model::{Change, Position};

use super::digest::{Digest, digest};
use crate::error::{Refusal, WriterError};
use crate::position::StoredPosition;

/// A position's stored `(major, minor)`, which orders positions of one source.
pub(crate) type Key = (i64, i64);

/// The stored key of `position`.
pub(crate) fn key(position: Position) -> Result<Key, WriterError> {
    let stored = StoredPosition::encode(position)?;
    Ok((stored.major, stored.minor))
}

/// One batch's applied part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) first: Key,
    pub(crate) last: Key,
    count: u32,
    digest: Digest,
}

/// Bytes per packed item: four `i64`, a `u32`, 32 digest bytes.
const ITEM_BYTES: usize = 8 * 4 + 4 + 32;

impl Item {
    /// The item of `changes` (in order), with their digest if already computed.
    pub(crate) fn of(
        changes: &[Change],
        known: Option<Digest>,
    ) -> Result<Option<Self>, WriterError> {
        let (Some(first), Some(last)) = (changes.first(), changes.last()) else {
            return Ok(None);
        };
        let count = u32::try_from(changes.len()).map_err(|_| {
            WriterError::PositionRange(format!("{} changes in one batch", changes.len()))
        })?;
        Ok(Some(Self {
            first: key(first.position)?,
            last: key(last.position)?,
            count,
            digest: known.unwrap_or_else(|| digest(changes)),
        }))
    }
}

/// `items`, packed for the `batches` column.
pub(crate) fn pack(items: &[Item]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.len() * ITEM_BYTES);
    for item in items {
        for half in [item.first.0, item.first.1, item.last.0, item.last.1] {
            out.extend_from_slice(&half.to_le_bytes());
        }
        out.extend_from_slice(&item.count.to_le_bytes());
        out.extend_from_slice(&item.digest);
    }
    out
}

/// The items of a `batches` column; `None` when it is not a whole number of items.
fn unpack(bytes: &[u8]) -> Option<Vec<Item>> {
    if !bytes.len().is_multiple_of(ITEM_BYTES) {
        return None;
    }
    let i64_at = |chunk: &[u8], at: usize| -> Option<i64> {
        Some(i64::from_le_bytes(chunk.get(at..at + 8)?.try_into().ok()?))
    };
    bytes
        .chunks_exact(ITEM_BYTES)
        .map(|chunk| {
            Some(Item {
                first: (i64_at(chunk, 0)?, i64_at(chunk, 8)?),
                last: (i64_at(chunk, 16)?, i64_at(chunk, 24)?),
                count: u32::from_le_bytes(chunk.get(32..36)?.try_into().ok()?),
                digest: chunk.get(36..68)?.try_into().ok()?,
            })
        })
        .collect()
}

/// Proves that `old` (changes of one batch at or below the checkpoint, in order) was applied
/// as given; otherwise says why not.
pub(crate) async fn prove(
    conn: &mut PgConnection,
    sink: &str,
    source: &str,
    old: &[Change],
) -> Result<Result<(), Refusal>, WriterError> {
    let keys: Vec<Key> = old
        .iter()
        .map(|change| key(change.position))
        .collect::<Result<_, _>>()?;
    let (Some(&lo), Some(&hi)) = (keys.first(), keys.last()) else {
        return Ok(Ok(()));
    };
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT batches FROM surefoot_writer.applied WHERE sink = $1 AND source = $2 \
         AND (last_major, last_minor) >= ($3, $4) AND (first_major, first_minor) <= ($5, $6) \
         ORDER BY last_major, last_minor",
    )
    .bind(sink)
    .bind(source)
    .bind(lo.0)
    .bind(lo.1)
    .bind(hi.0)
    .bind(hi.1)
    .fetch_all(conn)
    .await
    .map_err(|e| WriterError::sql("read the applied-batch records", e))?;
    let mut items = Vec::new();
    for row in rows {
        let Some(unpacked) = unpack(&row) else {
            return Ok(Err(Refusal::UnreadableRecord));
        };
        items.extend(unpacked);
    }
    Ok(walk(old, &keys, &items))
}

/// Matches `old` (with its `keys`) against `items`, sorted by position.
fn walk(old: &[Change], keys: &[Key], items: &[Item]) -> Result<(), Refusal> {
    let mut at = 0;
    for item in items {
        let Some(&head) = keys.get(at) else { break };
        if item.last < head {
            continue;
        }
        if item.first > head {
            break;
        }
        let taken = keys[at..].iter().take_while(|k| **k <= item.last).count();
        let part = &old[at..at + taken];
        let whole = item.first == head
            && u32::try_from(taken).is_ok_and(|n| n == item.count)
            && digest(part) == item.digest;
        if !whole {
            return Err(Refusal::ContentDiffers {
                first: old[at].position.to_string(),
                last: old[at + taken - 1].position.to_string(),
            });
        }
        at += taken;
    }
    match old.get(at) {
        Some(change) => Err(Refusal::NeverApplied {
            position: change.position.to_string(),
        }),
        None => Ok(()),
    }
}

/// Deletes `(sink, source)`'s records past `keep` rows (the newest kept) and, with `max_age`,
/// those older than it.
pub(crate) async fn purge(
    conn: &mut PgConnection,
    sink: &str,
    source: &str,
    keep: u32,
    max_age: Option<std::time::Duration>,
) -> Result<u64, WriterError> {
    let age_ms = max_age.map(|age| i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
    let deleted = sqlx::query(
        "DELETE FROM surefoot_writer.applied a WHERE a.sink = $1 AND a.source = $2 AND ( \
           (a.last_major, a.last_minor) <= (SELECT b.last_major, b.last_minor \
              FROM surefoot_writer.applied b WHERE b.sink = $1 AND b.source = $2 \
              ORDER BY b.last_major DESC, b.last_minor DESC OFFSET $3 LIMIT 1) \
           OR a.applied_at < now() - $4 * interval '1 millisecond')",
    )
    .bind(sink)
    .bind(source)
    .bind(i64::from(keep))
    .bind(age_ms)
    .execute(conn)
    .await
    .map_err(|e| WriterError::sql("purge applied-batch records", e))?;
    Ok(deleted.rows_affected())
}

#[cfg(test)]
mod tests {
    use surefoot_core_model::{Row, TableRef, Value};

    use super::*;

    fn change(n: u64, body: &str) -> Change {
        let row = Row::new()
            .with("id", Value::Int64(n as i64))
            .with("b", Value::Text(body.into()));
        Change::insert(Position::Sequence(n), TableRef::new("public", "t"), row)
    }

    fn changes(ns: std::ops::RangeInclusive<u64>) -> Vec<Change> {
        ns.map(|n| change(n, "a")).collect()
    }

    fn check(old: &[Change], items: &[Item]) -> Result<(), Refusal> {
        let keys: Vec<Key> = old.iter().map(|c| key(c.position).unwrap()).collect();
        walk(old, &keys, items)
    }

    #[test]
    fn items_pack_and_unpack() {
        let items: Vec<Item> = [changes(1..=3), changes(4..=4)]
            .iter()
            .map(|c| Item::of(c, None).unwrap().unwrap())
            .collect();
        assert_eq!(unpack(&pack(&items)), Some(items));
        assert_eq!(unpack(&[0; 3]), None);
        assert_eq!(Item::of(&[], None).unwrap(), None);
    }

    #[test]
    fn replays_are_proven_whole_and_refused_otherwise() {
        let a = Item::of(&changes(1..=2), None).unwrap().unwrap();
        let b = Item::of(&changes(3..=5), None).unwrap().unwrap();
        let items = [a, b];
        assert_eq!(check(&changes(1..=2), &items), Ok(()));
        assert_eq!(check(&changes(1..=5), &items), Ok(()));
        assert_eq!(check(&changes(3..=5), &items), Ok(()));
        assert!(matches!(
            check(&changes(3..=4), &items),
            Err(Refusal::ContentDiffers { .. })
        ));
        assert!(matches!(
            check(&changes(2..=5), &items),
            Err(Refusal::ContentDiffers { .. })
        ));
        assert!(matches!(
            check(&[change(1, "a"), change(2, "b")], &items),
            Err(Refusal::ContentDiffers { .. })
        ));
        assert!(matches!(
            check(&changes(0..=2), &items),
            Err(Refusal::NeverApplied { .. })
        ));
        assert!(matches!(
            check(&changes(1..=6), &items),
            Err(Refusal::NeverApplied { .. })
        ));
        let gap = [a, Item::of(&changes(4..=5), None).unwrap().unwrap()];
        assert!(matches!(
            check(&changes(1..=5), &gap),
            Err(Refusal::NeverApplied { .. })
        ));
    }
}
