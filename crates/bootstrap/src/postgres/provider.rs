//! [`PostgresProvider`]: a slot with an exported snapshot, the snapshot copied table by table,
//! and the slot handed on to the stream.

use std::sync::Arc;

use async_trait::async_trait;
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{
    BatchSender, BootstrapProvider, ComponentError, Lsn, Position, SnapshotComplete,
    SnapshotRequest, TableRef,
};
use surefoot_source_postgres::transport::{PgWireConnector, ReplicationEndpoint};
use surefoot_source_postgres::{PostgresSource, PostgresSourceConfig, SlotName, setup};
use tokio::sync::watch;

use crate::config::{BootstrapConfig, ConfigError};
use crate::error::{BootstrapError, Step, bounded};
use crate::postgres::connection::SnapshotConnection;
use crate::postgres::copy::{Destination, TableColumns, copy_table};
use crate::postgres::estimate::estimated_rows;
use crate::postgres::slot::{ExportedSlot, SlotKind};

/// The upper end of the snapshot taken at the slot's consistent point `point`:
/// `Position::snapshot(point, u64::MAX)`, reported as [`SnapshotComplete::consistent_point`].
///
/// Row `n` of the snapshot (counted from 0 across all its tables, in the order rows are sent)
/// is at `Position::snapshot(point, n)`: distinct and increasing, so a consumer idempotent by
/// position applies every row once however the rows are cut into batches. They all sort after
/// every change the snapshot contains (committed before `point`) and below this bound, and every
/// change the slot streams (committed at `point` or later, possibly at `(point, 0)`) sorts above
/// it (see [`Position`]). The bound is not a row's position: a consumer that keeps a checkpoint
/// keeps its batches' `last`, which for the whole snapshot is [`Exported::last_row`]. `point` is
/// never `0/0` (see [`parse_consistent_point`]).
///
/// [`parse_consistent_point`]: crate::postgres::parse_consistent_point
pub fn snapshot_end(point: Lsn) -> Position {
    Position::snapshot(point, u64::MAX)
}

/// A complete snapshot and the slot it is consistent with.
#[derive(Debug)]
pub struct Exported {
    /// What was delivered.
    pub complete: SnapshotComplete,
    /// The slot, on its still open replication session. For a persistent slot, close it and
    /// start the source (which streams from the slot's consistent point); for a temporary one,
    /// stream from it with [`ExportedSlot::into_connector`].
    pub slot: ExportedSlot,
}

impl Exported {
    /// The position of the snapshot's last row, `Position::snapshot(C, rows - 1)` (C the slot's
    /// consistent point); `None` for a snapshot without rows. It is the `last` of the last batch
    /// sent, so what a consumer idempotent by position holds as its checkpoint once it applied
    /// the whole snapshot.
    pub fn last_row(&self) -> Option<Position> {
        let row = self.complete.rows.checked_sub(1)?;
        Some(Position::snapshot(self.slot.consistent_point(), row))
    }
}

/// Snapshots of a PostgreSQL database, exact with respect to a replication slot.
///
/// - [`PostgresProvider::first_start`]: creates the source's own (persistent) slot with an
///   exported snapshot; once the snapshot is complete the source is started and streams from the
///   slot's consistent point, so every transaction is in exactly one of the two.
/// - [`PostgresProvider::added_consumer`]: for a consumer added while the source runs, creates a
///   temporary slot with an exported snapshot; the consumer then streams from that slot, which
///   starts exactly after the snapshot (see `docs/decisions/0005-snapshot-handoff.md`).
///
/// Every step is bounded (connect, each statement, each chunk of COPY data, the whole snapshot);
/// an error or a cancellation releases the connection and the snapshot and ends the replication
/// session, which drops a temporary slot.
#[derive(Debug, Clone)]
pub struct PostgresProvider {
    source: PostgresSourceConfig,
    /// The ordinary connection's settings.
    sql: tokio_postgres::Config,
    endpoint: ReplicationEndpoint,
    kind: SlotKind,
    config: BootstrapConfig,
    /// The planner's estimate of the rows the snapshot copies, once read.
    estimate: Arc<watch::Sender<Option<u64>>>,
}

impl PostgresProvider {
    /// A provider for the first start of `source`: its slot (`source.slot`) is created with an
    /// exported snapshot. A slot of that name left by a snapshot that did not complete is dropped
    /// first (it is never streamed from without a complete snapshot); one in use is an error.
    pub fn first_start(
        source: PostgresSourceConfig,
        config: BootstrapConfig,
    ) -> Result<Self, BootstrapError> {
        Self::new(source, None, config)
    }

    /// A provider for a consumer added while `source` streams: a temporary slot `slot` gives it
    /// its own exact snapshot and stream.
    ///
    /// `source` is the running source's configuration (database, publication, tables), best
    /// with an `id` of the consumer's own: the snapshot's batches and the stream of
    /// [`PostgresProvider::stream_after`] carry that id (so a writer keeps one checkpoint for
    /// both), and a source's metrics are per id.
    pub fn added_consumer(
        source: PostgresSourceConfig,
        slot: SlotName,
        config: BootstrapConfig,
    ) -> Result<Self, BootstrapError> {
        Self::new(source, Some(slot), config)
    }

    fn new(
        source: PostgresSourceConfig,
        temporary: Option<SlotName>,
        config: BootstrapConfig,
    ) -> Result<Self, BootstrapError> {
        let mut problems = config
            .validate()
            .err()
            .map(|e| e.problems)
            .unwrap_or_default();
        if let Err(error) = source.validate() {
            problems.extend(error.problems.iter().map(|p| format!("source.{p}")));
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems }.into());
        }
        let mut endpoint = ReplicationEndpoint::for_source(&source);
        endpoint.application_name = format!("surefoot-{}-bootstrap-replication", source.id);
        let kind = match temporary {
            Some(slot) => {
                endpoint.slot = slot;
                SlotKind::Temporary
            }
            None => SlotKind::Persistent,
        };
        let sql = source.sql_config(&format!("surefoot-{}-bootstrap", source.id));
        Ok(Self {
            source,
            sql,
            endpoint,
            kind,
            config,
            estimate: Arc::new(watch::Sender::new(None)),
        })
    }

    /// About how many rows the snapshot copies (the planner's estimate, read in the snapshot
    /// before the copy starts), for progress reports; `None` until read.
    pub fn estimated_rows(&self) -> watch::Receiver<Option<u64>> {
        self.estimate.subscribe()
    }

    /// Replaces the ordinary connection's settings (by default the source's `sql_config`, with
    /// `application_name` `surefoot-<source id>-bootstrap`), for instance to reach the server
    /// through another address. The replication session keeps the source's address.
    pub fn with_sql_config(mut self, sql: tokio_postgres::Config) -> Self {
        self.sql = sql;
        self
    }

    /// The source that streams what follows the snapshot `exported` (taken by this provider),
    /// to `output`; start it with `Source::start`. Its batches carry the same source id as the
    /// snapshot's, and their positions all sort above the snapshot's rows.
    ///
    /// - First start: the replication session is closed (the persistent slot stays, confirmed at
    ///   the consistent point) and the source streams from the slot on a connection of its own.
    /// - Added consumer: the source streams from the temporary slot on the session that created
    ///   it (see [`ExportedSlot::into_connector`]); if that session ends, the source fails
    ///   rather than stream from elsewhere, and the consumer bootstraps again.
    ///
    /// [`ExportedSlot::into_connector`]: crate::postgres::ExportedSlot::into_connector
    pub fn stream_after(&self, exported: Exported, output: BatchSender) -> PostgresSource {
        let mut config = self.source.clone();
        config.slot = exported.slot.endpoint().slot.clone();
        match exported.slot.kind() {
            SlotKind::Persistent => {
                exported.slot.close();
                let endpoint = ReplicationEndpoint::for_source(&config);
                let connector = Arc::new(PgWireConnector::new(endpoint));
                PostgresSource::with_connector(config, output, connector)
            }
            SlotKind::Temporary => {
                let connector = exported.slot.into_connector();
                PostgresSource::with_connector(config, output, connector)
            }
        }
    }

    /// The replication endpoint of the slot it creates.
    pub fn endpoint(&self) -> &ReplicationEndpoint {
        &self.endpoint
    }

    /// Creates the slot with an exported snapshot and sends the snapshot's rows to `output`, row
    /// `n` (from 0, across all tables in the order sent) at `Position::snapshot(C, n)` where C is
    /// the slot's consistent point; each batch's `first` and `last` are its first and last row's.
    /// Returns only after the last row was sent, with `complete.consistent_point` =
    /// [`snapshot_end`]`(C)` and `complete.rows` the number of rows (the next row number).
    ///
    /// With `request.tables` empty, the tables of the source's publication are copied.
    pub async fn export(
        &self,
        request: &SnapshotRequest,
        output: &BatchSender,
        cancel: &CancellationToken,
    ) -> Result<Exported, BootstrapError> {
        let limit = self.config.snapshot_timeout;
        let result = tokio::select! {
            biased;
            () = cancel.cancelled() => Err(BootstrapError::Cancelled),
            // Boxed: the copy's state is large, and a future is moved on every call.
            result = bounded(Step::Snapshot, limit, Box::pin(self.run(&request.tables, output))) => {
                result.and_then(|exported| exported)
            }
        };
        let (source, slot) = (&self.source.id, &self.endpoint.slot);
        match &result {
            Ok(exported) => tracing::info!(
                %source, %slot, consumer = %request.consumer, rows = exported.complete.rows,
                consistent_point = %exported.slot.consistent_point(), "snapshot complete"
            ),
            Err(error) => tracing::warn!(
                %source, %slot, consumer = %request.consumer, %error,
                "snapshot incomplete: everything it sent must be discarded"
            ),
        }
        result
    }

    async fn run(
        &self,
        tables: &[TableRef],
        output: &BatchSender,
    ) -> Result<Exported, BootstrapError> {
        let connection =
            SnapshotConnection::open(self.sql.clone(), &self.source.tls, &self.config).await?;
        self.prepare(&connection).await?;
        let slot = ExportedSlot::create(&self.endpoint, self.kind, &self.config).await?;
        connection.import(slot.snapshot_name()).await?;
        let tables = match tables {
            [] => self.publication_tables(&connection).await?,
            listed => listed.to_vec(),
        };
        // On the snapshot's connection: an error here aborts its transaction, so it fails the
        // snapshot like any other statement would.
        let estimate = estimated_rows(&connection, &tables).await?;
        tracing::info!(source = %self.source.id, tables = tables.len(), estimated_rows = estimate,
            "snapshot: copying");
        self.estimate.send_replace(Some(estimate));
        connection
            .allow_statements_up_to(self.config.snapshot_timeout)
            .await?;
        let point = slot.consistent_point();
        let destination = Destination {
            source: &self.source.id,
            point,
            output,
        };
        // Rows are numbered across tables: each table's first row follows the previous table's.
        let mut rows = 0;
        for table in &tables {
            let columns = TableColumns::read(&connection, table).await?;
            rows += copy_table(&connection, &columns, &self.config, &destination, rows).await?;
        }
        connection.finish().await?;
        let complete = SnapshotComplete {
            consistent_point: snapshot_end(point),
            rows,
        };
        Ok(Exported { complete, slot })
    }

    /// Makes sure the publication exists before the slot (pgoutput reads it as of each change),
    /// and drops a leftover inactive slot on first start.
    async fn prepare(&self, connection: &SnapshotConnection) -> Result<(), BootstrapError> {
        let source = &self.source;
        bounded(
            Step::Statement,
            self.config.statement_timeout,
            setup::ensure_publication(
                connection.client(),
                &source.publication,
                &source.tables,
                source.create_publication,
            ),
        )
        .await?
        .map_err(BootstrapError::Setup)?;
        if self.kind == SlotKind::Persistent {
            connection
                .drop_slot_if_inactive(self.endpoint.slot.as_str())
                .await?;
        }
        Ok(())
    }

    /// The tables of the source's publication.
    async fn publication_tables(
        &self,
        connection: &SnapshotConnection,
    ) -> Result<Vec<TableRef>, BootstrapError> {
        let sql = "SELECT schemaname::text, tablename::text FROM pg_publication_tables \
                   WHERE pubname = $1 ORDER BY 1, 2";
        let publication = self.source.publication.as_str();
        let rows = bounded(
            Step::Statement,
            self.config.statement_timeout,
            connection.client().query(sql, &[&publication]),
        )
        .await?
        .map_err(|source| BootstrapError::query("list publication tables", source))?;
        Ok(rows
            .iter()
            .map(|row| TableRef::new(row.get::<_, String>(0), row.get::<_, String>(1)))
            .collect())
    }
}

#[async_trait]
impl BootstrapProvider for PostgresProvider {
    /// [`PostgresProvider::export`], then the replication session is closed: a persistent slot
    /// stays for the source to stream from, a temporary one goes with the session (use
    /// [`PostgresProvider::export`] to stream from it).
    async fn snapshot(
        &self,
        request: SnapshotRequest,
        output: BatchSender,
        cancel: CancellationToken,
    ) -> Result<SnapshotComplete, ComponentError> {
        let exported = self.export(&request, &output, &cancel).await?;
        exported.slot.close();
        Ok(exported.complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d_4_3_snapshot_rows_sort_before_every_change_the_slot_streams() {
        let point = Lsn(0x16_B374_D848);
        let end = snapshot_end(point);
        assert!(end < Position::postgres(point, 0));
        assert!(Position::snapshot(point, 0) > Position::postgres(Lsn(point.0 - 8), u32::MAX));
        assert!(Position::snapshot(point, u64::MAX - 1) < end);
        assert_eq!(end.commit_lsn(), None);
    }
}
