//! X-1 (issue 14): every snapshot row has its own position, `Position::snapshot(C, n)` with `n`
//! counted from 0 across all tables in the order rows are sent, so a consumer idempotent by
//! position (it skips what is at or below its checkpoint) applies every row once, however the
//! snapshot is cut into batches; and every one of them sorts before the first stream change.
//! Against a real PostgreSQL, for a first start and for a consumer added to a running source,
//! each handed on to its stream with `PostgresProvider::stream_after`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::Duration;

use common::{next_batch, source_config};
use surefoot_bootstrap::postgres::Exported;
use surefoot_bootstrap::{BootstrapConfig, PostgresProvider};
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{
    Batch, BatchReceiver, Lsn, Position, SnapshotRequest, Source, SourceId, batch_channel,
};
use surefoot_source_postgres::{PostgresSource, SlotName};
use surefoot_test_support::{PgClient, PgServer};

/// Rows in each of the two tables; with [`BATCH`], many batches per table, and a last batch of
/// each table that is not full.
const ROWS: i32 = 2_345;
const BATCH: usize = 100;

/// Two tables, so row numbers must carry on from one table to the next.
async fn create_tables(admin: &PgClient) {
    admin
        .batch_execute(&format!(
            "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO items SELECT g, g FROM generate_series(1, {ROWS}) g;
             CREATE TABLE others (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO others SELECT g, -g FROM generate_series(1, {ROWS}) g;"
        ))
        .await
        .unwrap();
}

fn config() -> BootstrapConfig {
    BootstrapConfig {
        batch_changes: BATCH,
        ..BootstrapConfig::default()
    }
}

fn request() -> SnapshotRequest {
    SnapshotRequest {
        consumer: "x-1".to_owned(),
        tables: Vec::new(),
    }
}

/// Exports the snapshot while receiving every batch it sends.
async fn export(provider: &PostgresProvider) -> (Exported, Vec<Batch>) {
    let (output, mut batches) = batch_channel(4);
    let cancel = CancellationToken::new();
    let snapshot = async {
        let exported = provider.export(&request(), &output, &cancel).await;
        drop(output);
        exported
    };
    let receive = async {
        let mut received = Vec::new();
        while let Some(batch) = batches.recv().await {
            received.push(batch);
        }
        received
    };
    let (exported, received) = tokio::join!(snapshot, receive);
    (exported.unwrap(), received)
}

/// What a consumer idempotent by position keeps: the changes of each batch above its checkpoint,
/// the checkpoint moving to the batch's `last` (as `sink-postgres-writer` does).
fn applied_by_position(batches: &[Batch]) -> usize {
    let mut checkpoint: Option<Position> = None;
    let mut applied = 0;
    for batch in batches {
        if checkpoint.is_none_or(|at| batch.first > at) {
            applied += batch.changes.len();
            checkpoint = Some(batch.last);
        }
    }
    applied
}

/// The snapshot's rows are `Position::snapshot(point, 0..)` in the order sent, each batch's
/// `first`/`last` its first and last row's, and `consistent_point` above them all.
fn check_snapshot_positions(exported: &Exported, batches: &[Batch]) {
    let point = exported.slot.consistent_point();
    let sent: usize = batches.iter().map(|batch| batch.changes.len()).sum();
    assert_eq!(sent, 2 * ROWS as usize);
    assert_eq!(exported.complete.rows, sent as u64);
    assert!(
        batches.len() > 2 * (ROWS as usize / BATCH),
        "too few batches"
    );
    assert_eq!(
        applied_by_position(batches),
        sent,
        "a consumer idempotent by position skips snapshot rows"
    );
    let mut row = 0_u64;
    for batch in batches {
        let first = Position::snapshot(point, row);
        for change in batch.changes.iter() {
            let expected = Position::snapshot(point, row);
            assert_eq!(change.position, expected, "snapshot row {row}'s position");
            row += 1;
        }
        assert_eq!(batch.first, first, "a batch's first is its first row's");
        assert_eq!(batch.last, Position::snapshot(point, row - 1));
    }
    for pair in batches.windows(2) {
        assert!(pair[0].last < pair[1].first, "batches do not increase");
    }
    let last = batches.last().unwrap().last;
    assert!(
        last < exported.complete.consistent_point,
        "the consistent point {} does not bound the snapshot (last row {last})",
        exported.complete.consistent_point
    );
}

/// The first stream change sorts after every snapshot row and after the consistent point.
fn check_stream_after(last_row: Position, complete_point: Position, stream: Batch, at: Lsn) {
    assert!(stream.last.commit_lsn().unwrap() >= at);
    assert!(
        stream.first > last_row,
        "the stream change {} sorts with the snapshot (last row {last_row})",
        stream.first
    );
    assert!(stream.first > complete_point);
    stream.ack.delivered();
}

/// Inserts one row and returns the stream batch that carries it.
async fn one_stream_change(admin: &PgClient, stream: &mut BatchReceiver) -> Batch {
    admin
        .batch_execute("INSERT INTO items VALUES (-1, 0)")
        .await
        .unwrap();
    next_batch(stream).await
}

fn settle(batches: Vec<Batch>) -> Position {
    let last = batches.last().unwrap().last;
    for batch in batches {
        batch.ack.delivered();
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_1_snapshot_rows_have_distinct_increasing_positions_below_the_stream_on_first_start() {
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    create_tables(&admin).await;
    let provider =
        PostgresProvider::first_start(source_config(&server, "first"), config()).unwrap();

    let (exported, batches) = export(&provider).await;
    check_snapshot_positions(&exported, &batches);
    assert!(batches.iter().all(|b| b.source == SourceId::new("first")));
    let point = exported.slot.consistent_point();
    let complete_point = exported.complete.consistent_point;
    let last_row = settle(batches);

    // The persistent slot stays; the source streams from its consistent point.
    let (stream_out, mut stream_in) = batch_channel(16);
    let stream = provider.stream_after(exported, stream_out);
    stream.start().await.unwrap();
    let change = one_stream_change(&admin, &mut stream_in).await;
    assert_eq!(change.source, SourceId::new("first"));
    check_stream_after(last_row, complete_point, change, point);
    stream.stop(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_1_snapshot_rows_have_distinct_increasing_positions_below_the_stream_for_a_consumer_added_later()
 {
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    create_tables(&admin).await;
    let running = source_config(&server, "running");
    let (running_out, mut running_in) = batch_channel(16);
    let source = PostgresSource::new(running.clone(), running_out).unwrap();
    source.start().await.unwrap();

    // The late consumer's own id: its snapshot and its stream carry it.
    let slot = SlotName::parse("late_x1_slot").unwrap();
    let mut late = running.clone();
    late.id = SourceId::new("late");
    let provider = PostgresProvider::added_consumer(late, slot, config()).unwrap();
    let (exported, batches) = export(&provider).await;
    check_snapshot_positions(&exported, &batches);
    assert!(batches.iter().all(|b| b.source == SourceId::new("late")));
    let point = exported.slot.consistent_point();
    let complete_point = exported.complete.consistent_point;
    let last_row = settle(batches);

    // The late consumer streams from its temporary slot, on the session that created it.
    let (late_out, mut late_in) = batch_channel(16);
    let stream = provider.stream_after(exported, late_out);
    stream.start().await.unwrap();
    let change = one_stream_change(&admin, &mut late_in).await;
    assert_eq!(change.source, SourceId::new("late"));
    check_stream_after(last_row, complete_point, change, point);
    // The running source got the same change, at a stream position of its own.
    next_batch(&mut running_in).await.ack.delivered();

    stream.stop(Duration::from_secs(10)).await.unwrap();
    source.stop(Duration::from_secs(10)).await.unwrap();
}
