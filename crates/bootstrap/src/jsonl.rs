//! The JSONL file provider: one [`Change`] per line, as `serde_json` serialises it.
//!
//! The file is read with tokio's file I/O `chunk_bytes` at a time; memory holds one read buffer,
//! at most one partial line of up to `max_line_bytes`, and one batch of up to `batch_changes`
//! changes, whatever the file's size. A line that does not parse, is too long, or whose position
//! is not above the previous line's fails the snapshot with the file and the line number.
//!
//! # Positions
//!
//! The file's positions are kept as written: they say where the snapshot sits in the source's
//! stream (the stream continues after the last one), which only the file's writer knows, so the
//! provider does not invent others. They must be strictly increasing from line to line (blank
//! lines aside, whatever tables are requested): a consumer idempotent by position skips a change
//! at or below the last it applied, so two lines at one position would silently lose the second.
//! A file written by hand or by another tool therefore numbers its rows, e.g.
//! `Position::Sequence(1..)` for a source numbered by a sequence, or `Position::snapshot(C, 0..)`
//! as the PostgreSQL provider does for a snapshot at consistent point C.
//!
//! # How a consumer knows the snapshot is complete
//!
//! Batches are sent as the file is read, so some may have been sent before a bad line is found.
//! The snapshot is complete only when [`BootstrapProvider::snapshot`] returns
//! `Ok(SnapshotComplete)`; on an error (or cancellation) the consumer must discard every batch
//! received from this snapshot and start again. There is deliberately no validating first pass
//! over the file (it could change between the passes, and every provider can fail part-way for
//! other reasons, so consumers need the rule anyway): see
//! `docs/decisions/0005-snapshot-handoff.md`. The batches carry detached [`AckToken`]s: the
//! provider does not wait for them, they exist so a consumer settles them like any other batch.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{
    AckToken, Batch, BatchSender, BootstrapProvider, Change, ComponentError, Position,
    SnapshotComplete, SnapshotRequest, SourceId, TableRef,
};
use tokio::io::AsyncReadExt;

use crate::config::BootstrapConfig;
use crate::error::{BootstrapError, Step, bounded};

/// The consistent point reported for a file without changes.
pub const EMPTY_FILE_POINT: Position = Position::Sequence(0);

/// A [`BootstrapProvider`] that reads a snapshot from a JSONL file.
///
/// Timeouts: opening the file is the [`Step::Connect`] step, each read of `chunk_bytes` is a
/// [`Step::Chunk`], and the whole snapshot, including waiting for room in the consumer's channel,
/// is bounded by [`Step::Snapshot`].
#[derive(Debug, Clone)]
pub struct JsonlProvider {
    source: SourceId,
    path: PathBuf,
    config: BootstrapConfig,
}

impl JsonlProvider {
    /// A provider of the changes in `path`, sent as batches of `source`.
    ///
    /// Fails with [`BootstrapError::Config`] listing every problem of `config`.
    pub fn new(
        source: SourceId,
        path: impl Into<PathBuf>,
        config: BootstrapConfig,
    ) -> Result<Self, BootstrapError> {
        config.validate()?;
        Ok(Self {
            source,
            path: path.into(),
            config,
        })
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// [`BootstrapProvider::snapshot`] with the error's type kept.
    ///
    /// Each change keeps the position written on its line, and a batch's `first`/`last` are its
    /// first and last change's. The consistent point is the position of the file's last change
    /// (the highest: each line's position must be above the previous line's, or the snapshot
    /// fails with [`BootstrapError::OutOfOrder`] naming the line), or [`EMPTY_FILE_POINT`] for a
    /// file without changes.
    /// Blank lines are skipped. With `request.tables` set, only changes to those tables are sent,
    /// but every line is checked.
    pub async fn read(
        &self,
        request: SnapshotRequest,
        output: BatchSender,
        cancel: CancellationToken,
    ) -> Result<SnapshotComplete, BootstrapError> {
        let limit = self.config.snapshot_timeout;
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(BootstrapError::Cancelled),
            result = bounded(Step::Snapshot, limit, self.read_file(&request.tables, &output)) => {
                result.and_then(|complete| complete)
            }
        }
    }

    async fn read_file(
        &self,
        tables: &[TableRef],
        output: &BatchSender,
    ) -> Result<SnapshotComplete, BootstrapError> {
        let config = &self.config;
        let opened = bounded(
            Step::Connect,
            config.connect_timeout,
            tokio::fs::File::open(&self.path),
        )
        .await?;
        let mut file = opened.map_err(|source| BootstrapError::Open {
            path: self.path.clone(),
            source,
        })?;
        let mut lines = LineParser::new(&self.path, config.max_line_bytes, tables);
        let mut buffer = vec![0_u8; config.chunk_bytes];
        let mut batch = Vec::with_capacity(config.batch_changes.min(1024));
        let mut rows = 0_u64;
        loop {
            let read = bounded(Step::Chunk, config.chunk_timeout, file.read(&mut buffer)).await?;
            let read = read.map_err(|source| BootstrapError::Read {
                path: self.path.clone(),
                line: lines.line,
                source,
            })?;
            let Some(chunk) = buffer.get(..read).filter(|chunk| !chunk.is_empty()) else {
                break;
            };
            let mut rest = chunk;
            while let Some(newline) = rest.iter().position(|byte| *byte == b'\n') {
                let (line, tail) = rest.split_at(newline);
                rest = tail.get(1..).unwrap_or_default();
                if let Some(change) = lines.complete_line(line)? {
                    batch.push(change);
                    if batch.len() >= config.batch_changes {
                        rows += self.send(output, std::mem::take(&mut batch)).await?;
                    }
                }
            }
            lines.partial_line(rest)?;
        }
        if let Some(change) = lines.finish()? {
            batch.push(change);
        }
        rows += self.send(output, batch).await?;
        Ok(SnapshotComplete {
            consistent_point: lines.previous.unwrap_or(EMPTY_FILE_POINT),
            rows,
        })
    }

    /// Sends `changes` as one batch, if there are any; returns how many were sent.
    async fn send(
        &self,
        output: &BatchSender,
        changes: Vec<Change>,
    ) -> Result<u64, BootstrapError> {
        let (Some(first), Some(last)) = (changes.first(), changes.last()) else {
            return Ok(0);
        };
        let count = u64::try_from(changes.len()).unwrap_or(u64::MAX);
        let batch = Batch {
            source: self.source.clone(),
            first: first.position,
            last: last.position,
            commit_time: None,
            changes: changes.into(),
            ack: AckToken::detached(),
        };
        // The batch comes back in the error and is dropped: its detached token settles as
        // abandoned, which nobody waits for.
        output
            .send(batch)
            .await
            .map_err(|_closed| BootstrapError::OutputClosed)?;
        Ok(count)
    }
}

#[async_trait]
impl BootstrapProvider for JsonlProvider {
    async fn snapshot(
        &self,
        request: SnapshotRequest,
        output: BatchSender,
        cancel: CancellationToken,
    ) -> Result<SnapshotComplete, ComponentError> {
        Ok(self.read(request, output, cancel).await?)
    }
}

/// Turns the file's bytes into changes, line by line, holding at most one partial line.
struct LineParser<'a> {
    path: &'a Path,
    max_line_bytes: usize,
    tables: &'a [TableRef],
    /// Complete lines seen.
    line: u64,
    /// The position of the last change read.
    previous: Option<Position>,
    /// The start of a line whose end was not read yet.
    pending: Vec<u8>,
}

impl<'a> LineParser<'a> {
    fn new(path: &'a Path, max_line_bytes: usize, tables: &'a [TableRef]) -> Self {
        Self {
            path,
            max_line_bytes,
            tables,
            line: 0,
            previous: None,
            pending: Vec::new(),
        }
    }

    /// The end of a line (without its newline); the change on it, if it is one to send.
    fn complete_line(&mut self, end: &[u8]) -> Result<Option<Change>, BootstrapError> {
        self.line += 1;
        self.check_length(end.len(), self.line)?;
        if self.pending.is_empty() {
            return self.parse(end);
        }
        let mut whole = std::mem::take(&mut self.pending);
        whole.extend_from_slice(end);
        let parsed = self.parse(&whole);
        whole.clear();
        self.pending = whole;
        parsed
    }

    /// Bytes of a line whose end has not been read yet.
    fn partial_line(&mut self, bytes: &[u8]) -> Result<(), BootstrapError> {
        if bytes.is_empty() {
            return Ok(());
        }
        // The line this partial one belongs to is the next complete one.
        self.check_length(bytes.len(), self.line + 1)?;
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    /// The last line, when the file does not end with a newline.
    fn finish(&mut self) -> Result<Option<Change>, BootstrapError> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        self.complete_line(&[])
    }

    /// Fails when `more` bytes added to the pending ones would make line `line` too long.
    fn check_length(&self, more: usize, line: u64) -> Result<(), BootstrapError> {
        if self.pending.len().saturating_add(more) > self.max_line_bytes {
            return Err(BootstrapError::LineTooLong {
                path: self.path.to_path_buf(),
                line,
                limit: self.max_line_bytes,
            });
        }
        Ok(())
    }

    fn parse(&mut self, bytes: &[u8]) -> Result<Option<Change>, BootstrapError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let change: Change =
            serde_json::from_slice(bytes).map_err(|source| BootstrapError::BadLine {
                path: self.path.to_path_buf(),
                line: self.line,
                source,
            })?;
        // Strictly above: an equal position would be skipped by a consumer idempotent by
        // position (X-1 of issue 14).
        if let Some(previous) = self.previous
            && change.position <= previous
        {
            return Err(BootstrapError::OutOfOrder {
                path: self.path.to_path_buf(),
                line: self.line,
                previous,
                position: change.position,
            });
        }
        self.previous = Some(change.position);
        let wanted = self.tables.is_empty() || self.tables.contains(&change.table);
        Ok(wanted.then_some(change))
    }
}
