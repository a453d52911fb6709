//! Append-mode event rows and dead-letter rows, each written with one multi-row statement.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use surefoot_core_model::{Change, Operation};

use crate::error::WriterError;
use crate::position::StoredPosition;

/// Columns of `surefoot_writer.event` / `dead_letter` rows, as arrays.
#[derive(Debug, Default)]
pub(crate) struct ChangeRows {
    sources: Vec<String>,
    majors: Vec<i64>,
    minors: Vec<i64>,
    schemas: Vec<String>,
    tables: Vec<String>,
    /// `op` for events, `reason` for dead letters.
    labels: Vec<String>,
    payloads: Vec<String>,
    commit_times: Vec<Option<DateTime<Utc>>>,
}

impl ChangeRows {
    /// Adds `change` with `label` (its operation, or why it was dead-lettered).
    pub(crate) fn push(
        &mut self,
        source: &str,
        change: &Change,
        label: String,
        commit_time: Option<DateTime<Utc>>,
    ) -> Result<(), WriterError> {
        let stored = StoredPosition::encode(change.position)?;
        let payload = serde_json::to_string(change).map_err(|e| WriterError::Change {
            position: change.position.to_string(),
            table: change.table.to_string(),
            problem: format!("cannot be serialised: {e}"),
        })?;
        self.sources.push(source.to_owned());
        self.majors.push(stored.major);
        self.minors.push(stored.minor);
        self.schemas.push(change.table.schema.to_string());
        self.tables.push(change.table.name.to_string());
        self.labels.push(label);
        self.payloads.push(payload);
        self.commit_times.push(commit_time);
        Ok(())
    }

    /// Number of rows.
    pub(crate) fn len(&self) -> usize {
        self.sources.len()
    }

    /// Inserts the rows as events; a (sink, source, position) already present is left alone.
    pub(crate) async fn insert_events(
        self,
        conn: &mut PgConnection,
        sink: &str,
    ) -> Result<(), WriterError> {
        if self.len() == 0 {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO surefoot_writer.event \
             (sink, source, major, minor, table_schema, table_name, op, payload, commit_time) \
             SELECT $1, s, ma, mi, sc, tb, op, p::jsonb, ct \
             FROM unnest($2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[], \
                         $7::text[], $8::text[], $9::timestamptz[]) AS u(s, ma, mi, sc, tb, op, p, ct) \
             ON CONFLICT (sink, source, major, minor) DO NOTHING",
        )
        .bind(sink)
        .bind(self.sources)
        .bind(self.majors)
        .bind(self.minors)
        .bind(self.schemas)
        .bind(self.tables)
        .bind(self.labels)
        .bind(self.payloads)
        .bind(self.commit_times)
        .execute(conn)
        .await
        .map_err(|e| WriterError::sql("insert events", e))?;
        Ok(())
    }

    /// Inserts the rows as dead letters.
    pub(crate) async fn insert_dead_letters(
        self,
        conn: &mut PgConnection,
        sink: &str,
    ) -> Result<(), WriterError> {
        if self.len() == 0 {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO surefoot_writer.dead_letter \
             (sink, source, major, minor, table_schema, table_name, reason, change) \
             SELECT $1, s, ma, mi, sc, tb, r, p::jsonb \
             FROM unnest($2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[], \
                         $7::text[], $8::text[]) AS u(s, ma, mi, sc, tb, r, p)",
        )
        .bind(sink)
        .bind(self.sources)
        .bind(self.majors)
        .bind(self.minors)
        .bind(self.schemas)
        .bind(self.tables)
        .bind(self.labels)
        .bind(self.payloads)
        .execute(conn)
        .await
        .map_err(|e| WriterError::sql("insert dead letters", e))?;
        Ok(())
    }
}

/// The operation's name as stored in `event.op`.
pub(crate) fn op_name(change: &Change) -> &'static str {
    match change.operation {
        Operation::Insert { .. } => "insert",
        Operation::Update { .. } => "update",
        Operation::Delete { .. } => "delete",
        Operation::Truncate => "truncate",
    }
}
