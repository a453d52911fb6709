//! Issue 14, X-6: a stop while the output is full gives up the batch waiting for room (it is
//! abandoned, a failure), but the batches before it that the consumer delivers while the stop
//! drains are still confirmed: the slot ends at the delivered prefix's commit, not at the
//! position the session started from.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::Duration;

use surefoot_core_model::{Source, batch_channel};
use surefoot_source_postgres::PostgresSource;
use surefoot_test_support::PgServer;

mod common;
use common::{BOUND, commit_end_lsn, confirmed_flush, next_batch, source_config};

/// Output capacity: two batches fit, the fifth waits for room.
const CAPACITY: usize = 2;
const TRANSACTIONS: i32 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_6_stop_under_backpressure_confirms_the_delivered_prefix() {
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    admin
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let (output, mut batches) = batch_channel(CAPACITY);
    let source = PostgresSource::new(source_config(&server, "x6"), output).unwrap();
    source.start().await.unwrap();
    let started_at = confirmed_flush(&admin, "x6_slot").await;

    for id in 1..=TRANSACTIONS {
        admin
            .execute("INSERT INTO t VALUES ($1)", &[&id])
            .await
            .unwrap();
    }
    // The consumer takes two batches and holds them; two more fill the output and the fifth
    // waits for room: five registered, none settled.
    let first = next_batch(&mut batches).await;
    let second = next_batch(&mut batches).await;
    let mut tracker = source.tracker().subscribe();
    let all_registered = tracker.wait_for(|state| state.in_flight() == TRANSACTIONS as usize);
    tokio::time::timeout(BOUND, all_registered)
        .await
        .expect("the fifth batch never waited for room")
        .unwrap();
    let delivered_end = commit_end_lsn(&admin, second.last.commit_lsn().unwrap()).await;

    // Stop while the fifth batch waits: the stop abandons it, which records a failure. While
    // the stop drains, the consumer delivers the two batches it holds and goes away, abandoning
    // the two it never received.
    let consumer = async move {
        let failed = tracker.wait_for(|state| state.failure().is_some());
        tokio::time::timeout(BOUND, failed)
            .await
            .expect("the stop never gave up the waiting batch")
            .unwrap();
        first.ack.delivered();
        second.ack.delivered();
        drop(batches);
    };
    let (stopped, ()) = tokio::join!(source.stop(Duration::from_secs(6)), consumer);
    stopped.unwrap();

    let confirmed = confirmed_flush(&admin, "x6_slot").await;
    eprintln!(
        "slot started at {started_at}, delivered prefix ends at {delivered_end}, confirmed {confirmed}"
    );
    assert_eq!(
        confirmed, delivered_end,
        "the slot is not at the delivered prefix's commit (the session started at {started_at})"
    );
    assert_eq!(source.confirmed(), delivered_end);
}
