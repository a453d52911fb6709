//! Helpers shared by the source's integration tests.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::time::Duration;

use surefoot_core_model::{Batch, BatchReceiver, Lsn, Value};
use surefoot_source_postgres::{Identifier, PostgresSourceConfig, SlotName};
use surefoot_test_support::{PgClient, PgServer};

/// How long a test waits for a batch that should come.
pub(crate) const BOUND: Duration = Duration::from_secs(30);

/// A source `id` on `server`'s `postgres` database, with slot `<id>_slot` and publication
/// `<id>_pub` for all tables; heartbeat off; status updates every 100 ms.
pub(crate) fn source_config(server: &PgServer, id: &str) -> PostgresSourceConfig {
    let mut config = PostgresSourceConfig::new(
        id,
        server.host(),
        server.port(),
        server.user(),
        "postgres",
        SlotName::parse(&format!("{id}_slot")).unwrap(),
        Identifier::parse("publication", &format!("{id}_pub")).unwrap(),
    );
    config.heartbeat = None;
    config.status_interval = Duration::from_millis(100);
    config
}

/// The next batch, failing the test if none comes within [`BOUND`].
pub(crate) async fn next_batch(batches: &mut BatchReceiver) -> Batch {
    tokio::time::timeout(BOUND, batches.recv())
        .await
        .expect("no batch within the bound")
        .expect("source output closed")
}

/// The `id` column of every change's new row.
pub(crate) fn ids(batch: &Batch) -> Vec<Value> {
    batch
        .changes
        .iter()
        .map(|change| change.after().unwrap().get("id").unwrap().clone())
        .collect()
}

/// The one `pg_lsn` (as text) that `sql` returns.
pub(crate) async fn query_lsn(
    admin: &PgClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Lsn {
    let row = admin.query_one(sql, params).await.unwrap();
    row.get::<_, String>(0).parse().unwrap()
}

/// The server's current WAL write position.
pub(crate) async fn current_wal_lsn(admin: &PgClient) -> Lsn {
    query_lsn(admin, "SELECT pg_current_wal_lsn()::text", &[]).await
}

/// The slot's `confirmed_flush_lsn`.
pub(crate) async fn confirmed_flush(admin: &PgClient, slot: &str) -> Lsn {
    let sql = "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1";
    query_lsn(admin, sql, &[&slot]).await
}

/// Whether a walsender holds the slot.
pub(crate) async fn slot_active(admin: &PgClient, slot: &str) -> bool {
    let sql = "SELECT active FROM pg_replication_slots WHERE slot_name = $1";
    admin.query_one(sql, &[&slot]).await.unwrap().get(0)
}

/// The end LSN of the commit record at `commit`, read from the WAL with `pg_walinspect`.
pub(crate) async fn commit_end_lsn(admin: &PgClient, commit: Lsn) -> Lsn {
    admin
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        .await
        .unwrap();
    let sql = "SELECT end_lsn::text FROM pg_get_wal_record_info($1::text::pg_lsn)";
    query_lsn(admin, sql, &[&commit.to_string()]).await
}
