//! Helpers shared by the writer's integration tests.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub(crate) mod gate;
pub(crate) mod meter;

use std::sync::Arc;

use surefoot_core_model::{AckToken, Batch, Change, Position, Row, SourceId, TableRef, Value};
use surefoot_sink_postgres_writer::{PostgresWriter, WriterConfig};
use surefoot_test_support::PgServer;

/// A configuration for sink `sink` on `server`'s `postgres` database, small latency bound.
pub(crate) fn config(server: &PgServer, sink: &str) -> WriterConfig {
    let mut config = WriterConfig::new(sink, server.url("postgres"));
    config.batch.max_latency = std::time::Duration::from_millis(5);
    config.pool.max_connections = 4;
    config
}

/// A batch of `changes` from `source`, positions taken from the changes, with a detached token.
pub(crate) fn batch(source: &str, changes: Vec<Change>) -> Batch {
    batch_with(source, changes, AckToken::detached())
}

/// As [`batch`], with `ack` as its token.
pub(crate) fn batch_with(source: &str, changes: Vec<Change>, ack: AckToken) -> Batch {
    let first = changes.first().map(|c| c.position).unwrap();
    let last = changes.last().map(|c| c.position).unwrap();
    Batch {
        source: SourceId::new(source),
        first,
        last,
        commit_time: Some(chrono::Utc::now()),
        changes: Arc::from(changes),
        ack,
    }
}

/// `public.<name>`.
pub(crate) fn table(name: &str) -> TableRef {
    TableRef::new("public", name)
}

/// A row of `(id, body)`.
pub(crate) fn row(id: i64, body: Value) -> Row {
    Row::new().with("id", Value::Int64(id)).with("body", body)
}

/// Sequence position `n`.
pub(crate) fn seq(n: u64) -> Position {
    Position::Sequence(n)
}

/// Runs `sql` on the writer's pool.
pub(crate) async fn exec(writer: &PostgresWriter, sql: &'static str) {
    sqlx::raw_sql(sql).execute(writer.pool()).await.unwrap();
}

/// A single `bigint` from `sql`.
pub(crate) async fn scalar(writer: &PostgresWriter, sql: &'static str) -> i64 {
    let (value,): (i64,) = sqlx::query_as(sql).fetch_one(writer.pool()).await.unwrap();
    value
}
