//! An invalidated slot (`wal_status = 'lost'`: the server removed WAL the slot still needed,
//! so changes are gone): start fails with `SourceError::SlotLost` under the default policy, and
//! with `SlotLostPolicy::Recreate` start drops it, creates a new slot and streams from there.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::Duration;

use surefoot_core_lifecycle::{Classify, ErrorClass, Status};
use surefoot_core_model::{Lsn, Source, Value, batch_channel};
use surefoot_source_postgres::setup::PublicationTables;
use surefoot_source_postgres::{
    Identifier, PostgresSource, PostgresSourceConfig, SlotLostPolicy, SlotName, SourceError,
    TableName,
};
use surefoot_test_support::{PgClient, PgServer};

const SLOT: &str = "lost_slot";
const BOUND: Duration = Duration::from_secs(60);

fn config(server: &PgServer, policy: SlotLostPolicy) -> PostgresSourceConfig {
    let mut config = PostgresSourceConfig::new(
        "lost",
        server.host(),
        server.port(),
        server.user(),
        "postgres",
        SlotName::parse(SLOT).unwrap(),
        Identifier::parse("publication", "lost_pub").unwrap(),
    );
    config.tables = PublicationTables::Tables(vec![TableName::parse("t").unwrap()]);
    config.heartbeat = None;
    config.status_interval = Duration::from_millis(100);
    config.on_slot_lost = policy;
    config
}

/// `(wal_status, restart_lsn)` of the slot.
async fn slot(admin: &PgClient) -> (String, Option<Lsn>) {
    let row = admin
        .query_one(
            "SELECT wal_status, restart_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&SLOT],
        )
        .await
        .unwrap();
    let restart: Option<String> = row.get(1);
    (row.get(0), restart.map(|lsn| lsn.parse().unwrap()))
}

/// Writes WAL the slot would need (to a table it does not publish) and checkpoints until the
/// server has invalidated the slot.
async fn lose_the_slot(admin: &PgClient) {
    let lost = async {
        loop {
            admin
                .batch_execute(
                    "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 20000);
                     SELECT pg_switch_wal();
                     CHECKPOINT;",
                )
                .await
                .unwrap();
            if slot(admin).await.0 == "lost" {
                return;
            }
        }
    };
    tokio::time::timeout(BOUND, lost)
        .await
        .expect("the slot was never invalidated");
}

fn slot_lost_in(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if matches!(
            error.downcast_ref::<SourceError>(),
            Some(SourceError::SlotLost { .. })
        ) {
            return true;
        }
        current = error.source();
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_slot_fails_start_by_default_and_is_recreated_when_asked() {
    let server = PgServer::builder()
        .setting("max_slot_wal_keep_size", "'1MB'")
        .start()
        .await
        .unwrap();
    let admin = server.connect("postgres").await.unwrap();
    admin
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY);
             CREATE TABLE filler (body text);",
        )
        .await
        .unwrap();

    // Create the slot, then leave it idle.
    let (output, _batches) = batch_channel(16);
    let first = PostgresSource::new(config(&server, SlotLostPolicy::Fail), output).unwrap();
    first.start().await.unwrap();
    first.stop(Duration::from_secs(10)).await.unwrap();
    let (status, _) = slot(&admin).await;
    assert_ne!(status, "lost");

    lose_the_slot(&admin).await;
    let (_, lost_restart) = slot(&admin).await;
    assert_eq!(lost_restart, None, "an invalidated slot has no restart LSN");

    // Default policy: fail, saying the slot is lost, and keep the slot for a person to inspect.
    let (output, _batches) = batch_channel(16);
    let failing = PostgresSource::new(config(&server, SlotLostPolicy::Fail), output).unwrap();
    let error = failing.start().await.unwrap_err();
    assert!(slot_lost_in(&error), "expected SlotLost, got {error:?}");
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert_eq!(failing.status(), Status::Failed);
    assert_eq!(slot(&admin).await.0, "lost", "the lost slot must be kept");

    // Recreate: a new slot, which streams what is committed after it.
    let before_recreate: Lsn = admin
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get::<_, String>(0)
        .parse()
        .unwrap();
    let (output, mut batches) = batch_channel(16);
    let recreating =
        PostgresSource::new(config(&server, SlotLostPolicy::Recreate), output).unwrap();
    recreating.start().await.unwrap();
    let (status, restart) = slot(&admin).await;
    assert_ne!(status, "lost");
    assert!(
        restart.is_some_and(|lsn| lsn >= before_recreate),
        "the slot was not created anew: restart LSN {restart:?}, before {before_recreate}"
    );
    admin
        .execute("INSERT INTO t VALUES (1)", &[])
        .await
        .unwrap();
    let batch = tokio::time::timeout(BOUND, batches.recv())
        .await
        .expect("no batch within the bound")
        .expect("source output closed");
    let after = batch.changes[0].after().unwrap();
    assert_eq!(after.get("id"), Some(&Value::Int32(1)));
    batch.ack.delivered();
    recreating.stop(Duration::from_secs(10)).await.unwrap();
}
