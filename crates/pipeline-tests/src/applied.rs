//! What `sink-postgres-writer` recorded as applied (`surefoot_writer.applied`, decision 0007):
//! one record per batch part applied, its first and last position and its change count. Two
//! records whose ranges overlap mean a change applied twice; the counts add up to what was
//! applied.

use tokio_postgres::Client;

/// Bytes per packed record: four `i64` (first and last position as stored), a `u32` count and
/// a 32-byte digest.
const RECORD_BYTES: usize = 8 * 4 + 4 + 32;

/// One applied batch part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    /// The stored `(major, minor)` of its first change.
    pub first: (i64, i64),
    /// The stored `(major, minor)` of its last change.
    pub last: (i64, i64),
    /// How many changes it applied.
    pub count: u32,
}

/// What a writer applied from one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Changes applied, summed over the records.
    pub changes: u64,
    /// Records whose range overlaps the previous one's: changes applied more than once.
    pub overlapping: u64,
    /// Records kept.
    pub records: usize,
    /// The highest stored position applied (`(sequence, 0)` for a sequence).
    pub highest: Option<(i64, i64)>,
}

/// Reading the records failed.
#[derive(Debug, thiserror::Error)]
pub enum AppliedError {
    /// The query failed.
    #[error("reading surefoot_writer.applied failed")]
    Query(#[from] tokio_postgres::Error),
    /// A `batches` value is not a whole number of records.
    #[error("a batches value of {0} bytes is not a whole number of {RECORD_BYTES}-byte records")]
    Malformed(usize),
}

/// The records of `sink` for `source` in the writer's database `target`, checked for overlap.
pub async fn applied(target: &Client, sink: &str, source: &str) -> Result<Applied, AppliedError> {
    let rows = target
        .query(
            "SELECT batches FROM surefoot_writer.applied WHERE sink = $1 AND source = $2",
            &[&sink, &source],
        )
        .await?;
    let mut records = Vec::new();
    for row in rows {
        let bytes: Vec<u8> = row.try_get(0)?;
        records.extend(unpack(&bytes)?);
    }
    Ok(summarise(records))
}

/// The records packed in one `batches` value.
pub fn unpack(bytes: &[u8]) -> Result<Vec<Record>, AppliedError> {
    if !bytes.len().is_multiple_of(RECORD_BYTES) {
        return Err(AppliedError::Malformed(bytes.len()));
    }
    Ok(bytes.chunks_exact(RECORD_BYTES).map(record).collect())
}

fn record(chunk: &[u8]) -> Record {
    let mut words = chunk[..32].chunks_exact(8).map(|word| {
        let mut le = [0_u8; 8];
        le.copy_from_slice(word);
        i64::from_le_bytes(le)
    });
    let mut next = || words.next().unwrap_or_default();
    let first = (next(), next());
    let last = (next(), next());
    let mut count = [0_u8; 4];
    count.copy_from_slice(&chunk[32..36]);
    Record {
        first,
        last,
        count: u32::from_le_bytes(count),
    }
}

/// Sums the records and counts those overlapping an earlier one in position order.
pub fn summarise(mut records: Vec<Record>) -> Applied {
    records.sort();
    let mut overlapping = 0;
    let mut highest: Option<(i64, i64)> = None;
    for record in &records {
        if highest.is_some_and(|last| record.first <= last) {
            overlapping += 1;
        }
        highest = highest.max(Some(record.last));
    }
    Applied {
        changes: records.iter().map(|record| u64::from(record.count)).sum(),
        overlapping,
        records: records.len(),
        highest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(first: (i64, i64), last: (i64, i64), count: u32) -> Vec<u8> {
        let mut out = Vec::new();
        for half in [first.0, first.1, last.0, last.1] {
            out.extend_from_slice(&half.to_le_bytes());
        }
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&[7; 32]);
        out
    }

    #[test]
    fn records_unpack_sum_and_overlaps_are_counted() {
        let mut bytes = packed((1, 0), (1, 9), 10);
        bytes.extend(packed((2, 0), (2, 4), 5));
        bytes.extend(packed((1, 5), (1, 6), 2));
        let records = unpack(&bytes).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[1].first, (2, 0));
        let applied = summarise(records);
        assert_eq!(applied.changes, 17);
        assert_eq!(applied.overlapping, 1);
    }

    #[test]
    fn a_value_that_is_not_whole_records_is_refused() {
        assert!(matches!(unpack(&[0; 67]), Err(AppliedError::Malformed(67))));
    }
}
