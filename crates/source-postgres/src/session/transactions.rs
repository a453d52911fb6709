//! From stream events to batches: decoding under the transaction memory bound, spilling past
//! it, and delivering a spilled transaction from its file in bounded parts.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use surefoot_core_model::{Batch, Change, Lsn};

use super::Session;
use crate::error::SourceError;
use crate::pgoutput::{Assembled, Begin, Commit, Message, decode_bytes};
use crate::spill::size::changes_bytes;
use crate::transport::StreamEvent;

/// One part of a transaction, ready to be a batch.
struct Part {
    commit_time: DateTime<Utc>,
    changes: Vec<Change>,
    /// For the transaction's last part: the end LSN to confirm once all of it is delivered.
    end_lsn: Option<Lsn>,
}

impl Session<'_> {
    pub(super) fn on_event(&mut self, event: StreamEvent) -> Result<(), SourceError> {
        let assembled = match event {
            StreamEvent::Begin {
                final_lsn,
                commit_time,
                xid,
            } => {
                self.spool.reset();
                self.open_last = None;
                let begin = Begin {
                    final_lsn,
                    commit_time,
                    xid,
                };
                self.assembler.feed(Message::Begin(begin))?
            }
            StreamEvent::Data(bytes) => self.on_data(bytes)?,
            StreamEvent::Commit {
                commit_lsn,
                end_lsn,
                commit_time,
            } => {
                let commit = Commit {
                    flags: 0,
                    commit_lsn,
                    end_lsn,
                    commit_time,
                };
                self.on_commit(commit)?
            }
            StreamEvent::Message { lsn, .. } | StreamEvent::KeepAlive { wal_end: lsn } => {
                self.confirm_if_idle(lsn);
                None
            }
        };
        self.on_assembled(assembled)
    }

    fn on_assembled(&mut self, assembled: Option<Assembled>) -> Result<(), SourceError> {
        match assembled {
            Some(Assembled::Transaction(transaction)) => {
                self.ctx
                    .metrics
                    .transaction_received(transaction.changes.len());
                self.emit(Part {
                    commit_time: transaction.commit_time,
                    changes: transaction.changes,
                    end_lsn: Some(transaction.end_lsn),
                })
            }
            Some(Assembled::Message(message)) => {
                self.confirm_if_idle(message.lsn);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Decodes a message into the open transaction if its changes fit under the memory cap;
    /// once one does not, it and every later message of the transaction go to the spill file.
    fn on_data(&mut self, bytes: Bytes) -> Result<Option<Assembled>, SourceError> {
        if self.spool.spilling() {
            self.spool.spill(&bytes)?;
            return Ok(None);
        }
        let held = self.assembler.open_changes().len();
        let assembled = self.assembler.feed(decode_bytes(bytes.clone())?)?;
        let added = changes_bytes(&self.assembler.open_changes()[held..]);
        if !self.spool.admit(added) {
            // Decoded again from the file at the commit, with the same ordinals.
            self.assembler.discard_changes_from(held);
            self.spool.spill(&bytes)?;
        }
        Ok(assembled)
    }

    /// A Commit: the transaction as one batch, or, when it spilled, its part held in memory
    /// first and the rest from the file ([`Session::replay_part`]).
    fn on_commit(&mut self, commit: Commit) -> Result<Option<Assembled>, SourceError> {
        let Some(reader) = self.spool.finish()? else {
            self.spool.release();
            return Ok(self.assembler.feed(Message::Commit(commit))?);
        };
        let changes = self.assembler.take_changes(usize::MAX);
        self.spool.release();
        let commit_time = commit.commit_time;
        self.replay = Some((reader, commit));
        self.emit(Part {
            commit_time,
            changes,
            end_lsn: None,
        })?;
        Ok(None)
    }

    /// Decodes the spilled transaction's next part (at most the memory cap of changes) from its
    /// file; at the end of the file, the Commit ends the transaction with its last part.
    pub(super) fn replay_part(&mut self) -> Result<(), SourceError> {
        while self.pending.is_none() {
            let Some((reader, commit)) = self.replay.as_mut() else {
                return Ok(());
            };
            let commit_time = commit.commit_time;
            let Some(message) = reader.next_message()? else {
                let commit = commit.clone();
                self.replay = None;
                self.spool.release();
                let assembled = self.assembler.feed(Message::Commit(commit))?;
                return self.on_assembled(assembled);
            };
            let held = self.assembler.open_changes().len();
            let assembled = self.assembler.feed(decode_bytes(message)?)?;
            let added = changes_bytes(&self.assembler.open_changes()[held..]);
            if !self.spool.admit(added) {
                // The part so far goes out; this message's changes start the next one.
                let changes = self.assembler.take_changes(held);
                self.spool.release();
                self.spool.admit(added);
                self.emit(Part {
                    commit_time,
                    changes,
                    end_lsn: None,
                })?;
            }
            self.on_assembled(assembled)?;
        }
        Ok(())
    }

    /// Sends what of `part` was not sent before (after a reconnect the server sends again from
    /// the confirmed position) as a batch; at the transaction's last part, arranges for its end
    /// LSN to be confirmed once the watermark reaches its last change.
    fn emit(&mut self, part: Part) -> Result<(), SourceError> {
        let Part {
            commit_time,
            mut changes,
            end_lsn,
        } = part;
        let in_parts = end_lsn.is_none() || self.open_last.is_some();
        if end_lsn.is_none() {
            self.ctx.metrics.part_received(changes.len());
        }
        if let Some(last) = changes.last() {
            self.open_last = Some(last.position);
        }
        let through = self.delivered_through;
        changes.retain(|change| through.is_none_or(|through| change.position > through));
        if let (Some(first), Some(last)) = (changes.first(), changes.last()) {
            let (first, last) = (first.position, last.position);
            let ack = self.ctx.tracker.register(first, last)?;
            if in_parts {
                self.ctx.spill.part_delivered();
            }
            self.pending_since = Instant::now();
            self.pending = Some(Batch {
                source: self.ctx.source.clone(),
                first,
                last,
                commit_time: Some(commit_time),
                changes: Arc::from(changes),
                ack,
            });
        } else if end_lsn.is_some() && self.open_last.is_some() {
            self.ctx.metrics.transaction_skipped();
        }
        if let Some(end_lsn) = end_lsn {
            self.on_transaction_end(end_lsn);
        }
        Ok(())
    }

    /// The transaction's end LSN is confirmed once its last change is delivered: now, if the
    /// watermark already covers it (sent by an earlier session), else when it does.
    fn on_transaction_end(&mut self, end_lsn: Lsn) {
        let Some(last) = self.open_last.take() else {
            // No changes at all (every table filtered out, or only messages).
            self.confirm_if_idle(end_lsn);
            return;
        };
        if self.ctx.tracker.watermark().is_some_and(|w| last <= w) {
            self.confirm(end_lsn);
        } else {
            self.end_lsns.insert(last, end_lsn);
        }
    }
}
