//! Backpressure: a consumer that stops receiving for three times `wal_sender_timeout` does not
//! get the replication connection disconnected. The source's output and the transport's event
//! buffer are kept small and the workload is larger than every buffer between the walsender and
//! the consumer (output, event buffer, both TCP socket buffers), so the walsender itself is
//! blocked on a full socket for the whole wait. Afterwards every transaction arrives once, in
//! commit order, on the same walsender, with no reconnect.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::Duration;

use surefoot_core_model::{Lsn, Source, Value, batch_channel};
use surefoot_source_postgres::setup::PublicationTables;
use surefoot_source_postgres::{
    Identifier, PostgresSource, PostgresSourceConfig, SlotName, TableName,
};
use surefoot_test_support::{PgClient, PgServer};

mod common;
use common::{BOUND, current_wal_lsn};

/// The server's `wal_sender_timeout`, set low so three of them fit in a test.
const SENDER_TIMEOUT: Duration = Duration::from_secs(2);
/// More than the buffers between walsender and consumer hold: 3,000 rows of 4,000 bytes that
/// are stored out of line without compression, so about 12 MB of stream.
const TRANSACTIONS: i32 = 3_000;
const BODY_BYTES: i32 = 4_000;
const APP: &str = "surefoot-bp-replication";

/// The walsender of our source: (`backend_start`, `sent_lsn`), once it is streaming.
async fn walsender(admin: &PgClient) -> Option<(String, Lsn)> {
    let row = admin
        .query_opt(
            "SELECT backend_start::text, sent_lsn::text FROM pg_stat_replication \
             WHERE application_name = $1 AND state = 'streaming'",
            &[&APP],
        )
        .await
        .unwrap()?;
    let sent: Option<String> = row.get(1);
    Some((row.get(0), sent?.parse().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_blocked_for_three_sender_timeouts_is_not_disconnected() {
    let server = PgServer::builder()
        .setting("wal_sender_timeout", "'2s'")
        .start()
        .await
        .unwrap();
    let admin = server.connect("postgres").await.unwrap();
    admin
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, body text NOT NULL);
             ALTER TABLE t ALTER COLUMN body SET STORAGE EXTERNAL;",
        )
        .await
        .unwrap();

    let mut config = PostgresSourceConfig::new(
        "bp",
        server.host(),
        server.port(),
        server.user(),
        "postgres",
        SlotName::parse("bp_slot").unwrap(),
        Identifier::parse("publication", "bp_pub").unwrap(),
    );
    config.tables = PublicationTables::Tables(vec![TableName::parse("t").unwrap()]);
    // No heartbeat: nothing but the transport's own status updates keeps the walsender content.
    config.heartbeat = None;
    config.status_interval = Duration::from_millis(200);
    config.buffer_events = 8;
    let (output, mut batches) = batch_channel(2);
    let source = PostgresSource::new(config, output).unwrap();
    source.start().await.unwrap();

    let streaming = async {
        loop {
            if let Some(found) = walsender(&admin).await {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (backend_start, _) = tokio::time::timeout(BOUND, streaming)
        .await
        .expect("the source's walsender never started streaming");

    let mut script = String::new();
    for id in 1..=TRANSACTIONS {
        script.push_str(&format!(
            "BEGIN; INSERT INTO t VALUES ({id}, repeat(chr(97 + {id} % 26), {BODY_BYTES})); COMMIT;\n"
        ));
    }
    admin.batch_execute(&script).await.unwrap();
    let end_of_workload = current_wal_lsn(&admin).await;

    // Waiting a real duration is the point of this test, not a fix for a race: the server ends a
    // walsender whose client has been silent for `wal_sender_timeout` of wall-clock time, so the
    // consumer must stay blocked for real, on tokio's real clock, for three of them.
    tokio::time::sleep(SENDER_TIMEOUT * 3 + Duration::from_millis(500)).await;

    let (still, sent) = walsender(&admin)
        .await
        .expect("the walsender is gone after the blocked wait");
    assert_eq!(
        still, backend_start,
        "the walsender was replaced while the consumer was blocked"
    );
    assert!(
        sent < end_of_workload,
        "the walsender sent everything ({sent} of {end_of_workload}): backpressure never reached it, so the test proved nothing"
    );
    assert!(
        source.reconnects().is_empty(),
        "reconnected: {:?}",
        source.reconnects()
    );

    for expected in 1..=TRANSACTIONS {
        let batch = tokio::time::timeout(BOUND, batches.recv())
            .await
            .expect("no batch within the bound")
            .expect("source output closed");
        assert_eq!(batch.changes.len(), 1, "transaction {expected}");
        let after = batch.changes[0].after().unwrap();
        assert_eq!(
            after.get("id"),
            Some(&Value::Int32(expected)),
            "out of order or duplicated"
        );
        batch.ack.delivered();
    }
    assert!(batches.try_recv().is_none(), "more batches than committed");

    assert!(
        source.reconnects().is_empty(),
        "reconnected: {:?}",
        source.reconnects()
    );
    let (after, sent) = walsender(&admin).await.expect("the walsender is gone");
    assert_eq!(after, backend_start, "the walsender was replaced");
    assert!(sent >= end_of_workload);
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(
        !log.contains("replication timeout"),
        "the server timed the walsender out:\n{}",
        server.log_tail()
    );
    source.stop(Duration::from_secs(10)).await.unwrap();
}
