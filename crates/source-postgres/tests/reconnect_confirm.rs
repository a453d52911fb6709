//! A batch sent before a reconnect and acknowledged after it is confirmed at its commit's end
//! LSN: a stop right after the acknowledgement leaves the slot exactly there, not at the older
//! position the new session started from.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::Duration;

use surefoot_core_model::{Source, batch_channel};
use surefoot_source_postgres::{Identifier, PostgresSource, PostgresSourceConfig, SlotName};
use surefoot_test_support::{PgClient, PgServer};

mod common;
use common::{BOUND, commit_end_lsn, confirmed_flush};

const APP: &str = "surefoot-rc-replication";

async fn streaming(admin: &PgClient) -> bool {
    admin
        .query_opt(
            "SELECT 1 FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'",
            &[&APP],
        )
        .await
        .unwrap()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_acknowledged_after_a_reconnect_is_confirmed_at_its_end() {
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    admin
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let mut config = PostgresSourceConfig::new(
        "rc",
        server.host(),
        server.port(),
        server.user(),
        "postgres",
        SlotName::parse("rc_slot").unwrap(),
        Identifier::parse("publication", "rc_pub").unwrap(),
    );
    config.heartbeat = None;
    config.status_interval = Duration::from_millis(100);
    let (output, mut batches) = batch_channel(16);
    let source = PostgresSource::new(config, output).unwrap();
    source.start().await.unwrap();

    admin
        .execute("INSERT INTO t VALUES (1)", &[])
        .await
        .unwrap();
    let held = tokio::time::timeout(BOUND, batches.recv())
        .await
        .expect("no batch within the bound")
        .expect("source output closed");
    let end = commit_end_lsn(&admin, held.last.commit_lsn().unwrap()).await;

    // The walsender dies while the batch is in flight; the source reconnects.
    assert_eq!(server.terminate_backends(APP).await.unwrap(), 1);
    let reconnected = async {
        while source.reconnects().is_empty() || !streaming(&admin).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(BOUND, reconnected)
        .await
        .expect("the source did not reconnect");

    held.ack.delivered();
    source.stop(Duration::from_secs(10)).await.unwrap();
    let confirmed = confirmed_flush(&admin, "rc_slot").await;
    assert_eq!(
        confirmed, end,
        "the acknowledged batch from before the reconnect was not confirmed"
    );
    assert_eq!(source.confirmed(), end);
    assert!(batches.try_recv().is_none(), "the batch was sent twice");
}
