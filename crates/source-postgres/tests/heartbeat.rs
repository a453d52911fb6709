//! The heartbeat against a real PostgreSQL: it keeps an idle slot advancing while only
//! unpublished tables are written, and it makes a black-holed replication connection visible
//! to the liveness timeout, after which the source reconnects and delivers again.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::sync::Arc;
use std::time::Duration;

use surefoot_core_lifecycle::{Backoff, ErrorClass, RetryPolicy};
use surefoot_core_model::{Source, Value, batch_channel};
use surefoot_source_postgres::setup::PublicationTables;
use surefoot_source_postgres::transport::{PgWireConnector, ReplicationEndpoint};
use surefoot_source_postgres::{PostgresSource, PostgresSourceConfig, TableName};
use surefoot_test_support::{FaultProxy, PgClient, PgServer};

mod common;
use common::{BOUND, confirmed_flush, current_wal_lsn, ids, next_batch, source_config};

const POLL: Duration = Duration::from_millis(50);
/// Bound on seeing the next heartbeat confirmed (heartbeats are every 200 ms).
const HEARTBEAT_BOUND: Duration = Duration::from_secs(5);

fn config(server: &PgServer, id: &str) -> PostgresSourceConfig {
    let mut config = source_config(server, id);
    config.tables = PublicationTables::Tables(vec![TableName::parse("published").unwrap()]);
    config.heartbeat = Some(Duration::from_millis(200));
    config.liveness_timeout = Duration::from_secs(1);
    config
}

async fn tables(server: &PgServer) -> PgClient {
    let client = server.connect("postgres").await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE published (id int PRIMARY KEY);
             CREATE TABLE unpublished (id int PRIMARY KEY);",
        )
        .await
        .unwrap();
    client
}

#[tokio::test]
async fn with_only_unpublished_writes_the_heartbeat_advances_the_slot() {
    let server = PgServer::new().await.unwrap();
    let admin = tables(&server).await;
    let (output, mut batches) = batch_channel(16);
    let source = PostgresSource::new(config(&server, "idle"), output).unwrap();
    source.start().await.unwrap();
    let at_start = confirmed_flush(&admin, "idle_slot").await;

    // A while of writes the publication does not cover: pgoutput sends nothing for them.
    for id in 1..=50 {
        admin
            .execute("INSERT INTO unpublished VALUES ($1)", &[&id])
            .await
            .unwrap();
    }
    let after_writes = current_wal_lsn(&admin).await;
    assert!(after_writes > at_start);

    let advanced = async {
        loop {
            let flushed = confirmed_flush(&admin, "idle_slot").await;
            if flushed >= after_writes {
                return flushed;
            }
            tokio::time::sleep(POLL).await;
        }
    };
    let flushed = tokio::time::timeout(BOUND, advanced)
        .await
        .unwrap_or_else(|_| {
            panic!("the slot stayed behind {after_writes} (was {at_start} after start)")
        });
    assert!(flushed > at_start);
    // Confirming the keepalive's WAL end while idle also carries the slot past skipped
    // transactions; what only the heartbeat does is write WAL of its own that the stream
    // carries, so the slot keeps moving with no other writes at all.
    let again = async {
        loop {
            if confirmed_flush(&admin, "idle_slot").await > flushed {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::time::timeout(HEARTBEAT_BOUND, again)
        .await
        .unwrap_or_else(|_| panic!("with no writes the slot stayed at {flushed}"));
    assert!(
        batches.try_recv().is_none(),
        "unpublished writes produced a batch"
    );
    assert!(source.reconnects().is_empty());
    source.stop(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_replication_connection_times_out_and_the_source_reconnects() {
    // A short sender timeout ends the walsender orphaned by the black hole soon, so that the
    // slot is free again for the reconnect.
    let server = PgServer::builder()
        .setting("wal_sender_timeout", "'3s'")
        .start()
        .await
        .unwrap();
    let admin = tables(&server).await;
    let upstream = format!("{}:{}", server.host(), server.port())
        .parse()
        .unwrap();
    let proxy = FaultProxy::start(upstream).await.unwrap();

    let mut config = config(&server, "hole");
    config.connect_timeout = Duration::from_secs(2);
    config.reconnect = RetryPolicy::new(Backoff::new(
        Duration::from_millis(20),
        Duration::from_millis(500),
    ))
    .with_max_elapsed(Duration::from_secs(120));
    // Only the replication connection goes through the proxy; the heartbeat and setup SQL
    // reach the server directly, so heartbeats keep being written while the stream is silent.
    let mut endpoint = ReplicationEndpoint::for_source(&config);
    endpoint.host = proxy.listen_addr().ip().to_string();
    endpoint.port = proxy.port();
    let connector = PgWireConnector::new(endpoint);
    let (output, mut batches) = batch_channel(16);
    let source = PostgresSource::with_connector(config, output, Arc::new(connector));
    source.start().await.unwrap();

    admin
        .execute("INSERT INTO published VALUES (1)", &[])
        .await
        .unwrap();
    let first = next_batch(&mut batches).await;
    assert_eq!(ids(&first), vec![Value::Int32(1)]);
    first.ack.delivered();
    assert!(source.reconnects().is_empty());

    proxy.black_hole();
    let detected = async {
        loop {
            if let Some(first) = source.reconnects().first().cloned() {
                return first;
            }
            tokio::time::sleep(POLL).await;
        }
    };
    let reconnect = tokio::time::timeout(BOUND, detected)
        .await
        .expect("the silent connection was never declared dead");
    assert_eq!(
        reconnect.class,
        ErrorClass::Timeout,
        "first reconnect: {reconnect:?}"
    );
    assert!(
        reconnect.error.contains("receive from replication stream"),
        "the liveness timeout should have ended the session: {reconnect:?}"
    );

    proxy.heal();
    admin
        .execute("INSERT INTO published VALUES (2)", &[])
        .await
        .unwrap();
    let second = next_batch(&mut batches).await;
    assert_eq!(
        ids(&second),
        vec![Value::Int32(2)],
        "after the reconnect the next transaction, and only it, arrives"
    );
    second.ack.delivered();
    source.stop(Duration::from_secs(10)).await.unwrap();
    assert!(batches.try_recv().is_none());
}
