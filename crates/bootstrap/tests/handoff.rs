//! The hand-off from snapshot to stream against a real PostgreSQL, with a writer committing
//! thousands of transactions while the snapshot is copied: the consumer's state equals the table
//! exactly, and every writer transaction reaches it once, in the snapshot or in the stream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::Duration;

use common::{
    BOUND, Consumer, create_items, next_batch, slots_like, source_config, table_state, write,
};
use surefoot_bootstrap::postgres::snapshot_end;
use surefoot_bootstrap::{BootstrapConfig, PostgresProvider};
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{BatchReceiver, Lsn, SnapshotRequest, Source, batch_channel};
use surefoot_source_postgres::{PostgresSource, SlotName};
use surefoot_test_support::PgServer;
use tokio::sync::watch;

const ROWS: i32 = 200_000;
const TRANSACTIONS: i32 = 2_000;

fn request() -> SnapshotRequest {
    SnapshotRequest {
        consumer: "handoff".to_owned(),
        tables: Vec::new(),
    }
}

/// Receives the snapshot into `consumer`; after the first batch, holds the copy (the channel is
/// small, so the COPY waits) until the writer has committed [`TRANSACTIONS`] more transactions,
/// so that many certainly commit while the snapshot is being copied.
async fn receive_snapshot(
    batches: &mut BatchReceiver,
    consumer: &mut Consumer,
    mut committed: watch::Receiver<i32>,
) {
    let mut first = true;
    while let Some(batch) = batches.recv().await {
        consumer.snapshot(batch);
        if first {
            first = false;
            let seen = *committed.borrow_and_update();
            tokio::time::timeout(BOUND, committed.wait_for(|now| *now >= seen + TRANSACTIONS))
                .await
                .expect("the writer stalled")
                .unwrap();
        }
    }
}

/// Applies stream batches until the writer's sentinel arrives.
async fn receive_stream(batches: &mut BatchReceiver, consumer: &mut Consumer, point: Lsn) {
    while !consumer.ended {
        consumer.stream(next_batch(batches).await, point);
    }
}

/// The state equals the table, and the writer's transactions split exactly at the consistent
/// point: `1..=j` in the snapshot, `j+1..=last` in the stream, none in both.
fn check_exact(consumer: &Consumer, table: &std::collections::BTreeMap<i32, i32>, last: i32) {
    assert_eq!(consumer.rows.len(), table.len());
    assert!(
        consumer.rows == *table,
        "the consumer's state differs from the table"
    );
    let before = consumer.in_snapshot.len() as i32;
    assert!(
        consumer.in_snapshot.iter().copied().eq(1..=before),
        "the snapshot holds a gap of writer transactions"
    );
    assert!(
        consumer.in_stream.iter().copied().eq(before + 1..=last),
        "the stream does not continue exactly after the snapshot (snapshot 1..={before})"
    );
    eprintln!(
        "{before} writer transactions in the snapshot, {} in the stream",
        consumer.in_stream.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_snapshot_then_stream_equals_the_table_under_concurrent_writes() {
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    create_items(&admin, ROWS).await;
    let writer = server.connect("postgres").await.unwrap();
    let config = source_config(&server, "first");
    let provider =
        PostgresProvider::first_start(config.clone(), BootstrapConfig::default()).unwrap();

    let (done, done_seen) = watch::channel(false);
    let (committed, committed_seen) = watch::channel(0);
    let mut consumer = Consumer::default();
    let (snapshot_out, mut snapshot_in) = batch_channel(4);
    let (stream_out, mut stream_in) = batch_channel(64);
    let source = PostgresSource::new(config, stream_out).unwrap();
    let cancel = CancellationToken::new();
    let writing = write(&writer, ROWS, TRANSACTIONS, done_seen, &committed);
    let bootstrap = async {
        let snapshot = async {
            let exported = provider.export(&request(), &snapshot_out, &cancel).await;
            drop(snapshot_out);
            exported
        };
        let (exported, ()) = tokio::join!(
            snapshot,
            receive_snapshot(&mut snapshot_in, &mut consumer, committed_seen)
        );
        let exported = exported.unwrap();
        assert_eq!(exported.complete.rows, consumer.rows.len() as u64);
        // The planner's estimate, for progress lines: about right, never exact by contract.
        let estimated = provider
            .estimated_rows()
            .borrow()
            .expect("estimated before the copy");
        let rows = exported.complete.rows;
        eprintln!("estimated {estimated} rows, copied {rows}");
        assert!(
            estimated >= rows / 3 && estimated <= rows * 3,
            "estimated {estimated} rows for {rows}"
        );
        let point = exported.slot.consistent_point();
        assert_eq!(
            exported.complete.consistent_point,
            snapshot_end(point),
            "the snapshot is bounded by the end of its position space"
        );
        assert_eq!(exported.last_row(), consumer.last_snapshot);
        assert_eq!(
            exported.last_row(),
            Some(surefoot_core_model::Position::snapshot(
                point,
                exported.complete.rows - 1
            ))
        );
        // The persistent slot stays; the source streams from its consistent point.
        exported.slot.close();
        source.start().await.unwrap();
        done.send_replace(true);
        point
    };
    let (last, point) = tokio::join!(writing, bootstrap);
    assert!(last >= TRANSACTIONS);
    receive_stream(&mut stream_in, &mut consumer, point).await;
    check_exact(&consumer, &table_state(&admin).await, last);
    source.stop(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_added_to_a_running_source_gets_snapshot_then_exactly_the_later_changes() {
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    create_items(&admin, ROWS).await;
    let writer = server.connect("postgres").await.unwrap();

    // A running source with a consumer of its own, started before any writer transaction.
    let running = source_config(&server, "running");
    let (running_out, mut running_in) = batch_channel(64);
    let source = PostgresSource::new(running.clone(), running_out).unwrap();
    source.start().await.unwrap();

    let slot = SlotName::parse("late_consumer_slot").unwrap();
    let provider =
        PostgresProvider::added_consumer(running.clone(), slot.clone(), BootstrapConfig::default())
            .unwrap();
    let (done, done_seen) = watch::channel(false);
    let (committed, committed_seen) = watch::channel(0);
    let mut late = Consumer::default();
    let mut first = Consumer::default();
    let (snapshot_out, mut snapshot_in) = batch_channel(4);
    let (late_out, mut late_in) = batch_channel(64);
    let cancel = CancellationToken::new();
    let writing = write(&writer, ROWS, TRANSACTIONS, done_seen, &committed);
    let bootstrap = async {
        let snapshot = async {
            let exported = provider.export(&request(), &snapshot_out, &cancel).await;
            drop(snapshot_out);
            exported
        };
        let (exported, ()) = tokio::join!(
            snapshot,
            receive_snapshot(&mut snapshot_in, &mut late, committed_seen)
        );
        let exported = exported.unwrap();
        let point = exported.slot.consistent_point();
        assert_eq!(exported.complete.consistent_point, snapshot_end(point));
        assert_eq!(exported.complete.rows, late.rows.len() as u64);
        assert_eq!(exported.last_row(), late.last_snapshot);
        // The late consumer streams from its temporary slot, on the session that created it.
        let mut late_config = running.clone();
        late_config.id = surefoot_core_model::SourceId::new("late");
        late_config.slot = slot.clone();
        let stream =
            PostgresSource::with_connector(late_config, late_out, exported.slot.into_connector());
        stream.start().await.unwrap();
        done.send_replace(true);
        (point, stream)
    };
    // The first consumer keeps receiving meanwhile: it is not held up by the late one.
    let first_receives = async {
        while !first.ended {
            first.stream(next_batch(&mut running_in).await, Lsn::ZERO);
        }
    };
    let (last, (point, stream), ()) = tokio::join!(writing, bootstrap, first_receives);
    assert!(last >= TRANSACTIONS);
    receive_stream(&mut late_in, &mut late, point).await;
    check_exact(&late, &table_state(&admin).await, last);
    assert!(
        first.in_stream.iter().copied().eq(1..=last),
        "the running source's consumer missed or repeated a transaction"
    );

    stream.stop(Duration::from_secs(10)).await.unwrap();
    source.stop(Duration::from_secs(10)).await.unwrap();
    // The temporary slot went with its session.
    let deadline = std::time::Instant::now() + BOUND;
    while slots_like(&admin, slot.as_str()).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the temporary slot outlived its session"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
