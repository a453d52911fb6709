//! The source against a real PostgreSQL: batches per transaction, confirmations, clean stop.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use surefoot_core_lifecycle::{Classify, ErrorClass, Status};
use surefoot_core_model::{Batch, Lsn, Source, Value, batch_channel};
use surefoot_source_postgres::transport::{PgWireConnector, ReplicationEndpoint};
use surefoot_source_postgres::{Identifier, PostgresSource};
use surefoot_test_support::{FaultProxy, PgServer};

mod common;
use common::{commit_end_lsn, confirmed_flush, next_batch, slot_active, source_config as config};

/// Keeps trust for the admin role `postgres`; every other role must give its password.
async fn require_passwords_except_for_postgres(server: &PgServer) {
    let hba = "local all all trust\n\
               host all postgres 127.0.0.1/32 trust\n\
               host replication postgres 127.0.0.1/32 trust\n\
               host all all 127.0.0.1/32 scram-sha-256\n\
               host replication all 127.0.0.1/32 scram-sha-256\n";
    std::fs::write(server.data_dir().join("pg_hba.conf"), hba).unwrap();
    let admin = server.connect("postgres").await.unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
}

#[tokio::test]
async fn one_transaction_of_1000_rows_is_one_batch_of_1000_distinct_positions() {
    let server = PgServer::new().await.unwrap();
    let client = server.connect("postgres").await.unwrap();
    client
        .batch_execute("CREATE TABLE items (id int primary key, name text)")
        .await
        .unwrap();
    let (output, mut batches) = batch_channel(16);
    let source = PostgresSource::new(config(&server, "one_tx"), output).unwrap();
    source.start().await.unwrap();

    client
        .batch_execute("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g")
        .await
        .unwrap();
    let batch = next_batch(&mut batches).await;
    assert_eq!(batch.changes.len(), 1000);
    let positions: HashSet<_> = batch.changes.iter().map(|c| c.position).collect();
    assert_eq!(positions.len(), 1000);
    assert_eq!(batch.first, batch.changes[0].position);
    assert_eq!(batch.last, batch.changes[999].position);
    let after = batch.changes[41].after().unwrap();
    assert_eq!(after.get("id"), Some(&Value::Int32(42)));
    assert_eq!(after.get("name"), Some(&Value::Text("item 42".into())));
    batch.ack.delivered();
    source.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(source.status(), Status::Stopped);
}

#[tokio::test]
async fn d_h3_stop_releases_the_slot_at_the_end_of_the_last_acknowledged_commit() {
    let server = PgServer::new().await.unwrap();
    let client = server.connect("postgres").await.unwrap();
    client
        .batch_execute("CREATE TABLE t (id int primary key)")
        .await
        .unwrap();
    let (output, mut batches) = batch_channel(16);
    let source = PostgresSource::new(config(&server, "d_h3"), output).unwrap();
    source.start().await.unwrap();

    for id in 1..=3 {
        client
            .execute("INSERT INTO t VALUES ($1)", &[&id])
            .await
            .unwrap();
    }
    let mut last_commit = Lsn::ZERO;
    for _ in 1..=3 {
        let batch = next_batch(&mut batches).await;
        last_commit = batch.last.commit_lsn().unwrap();
        batch.ack.delivered();
    }
    // A fourth transaction is received but never acknowledged: it must not be confirmed.
    client
        .execute("INSERT INTO t VALUES (4)", &[])
        .await
        .unwrap();
    let unacknowledged = next_batch(&mut batches).await;
    let end_of_last_acknowledged = commit_end_lsn(&client, last_commit).await;

    let stopping = tokio::time::Instant::now();
    let stop = source.stop(Duration::from_secs(4));
    let (stopped, ()) = tokio::join!(stop, async { drop(unacknowledged) });
    stopped.unwrap();
    let active = slot_active(&client, "d_h3_slot").await;
    let confirmed = confirmed_flush(&client, "d_h3_slot").await;
    assert!(stopping.elapsed() < Duration::from_secs(5));
    assert!(!active, "the slot is still held after stop");
    assert_eq!(confirmed, end_of_last_acknowledged);
    assert_eq!(source.confirmed(), end_of_last_acknowledged);
}

#[tokio::test]
async fn batches_dropped_unsettled_arrive_again_after_restart_and_nothing_before_the_watermark() {
    let server = PgServer::new().await.unwrap();
    let client = server.connect("postgres").await.unwrap();
    client
        .batch_execute("CREATE TABLE t (id int primary key)")
        .await
        .unwrap();
    let (output, mut batches) = batch_channel(16);
    let source = PostgresSource::new(config(&server, "redeliver"), output).unwrap();
    source.start().await.unwrap();
    for id in 1..=4 {
        client
            .execute("INSERT INTO t VALUES ($1)", &[&id])
            .await
            .unwrap();
    }
    let ids = |batch: &Batch| -> Vec<Value> {
        batch
            .changes
            .iter()
            .map(|c| c.after().unwrap().get("id").unwrap().clone())
            .collect()
    };
    let first = next_batch(&mut batches).await;
    let second = next_batch(&mut batches).await;
    assert_eq!(
        (ids(&first), ids(&second)),
        (vec![Value::Int32(1)], vec![Value::Int32(2)])
    );
    first.ack.delivered();
    // The consumer dies holding the second batch and whatever else it received.
    drop(second);
    source.stop(Duration::from_secs(5)).await.unwrap();
    while let Some(batch) = batches.try_recv() {
        drop(batch);
    }

    source.start().await.unwrap();
    let again = next_batch(&mut batches).await;
    assert_eq!(
        ids(&again),
        vec![Value::Int32(2)],
        "redelivery must resume right after the watermark"
    );
    again.ack.delivered();
    for expected in 3..=4 {
        let batch = next_batch(&mut batches).await;
        assert_eq!(ids(&batch), vec![Value::Int32(expected)]);
        batch.ack.delivered();
    }
    source.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_wrong_password_fails_fast_with_a_permanent_error_and_no_retry() {
    let server = PgServer::builder()
        .setting("password_encryption", "'scram-sha-256'")
        .start()
        .await
        .unwrap();
    let admin = server.connect("postgres").await.unwrap();
    admin
        .batch_execute("CREATE ROLE replicator LOGIN REPLICATION PASSWORD 'right'")
        .await
        .unwrap();
    require_passwords_except_for_postgres(&server).await;
    let mut config = config(&server, "auth");
    config.user = "replicator".into();
    config.password = surefoot_core_model::Secret::new("wrong");
    let (output, _batches) = batch_channel(16);
    let source = PostgresSource::new(config, output).unwrap();
    let started = tokio::time::Instant::now();
    let error = source.start().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert_eq!(source.status(), Status::Failed);
    assert!(source.reconnects().is_empty());
}

#[tokio::test]
async fn a_missing_publication_is_named_in_the_error() {
    let server = PgServer::new().await.unwrap();
    let mut config = config(&server, "nopub");
    config.create_publication = false;
    config.publication = Identifier::parse("publication", "no_such_pub").unwrap();
    let (output, _batches) = batch_channel(16);
    let source = PostgresSource::new(config, output).unwrap();
    let error = source.start().await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Permanent);
    let chain = format!("{:?}", error);
    assert!(chain.contains("no_such_pub"), "{chain}");
}

#[tokio::test]
async fn d_8a_an_error_while_stopping_is_reported_not_swallowed() {
    let server = PgServer::new().await.unwrap();
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], server.port())))
        .await
        .unwrap();
    // The replication stream goes to the server directly; the source's ordinary SQL (setup, and
    // releasing the slot at stop) goes through the proxy.
    let mut config = config(&server, "stop_error");
    config.connect_timeout = Duration::from_millis(500);
    let connector = PgWireConnector::new(ReplicationEndpoint::for_source(&config));
    config.host = proxy.listen_addr().ip().to_string();
    config.port = proxy.port();
    let (output, mut batches) = batch_channel(16);
    let source = PostgresSource::with_connector(config, output, Arc::new(connector));
    source.start().await.unwrap();
    // A delivered batch proves the stream is open, so stop has a slot to release.
    let admin = server.connect("postgres").await.unwrap();
    admin
        .batch_execute("CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    next_batch(&mut batches).await.ack.delivered();

    proxy.black_hole();
    let error = source.stop(Duration::from_secs(2)).await.unwrap_err();
    let chain = format!("{error:?}");
    assert!(chain.contains("release replication slot"), "{chain}");
    // The stop itself completed (nothing is left running); its error is in the report.
    assert_eq!(source.status(), Status::Stopped);
}
