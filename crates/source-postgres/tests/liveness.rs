//! Issue 14, X-7 (liveness): a walsender that is silent for longer than the liveness timeout
//! because it is decoding (here: a long stretch of WAL the publication does not cover, written
//! while the source was stopped, so no heartbeat can come before the walsender has read all of
//! it) is not declared dead: the source asks the server, sees the walsender working, and waits.
//! Before, every session timed out, the next one decoded the same WAL again, and the published
//! row behind it never arrived.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::{Duration, Instant};

use surefoot_core_model::{Source, Value, batch_channel};
use surefoot_source_postgres::setup::PublicationTables;
use surefoot_source_postgres::{PostgresSource, PostgresSourceConfig, TableName};
use surefoot_test_support::PgServer;

mod common;
use common::{BOUND, ids, source_config};

/// Rows of the unpublished transaction: enough WAL (about 200 MB) that decoding it takes the
/// walsender several liveness timeouts.
const UNPUBLISHED_ROWS: i64 = 3_000_000;
const LIVENESS: Duration = Duration::from_secs(1);

fn config(server: &PgServer) -> PostgresSourceConfig {
    let mut config = source_config(server, "quiet");
    config.tables = PublicationTables::Tables(vec![TableName::parse("published").unwrap()]);
    config.heartbeat = Some(Duration::from_millis(300));
    config.liveness_timeout = LIVENESS;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_7_a_server_silent_while_decoding_is_not_declared_dead() {
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    admin
        .batch_execute(
            "CREATE TABLE published (id int PRIMARY KEY); CREATE TABLE other (id bigint)",
        )
        .await
        .unwrap();
    // A first run creates the slot and the publication.
    let (output, _batches) = batch_channel(16);
    let first = PostgresSource::new(config(&server), output).unwrap();
    first.start().await.unwrap();
    first.stop(Duration::from_secs(10)).await.unwrap();

    let written = Instant::now();
    admin
        .execute(
            "INSERT INTO other SELECT g FROM generate_series(1, $1::bigint) AS g",
            &[&UNPUBLISHED_ROWS],
        )
        .await
        .unwrap();
    admin
        .execute("INSERT INTO published VALUES (1)", &[])
        .await
        .unwrap();
    eprintln!(
        "wrote {UNPUBLISHED_ROWS} unpublished rows in {:?}",
        written.elapsed()
    );

    let (output, mut batches) = batch_channel(16);
    let source = PostgresSource::new(config(&server), output).unwrap();
    let started = Instant::now();
    source.start().await.unwrap();
    let batch = tokio::time::timeout(BOUND, batches.recv())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the published row never arrived; reconnects: {:#?}",
                source.reconnects()
            )
        })
        .expect("source output closed");
    let waited = started.elapsed();
    eprintln!(
        "published row after {waited:?}; silences survived: {}; reconnects: {}",
        source.silences_survived(),
        source.reconnects().len()
    );
    assert_eq!(ids(&batch), vec![Value::Int32(1)]);
    batch.ack.delivered();
    assert!(
        source.reconnects().is_empty(),
        "a decoding walsender was declared dead: {:#?}",
        source.reconnects()
    );
    assert!(
        source.silences_survived() >= 1,
        "the stream was never silent for the liveness timeout ({LIVENESS:?}; the row came after {waited:?}): the test proved nothing"
    );
    source.stop(Duration::from_secs(10)).await.unwrap();
}
