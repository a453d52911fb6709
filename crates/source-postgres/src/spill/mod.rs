//! The memory bound of one transaction: decoded changes are held up to a cap, the rest of the
//! transaction's messages go to a temporary file, and at the commit they are decoded again from
//! the file, a bounded part at a time.
//!
//! What is spilled is the pgoutput messages as they came (length-prefixed), not decoded
//! changes: the wire form is compact, needs no second format, and decoding it again through
//! the same assembler gives the same changes, since the relation cache evolves in the same
//! order. The file is created in the system's temporary directory and unlinked at once, so it
//! disappears with the process even after a crash.
//!
//! Writes and reads are ordinary buffered file I/O (64 KiB at a time) on the replication task:
//! they land in the page cache, and the task blocks on them no longer than on decoding.

mod file;
pub(crate) mod size;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub(crate) use file::{SpillReader, SpillWriter};

use crate::error::SourceError;

/// Spill figures shared with the source (see [`crate::PostgresSource::spill_stats`]).
#[derive(Debug, Default)]
pub(crate) struct SpillCounters {
    peak_held: AtomicUsize,
    transactions: AtomicU64,
    bytes: AtomicU64,
    parts: AtomicU64,
}

/// Spill figures of a source since it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpillStats {
    /// The most bytes of decoded changes one transaction held in memory at once (the source's
    /// own accounting, see `max_transaction_memory`).
    pub peak_held_bytes: usize,
    /// Transactions that went past the cap and were spilled.
    pub spilled_transactions: u64,
    /// Bytes of pgoutput messages written to spill files.
    pub spilled_bytes: u64,
    /// Batches delivered for spilled transactions (each a contiguous part of one transaction).
    pub spilled_parts: u64,
}

impl SpillCounters {
    pub(crate) fn stats(&self) -> SpillStats {
        SpillStats {
            peak_held_bytes: self.peak_held.load(Ordering::Relaxed),
            spilled_transactions: self.transactions.load(Ordering::Relaxed),
            spilled_bytes: self.bytes.load(Ordering::Relaxed),
            spilled_parts: self.parts.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn part_delivered(&self) {
        self.parts.fetch_add(1, Ordering::Relaxed);
    }
}

/// The memory account of the open transaction, and its spill file once it has one.
#[derive(Debug)]
pub(crate) struct Spool<'a> {
    cap: usize,
    held: usize,
    writer: Option<SpillWriter>,
    counters: &'a SpillCounters,
}

impl<'a> Spool<'a> {
    pub(crate) fn new(cap: usize, counters: &'a SpillCounters) -> Self {
        Self {
            cap,
            held: 0,
            writer: None,
            counters,
        }
    }

    /// Whether the open transaction's messages go to the file now.
    pub(crate) fn spilling(&self) -> bool {
        self.writer.is_some()
    }

    /// Holds `bytes` more if they fit under the cap (or if nothing is held: a single change
    /// larger than the cap is held alone). Returns whether they were taken on.
    pub(crate) fn admit(&mut self, bytes: usize) -> bool {
        let fits = self.held.saturating_add(bytes) <= self.cap || self.held == 0;
        if fits {
            self.held = self.held.saturating_add(bytes);
            self.counters
                .peak_held
                .fetch_max(self.held, Ordering::Relaxed);
        }
        fits
    }

    /// Forgets what was held: it left as a batch, or the transaction ended.
    pub(crate) fn release(&mut self) {
        self.held = 0;
    }

    /// Appends one message of the open transaction to its spill file, creating it first.
    pub(crate) fn spill(&mut self, message: &[u8]) -> Result<(), SourceError> {
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => {
                self.counters.transactions.fetch_add(1, Ordering::Relaxed);
                self.writer.insert(SpillWriter::create()?)
            }
        };
        writer.append(message)?;
        let written = u64::try_from(message.len()).unwrap_or(u64::MAX);
        self.counters.bytes.fetch_add(written, Ordering::Relaxed);
        Ok(())
    }

    /// Ends spilling: the file, ready to be read from the start (`None` if nothing spilled).
    pub(crate) fn finish(&mut self) -> Result<Option<SpillReader>, SourceError> {
        self.writer.take().map(SpillWriter::into_reader).transpose()
    }

    /// Drops the open transaction's file and account (a new Begin, or a new session).
    pub(crate) fn reset(&mut self) {
        self.writer = None;
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_never_passes_the_cap_unless_one_change_is_larger() {
        let counters = SpillCounters::default();
        let mut spool = Spool::new(100, &counters);
        assert!(spool.admit(60));
        assert!(spool.admit(40));
        assert!(!spool.admit(1));
        spool.release();
        assert!(spool.admit(250), "a single oversized change is held alone");
        assert!(!spool.admit(1));
        assert_eq!(counters.stats().peak_held_bytes, 250);
    }

    #[test]
    fn spilled_messages_come_back_in_order() {
        let counters = SpillCounters::default();
        let mut spool = Spool::new(100, &counters);
        assert!(spool.finish().unwrap().is_none());
        assert!(!spool.spilling());
        for message in [&b"first"[..], b"", b"third"] {
            spool.spill(message).unwrap();
        }
        assert!(spool.spilling());
        let mut reader = spool.finish().unwrap().unwrap();
        assert!(!spool.spilling());
        let mut read = Vec::new();
        while let Some(message) = reader.next_message().unwrap() {
            read.push(message);
        }
        assert_eq!(read, [&b"first"[..], b"", b"third"]);
        let stats = counters.stats();
        assert_eq!((stats.spilled_transactions, stats.spilled_bytes), (1, 10));
        spool.spill(b"again").unwrap();
        spool.reset();
        assert!(!spool.spilling());
    }
}
