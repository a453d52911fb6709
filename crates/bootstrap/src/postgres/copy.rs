//! Copying one table out of the imported snapshot with `COPY ... TO STDOUT`, in bounded chunks.
//!
//! COPY data is read ahead of the decoder by a supervised task (`read_ahead`); each wait for more
//! of it is bounded by `chunk_timeout`; rows are decoded by column
//! type as they arrive and sent in batches of at most `batch_changes`, waiting for room in the
//! consumer's channel. Memory holds one batch, one partial row and the driver's buffers,
//! whatever the table's size. Row `n` of the snapshot (counted across tables, in the order sent)
//! is at `Position::snapshot(consistent point, n)`; a batch's `first`/`last` are its first and
//! last row's.

use std::sync::Arc;

use surefoot_core_model::{
    AckToken, Batch, BatchSender, Change, Lsn, Position, Row, SourceId, TableRef, Value,
};
use surefoot_source_postgres::pgoutput::TypeNames;

use crate::config::BootstrapConfig;
use crate::error::{BootstrapError, Step, bounded};
use crate::postgres::connection::SnapshotConnection;
use crate::postgres::decoder::ColumnDecoder;
use crate::postgres::read_ahead::ReadAhead;
use crate::postgres::text::{Fields, split_line};

/// Groups of COPY data (of about `chunk_bytes` each) read ahead of the decoder.
const READ_AHEAD_GROUPS: usize = 16;

/// A table's columns as the snapshot sees them, in order.
#[derive(Debug, Clone)]
pub(crate) struct TableColumns {
    pub(crate) table: TableRef,
    names: Vec<Arc<str>>,
    /// Each column's decoder, chosen once from its type.
    decoders: Vec<ColumnDecoder>,
}

/// `"name"` with embedded quotes doubled.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl TableColumns {
    /// Reads the columns of `table` inside the snapshot.
    pub(crate) async fn read(
        connection: &SnapshotConnection,
        table: &TableRef,
    ) -> Result<Self, BootstrapError> {
        let sql = "SELECT a.attname::text, a.atttypid::oid FROM pg_attribute a \
                   JOIN pg_class c ON c.oid = a.attrelid \
                   JOIN pg_namespace n ON n.oid = c.relnamespace \
                   WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 \
                   AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum";
        let schema: &str = &table.schema;
        let name: &str = &table.name;
        let rows = bounded(
            Step::Statement,
            connection.statement_timeout(),
            connection.client().query(sql, &[&schema, &name]),
        )
        .await?
        .map_err(|source| BootstrapError::query("read table columns", source))?;
        if rows.is_empty() {
            return Err(BootstrapError::NoSuchTable {
                table: table.to_string(),
            });
        }
        let names = rows
            .iter()
            .map(|row| Arc::from(row.get::<_, String>(0)))
            .collect();
        let decoders = rows
            .iter()
            .map(|row| ColumnDecoder::for_type(row.get::<_, u32>(1)))
            .collect();
        Ok(Self {
            table: table.clone(),
            names,
            decoders,
        })
    }

    /// `COPY "schema"."table" ("a", "b") TO STDOUT`.
    fn copy_statement(&self) -> String {
        let columns: Vec<String> = self.names.iter().map(|name| quote(name)).collect();
        format!(
            "COPY {}.{} ({}) TO STDOUT",
            quote(&self.table.schema),
            quote(&self.table.name),
            columns.join(", ")
        )
    }
}

/// Where the copied rows go.
pub(crate) struct Destination<'a> {
    pub(crate) source: &'a SourceId,
    /// The slot's consistent point: the snapshot's rows are `Position::snapshot(point, n)`.
    pub(crate) point: Lsn,
    pub(crate) output: &'a BatchSender,
}

/// Turns COPY lines into changes and batches.
struct RowDecoder<'a> {
    columns: &'a TableColumns,
    types: TypeNames,
    /// Rows of this table decoded so far.
    rows: u64,
    point: Lsn,
    /// The snapshot's number for the next row (counted across tables).
    next_row: u64,
}

impl RowDecoder<'_> {
    /// The change of `line`, whose columns are `fields` (or why they could not be split).
    fn decode(
        &mut self,
        line: &[u8],
        fields: Result<&Fields, &'static str>,
    ) -> Result<Change, BootstrapError> {
        self.rows += 1;
        let columns = self.columns;
        let fail = |reason: String| BootstrapError::CopyData {
            table: columns.table.to_string(),
            row: self.rows,
            reason,
        };
        let fields = fields.map_err(|reason| fail(reason.to_owned()))?;
        if fields.len() != columns.names.len() {
            let reason = format!(
                "{} columns instead of {}",
                fields.len(),
                columns.names.len()
            );
            return Err(fail(reason));
        }
        let mut row = Row::with_capacity(columns.names.len());
        let described = columns.names.iter().zip(&columns.decoders);
        for ((name, decoder), field) in described.zip(fields.iter(line)) {
            let value =
                match field {
                    None => Value::Null,
                    Some(text) => decoder.decode(text, &self.types).map_err(|source| {
                        BootstrapError::Value {
                            table: columns.table.to_string(),
                            row: self.rows,
                            column: name.to_string(),
                            source,
                        }
                    })?,
                };
            row.push(Arc::clone(name), value);
        }
        let position = Position::snapshot(self.point, self.next_row);
        self.next_row += 1;
        Ok(Change::insert(position, columns.table.clone(), row))
    }
}

/// Copies `columns.table` to `destination`, its first row numbered `first_row`; returns the rows
/// sent (every row decoded is sent, in order, so they are numbered `first_row..first_row + n`).
pub(crate) async fn copy_table(
    connection: &SnapshotConnection,
    columns: &TableColumns,
    config: &BootstrapConfig,
    destination: &Destination<'_>,
    first_row: u64,
) -> Result<u64, BootstrapError> {
    let stream = bounded(
        Step::Statement,
        connection.statement_timeout(),
        connection.client().copy_out(&columns.copy_statement()),
    )
    .await?
    .map_err(|source| BootstrapError::query("start copy", source))?;
    let mut data = ReadAhead::start(stream, config.chunk_bytes, READ_AHEAD_GROUPS)?;
    let mut decoder = RowDecoder {
        columns,
        types: TypeNames::new(),
        rows: 0,
        point: destination.point,
        next_row: first_row,
    };
    let mut lines = LineBuffer::new(config.max_line_bytes, &columns.table);
    let mut batch = Vec::with_capacity(config.batch_changes.min(4096));
    let mut sent = 0;
    loop {
        // Data already read costs no timer; only a wait for more is bounded.
        let group = match data.ready() {
            Some(group) => group,
            None => bounded(Step::Chunk, config.chunk_timeout, data.next()).await?,
        };
        let Some(group) = group else { break };
        let group = group.map_err(|source| BootstrapError::query("copy", source))?;
        for chunk in &group {
            lines.complete_lines(chunk, |line, fields| {
                batch.push(decoder.decode(line, fields)?);
                Ok(())
            })?;
        }
        while batch.len() >= config.batch_changes {
            sent += send(destination, &mut batch, config.batch_changes).await?;
        }
    }
    lines.finish()?;
    sent += send(destination, &mut batch, config.batch_changes).await?;
    Ok(sent)
}

/// Sends up to `most` of `changes`, from the front, as one batch (nothing when empty); returns
/// how many. The changes are moved straight into the batch's shared slice and `changes` keeps
/// its allocation for the next batch.
async fn send(
    destination: &Destination<'_>,
    changes: &mut Vec<Change>,
    most: usize,
) -> Result<u64, BootstrapError> {
    let taken: Arc<[Change]> = changes.drain(..most.min(changes.len())).collect();
    let (Some(first), Some(last)) = (taken.first(), taken.last()) else {
        return Ok(0);
    };
    let (first, last) = (first.position, last.position);
    let count = taken.len() as u64;
    let batch = Batch {
        source: destination.source.clone(),
        first,
        last,
        commit_time: None,
        changes: taken,
        ack: AckToken::detached(),
    };
    destination
        .output
        .send(batch)
        .await
        .map_err(|_closed| BootstrapError::OutputClosed)?;
    Ok(count)
}

/// Cuts COPY data into lines; a line may span chunks (the server sends one row per chunk, but
/// nothing here relies on it).
struct LineBuffer<'a> {
    pending: Vec<u8>,
    /// The columns of the line last completed, reused from line to line.
    fields: Fields,
    max_line_bytes: usize,
    table: &'a TableRef,
}

impl<'a> LineBuffer<'a> {
    fn new(max_line_bytes: usize, table: &'a TableRef) -> Self {
        Self {
            pending: Vec::new(),
            fields: Fields::default(),
            max_line_bytes,
            table,
        }
    }

    /// Calls `each` with every line `chunk` completes, without its newline, and its columns
    /// (or why they could not be split). A line within `chunk` is cut and split in one pass.
    fn complete_lines(
        &mut self,
        chunk: &[u8],
        mut each: impl FnMut(&[u8], Result<&Fields, &'static str>) -> Result<(), BootstrapError>,
    ) -> Result<(), BootstrapError> {
        let mut rest = chunk;
        if !self.pending.is_empty() {
            // The end of a line begun in an earlier chunk.
            let Some(newline) = rest.iter().position(|byte| *byte == b'\n') else {
                return self.grow(rest);
            };
            let (line, tail) = rest.split_at(newline);
            self.grow(line)?;
            rest = tail.get(1..).unwrap_or_default();
            let whole = std::mem::take(&mut self.pending);
            let split = split_line(&whole, &mut self.fields).map(|_| &self.fields);
            each(&whole, split)?;
        }
        while !rest.is_empty() {
            let end = match split_line(rest, &mut self.fields) {
                Ok(Some(end)) => {
                    each(rest.get(..end).unwrap_or_default(), Ok(&self.fields))?;
                    end
                }
                // The chunk ends inside a line (a bad value in it is reported once it is whole).
                Ok(None) => return self.grow(rest),
                Err(reason) => match rest.iter().position(|byte| *byte == b'\n') {
                    Some(end) => {
                        each(rest.get(..end).unwrap_or_default(), Err(reason))?;
                        end
                    }
                    None => return self.grow(rest),
                },
            };
            rest = rest.get(end + 1..).unwrap_or_default();
        }
        Ok(())
    }

    fn grow(&mut self, bytes: &[u8]) -> Result<(), BootstrapError> {
        if self.pending.len() + bytes.len() > self.max_line_bytes {
            return Err(BootstrapError::CopyData {
                table: self.table.to_string(),
                row: 0,
                reason: format!("a row is longer than {} bytes", self.max_line_bytes),
            });
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    /// COPY data always ends with a newline: anything left is a truncated row.
    fn finish(&self) -> Result<(), BootstrapError> {
        if self.pending.is_empty() {
            Ok(())
        } else {
            Err(BootstrapError::CopyData {
                table: self.table.to_string(),
                row: 0,
                reason: "the data ends inside a row".to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(buffer: &mut LineBuffer<'_>, chunk: &[u8]) -> Result<Vec<Vec<u8>>, BootstrapError> {
        let mut lines = Vec::new();
        buffer.complete_lines(chunk, |line, fields| {
            let fields = fields.map_err(|reason| BootstrapError::CopyData {
                table: "t".to_owned(),
                row: 0,
                reason: reason.to_owned(),
            })?;
            assert_eq!(fields.len(), line.split(|byte| *byte == b'\t').count());
            lines.push(line.to_vec());
            Ok(())
        })?;
        Ok(lines)
    }

    #[test]
    fn lines_are_cut_across_chunks() {
        let table = TableRef::new("public", "t");
        let mut buffer = LineBuffer::new(10, &table);
        assert_eq!(
            lines_of(&mut buffer, b"a\tb\nc").unwrap(),
            [b"a\tb".to_vec()]
        );
        assert!(buffer.finish().is_err());
        assert_eq!(
            lines_of(&mut buffer, b"d\n\n").unwrap(),
            [b"cd".to_vec(), Vec::new()]
        );
        buffer.finish().unwrap();
        let error = lines_of(&mut buffer, b"0123456789ab").unwrap_err();
        assert!(
            error.to_string().contains("longer than 10 bytes"),
            "{error}"
        );
    }

    #[test]
    fn a_chunk_may_end_inside_an_escape_and_a_bad_line_is_reported() {
        let table = TableRef::new("public", "t");
        let mut buffer = LineBuffer::new(100, &table);
        assert!(lines_of(&mut buffer, b"1\ta\\").unwrap().is_empty());
        assert_eq!(
            lines_of(&mut buffer, b"tb\n2\tc\n3").unwrap(),
            [b"1\ta\\tb".to_vec(), b"2\tc".to_vec()]
        );
        let mut whole = Vec::new();
        buffer
            .complete_lines(b"\n", |line, fields| {
                let fields = fields.unwrap();
                whole.extend(fields.iter(line).map(|field| field.map(<[u8]>::to_vec)));
                Ok(())
            })
            .unwrap();
        assert_eq!(whole, [Some(b"3".to_vec())]);
        buffer.finish().unwrap();
        let error = lines_of(&mut buffer, b"4\tx\\\t5\n").unwrap_err();
        assert!(error.to_string().contains("lone backslash"), "{error}");
    }

    #[test]
    fn identifiers_are_quoted() {
        let columns = TableColumns {
            table: TableRef::new("my schema", "a\"b"),
            names: vec![Arc::from("id"), Arc::from("x\"y")],
            decoders: vec![ColumnDecoder::Int32, ColumnDecoder::Text],
        };
        assert_eq!(
            columns.copy_statement(),
            "COPY \"my schema\".\"a\"\"b\" (\"id\", \"x\"\"y\") TO STDOUT"
        );
    }
}
