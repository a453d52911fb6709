//! Copying one table out of the imported snapshot with `COPY ... TO STDOUT`, in bounded chunks.
//!
//! COPY data is read ahead of the decoder by a supervised task (`read_ahead`); each wait for more
//! of it is bounded by `chunk_timeout`; rows are decoded by column
//! type as they arrive and sent in batches of at most `batch_changes`, waiting for room in the
//! consumer's channel. Memory holds one batch, one partial row and the driver's buffers,
//! whatever the table's size.

use std::sync::Arc;

use surefoot_core_model::{
    AckToken, Batch, BatchSender, Change, Position, Row, SourceId, TableRef, Value,
};
use surefoot_source_postgres::pgoutput::{TypeNames, parse_text};

use crate::config::BootstrapConfig;
use crate::error::{BootstrapError, Step, bounded};
use crate::postgres::connection::SnapshotConnection;
use crate::postgres::read_ahead::ReadAhead;
use crate::postgres::text::{Fields, split_row};

/// Groups of COPY data (of about `chunk_bytes` each) read ahead of the decoder.
const READ_AHEAD_GROUPS: usize = 16;

/// A table's columns as the snapshot sees them, in order.
#[derive(Debug, Clone)]
pub(crate) struct TableColumns {
    pub(crate) table: TableRef,
    names: Vec<Arc<str>>,
    types: Vec<u32>,
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
        let types = rows.iter().map(|row| row.get::<_, u32>(1)).collect();
        Ok(Self {
            table: table.clone(),
            names,
            types,
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
    /// The position of every snapshot row: the consistent point.
    pub(crate) position: Position,
    pub(crate) output: &'a BatchSender,
}

/// Turns COPY lines into changes and batches.
struct RowDecoder<'a> {
    columns: &'a TableColumns,
    types: TypeNames,
    fields: Fields,
    /// Rows decoded so far.
    rows: u64,
    position: Position,
}

impl RowDecoder<'_> {
    fn decode(&mut self, line: &[u8]) -> Result<Change, BootstrapError> {
        self.rows += 1;
        let columns = self.columns;
        let fail = |reason: String| BootstrapError::CopyData {
            table: columns.table.to_string(),
            row: self.rows,
            reason,
        };
        split_row(line, &mut self.fields).map_err(|reason| fail(reason.to_owned()))?;
        if self.fields.len() != columns.names.len() {
            let reason = format!(
                "{} columns instead of {}",
                self.fields.len(),
                columns.names.len()
            );
            return Err(fail(reason));
        }
        let mut row = Row::with_capacity(columns.names.len());
        let described = columns.names.iter().zip(&columns.types);
        for ((name, type_oid), field) in described.zip(self.fields.iter(line)) {
            let value = match field {
                None => Value::Null,
                Some(text) => parse_text(*type_oid, text, &self.types).map_err(|source| {
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
        Ok(Change::insert(self.position, columns.table.clone(), row))
    }
}

/// Copies `columns.table` to `destination`; returns the rows sent.
pub(crate) async fn copy_table(
    connection: &SnapshotConnection,
    columns: &TableColumns,
    config: &BootstrapConfig,
    destination: &Destination<'_>,
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
        fields: Fields::default(),
        rows: 0,
        position: destination.position,
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
            lines.complete_lines(chunk, |line| {
                batch.push(decoder.decode(line)?);
                Ok(())
            })?;
        }
        while batch.len() >= config.batch_changes {
            let mut rest = batch.split_off(config.batch_changes);
            rest.reserve(config.batch_changes.min(4096));
            sent += send(destination, std::mem::replace(&mut batch, rest)).await?;
        }
    }
    lines.finish()?;
    sent += send(destination, batch).await?;
    Ok(sent)
}

/// Sends `changes` as one batch (nothing when empty); returns how many.
async fn send(destination: &Destination<'_>, changes: Vec<Change>) -> Result<u64, BootstrapError> {
    if changes.is_empty() {
        return Ok(0);
    }
    let count = changes.len() as u64;
    let batch = Batch {
        source: destination.source.clone(),
        first: destination.position,
        last: destination.position,
        commit_time: None,
        changes: changes.into(),
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
    max_line_bytes: usize,
    table: &'a TableRef,
}

impl<'a> LineBuffer<'a> {
    fn new(max_line_bytes: usize, table: &'a TableRef) -> Self {
        Self {
            pending: Vec::new(),
            max_line_bytes,
            table,
        }
    }

    /// Calls `each` with every line `chunk` completes, without its newline.
    fn complete_lines(
        &mut self,
        chunk: &[u8],
        mut each: impl FnMut(&[u8]) -> Result<(), BootstrapError>,
    ) -> Result<(), BootstrapError> {
        let mut rest = chunk;
        while let Some(newline) = rest.iter().position(|byte| *byte == b'\n') {
            let (line, tail) = rest.split_at(newline);
            rest = tail.get(1..).unwrap_or_default();
            if self.pending.is_empty() {
                each(line)?;
            } else {
                self.grow(line)?;
                let whole = std::mem::take(&mut self.pending);
                each(&whole)?;
            }
        }
        self.grow(rest)
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
        buffer.complete_lines(chunk, |line| {
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
    fn identifiers_are_quoted() {
        let columns = TableColumns {
            table: TableRef::new("my schema", "a\"b"),
            names: vec![Arc::from("id"), Arc::from("x\"y")],
            types: vec![23, 25],
        };
        assert_eq!(
            columns.copy_statement(),
            "COPY \"my schema\".\"a\"\"b\" (\"id\", \"x\"\"y\") TO STDOUT"
        );
    }
}
