//! Issue 14, X-4: a batch at or below the checkpoint is skipped only when the writer can prove
//! it applied exactly that batch (the applied-batch records, decision 0007); anything else is
//! refused: an error to the caller, a metric, a log line, and the batch settled failed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::sync::{Arc, Mutex};

use common::meter::Meter;
use common::*;
use surefoot_core_lifecycle::{CancellationToken, Classify, ErrorClass};
use surefoot_core_model::{
    AckOutcome, AckToken, Batch, Change, Lsn, Position, Value, batch_channel,
};
use surefoot_sink_postgres_writer::{ApplyMode, PostgresWriter, Refusal, TableConfig, WriterError};
use surefoot_test_support::PgServer;

const REFUSED: &str = "surefoot.writer.batches.refused";

type Outcomes = Arc<Mutex<Vec<(Position, AckOutcome)>>>;

fn items() -> TableConfig {
    TableConfig::new(
        table("items"),
        ApplyMode::Mirror {
            key: vec!["id".into()],
        },
    )
}

fn put(position: Position, id: i64, body: &str) -> Change {
    Change::insert(position, table("items"), row(id, Value::Text(body.into())))
}

/// Inserts of ids `ids` at sequence positions equal to the ids, body `body`.
fn puts(ids: std::ops::RangeInclusive<u64>, body: &str) -> Vec<Change> {
    ids.map(|n| put(seq(n), n as i64, body)).collect()
}

/// A batch whose token records its outcome under its last position.
fn tracked(changes: Vec<Change>, outcomes: &Outcomes) -> Batch {
    let last = changes.last().unwrap().position;
    let outcomes = Arc::clone(outcomes);
    let ack = AckToken::new(move |outcome| outcomes.lock().unwrap().push((last, outcome)));
    batch_with("src", changes, ack)
}

async fn writer_on(server: &PgServer, sink: &str) -> (PostgresWriter, Meter) {
    let (meter, metrics) = Meter::new(sink);
    let writer = PostgresWriter::builder(config(server, sink).table(items()))
        .metrics(metrics)
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, body text)")
        .execute(writer.pool())
        .await
        .unwrap();
    (writer, meter)
}

async fn rows(writer: &PostgresWriter) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT id, body FROM items ORDER BY id")
        .fetch_all(writer.pool())
        .await
        .unwrap()
}

/// Asserts that applying `batch` is refused as a replay the writer cannot prove.
async fn assert_refused(writer: &PostgresWriter, batch: &Batch) -> WriterError {
    let result = writer.apply(&[batch]).await;
    let error = match result {
        Ok(stats) => panic!(
            "batch {}..={} at or below the checkpoint was not refused: {stats:?}",
            batch.first, batch.last
        ),
        Err(error) => error,
    };
    assert!(
        matches!(error, WriterError::ReplayRefused(_)),
        "not a refusal: {error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Permanent);
    error
}

/// Sends `batches` into a fresh channel, closes it, and runs the sink loop to its end.
async fn run(writer: &PostgresWriter, batches: Vec<Batch>) -> Result<(), WriterError> {
    let (sender, receiver) = batch_channel(batches.len() + 1);
    for batch in batches {
        sender.send(batch).await.unwrap();
    }
    drop(sender);
    writer.run(receiver, CancellationToken::new()).await
}

#[tokio::test]
async fn x_4_a_batch_below_the_checkpoint_that_was_never_applied_is_refused_not_skipped() {
    let server = PgServer::new().await.unwrap();
    let (writer, meter) = writer_on(&server, "x4-never").await;
    writer
        .apply(&[&batch("src", puts(10..=10, "a"))])
        .await
        .unwrap();

    // An earlier batch arriving after a later one (reordering, a second producer): 5 was never
    // applied. Refused, nothing written, the checkpoint where it was.
    let error = assert_refused(&writer, &batch("src", puts(5..=5, "a"))).await;
    eprintln!("refused: {error}");
    assert_eq!(rows(&writer).await, [(10, "a".to_owned())]);
    assert_eq!(writer.checkpoint("src").await.unwrap(), Some(seq(10)));
    assert_eq!(meter.counter(REFUSED), 1);

    // Straddling the checkpoint with a part never applied: refused whole, 11 not written either.
    let straddling = batch("src", vec![put(seq(7), 7, "a"), put(seq(11), 11, "a")]);
    assert_refused(&writer, &straddling).await;
    assert_eq!(rows(&writer).await, [(10, "a".to_owned())]);
    assert_eq!(meter.counter(REFUSED), 2);

    // Coalesced with new batches in one sink transaction: the new ones are applied, the unproven
    // one refused, and the call fails.
    let new = batch("src", puts(20..=20, "a"));
    let old = batch("src", puts(6..=6, "a"));
    let result = writer.apply(&[&new, &old]).await;
    assert!(
        matches!(result, Err(WriterError::ReplayRefused(_))),
        "{result:?}"
    );
    assert_eq!(rows(&writer).await, [(10, "a".into()), (20, "a".into())]);
    assert_eq!(meter.counter(REFUSED), 3);

    // Through the sink loop: settled failed, never delivered, and the loop ends with the error.
    let outcomes = Outcomes::default();
    let later = tracked(puts(30..=30, "a"), &outcomes);
    let earlier = tracked(puts(25..=25, "a"), &outcomes);
    let result = run(&writer, vec![later, earlier]).await;
    assert!(
        matches!(result, Err(WriterError::ReplayRefused(_))),
        "{result:?}"
    );
    let outcomes = outcomes.lock().unwrap().clone();
    assert!(
        outcomes.contains(&(seq(25), AckOutcome::Failed)),
        "{outcomes:?}"
    );
    assert!(
        !outcomes.contains(&(seq(25), AckOutcome::Delivered)),
        "{outcomes:?}"
    );
    assert!(!rows(&writer).await.iter().any(|(id, _)| *id == 25));
    assert_eq!(meter.counter(REFUSED), 4);
    let health = writer.health().await;
    assert!(!health.postgres_sync_healthy, "{health:?}");
}

#[tokio::test]
async fn x_4_a_replay_with_different_content_is_refused() {
    let server = PgServer::new().await.unwrap();
    let (writer, meter) = writer_on(&server, "x4-content").await;
    writer
        .apply(&[&batch("src", puts(1..=3, "a"))])
        .await
        .unwrap();
    writer
        .apply(&[&batch("src", puts(4..=6, "a"))])
        .await
        .unwrap();

    // Same positions, other content (two producers under one source id, say).
    assert_refused(&writer, &batch("src", puts(1..=3, "other"))).await;
    // The same changes but one left out: not what was applied either.
    let partial = batch("src", vec![put(seq(4), 4, "a"), put(seq(6), 6, "a")]);
    assert_refused(&writer, &partial).await;
    // Part of a recorded batch only (4..5 of 4..6).
    assert_refused(&writer, &batch("src", puts(4..=5, "a"))).await;
    assert_eq!(meter.counter(REFUSED), 3);
    let expected: Vec<(i64, String)> = (1..=6).map(|n| (n, "a".to_owned())).collect();
    assert_eq!(rows(&writer).await, expected);
    assert_eq!(writer.checkpoint("src").await.unwrap(), Some(seq(6)));
}

#[tokio::test]
async fn x_4_a_true_redelivery_is_still_delivered_once() {
    let server = PgServer::new().await.unwrap();
    let (writer, meter) = writer_on(&server, "x4-true").await;
    let (a, b) = (
        batch("src", puts(1..=2, "a")),
        batch("src", puts(3..=4, "a")),
    );
    writer.apply(&[&a]).await.unwrap();
    writer.apply(&[&b]).await.unwrap();

    // The same batches again, alone and coalesced into one sink transaction.
    let again = writer.apply(&[&a]).await.unwrap();
    assert_eq!((again.applied, again.already_applied), (0, 2));
    let again = writer.apply(&[&a, &b]).await.unwrap();
    assert_eq!((again.applied, again.already_applied), (0, 4));
    // Redelivered coalesced by the source: one batch spanning both recorded ones.
    let coalesced = batch("src", puts(1..=4, "a"));
    let again = writer.apply(&[&coalesced]).await.unwrap();
    assert_eq!((again.applied, again.already_applied), (0, 4));
    // Straddling the checkpoint: b again plus 5..6, new. Then 3..6 again, and 5..6 alone.
    let straddling = batch("src", puts(3..=6, "a"));
    let stats = writer.apply(&[&straddling]).await.unwrap();
    assert_eq!((stats.applied, stats.already_applied), (2, 2));
    let again = writer.apply(&[&straddling]).await.unwrap();
    assert_eq!((again.applied, again.already_applied), (0, 4));
    let tail = batch("src", puts(5..=6, "a"));
    assert_eq!(writer.apply(&[&tail]).await.unwrap().already_applied, 2);

    // After a restart of the writer: a new writer on the same database proves the same.
    writer.pool().close().await;
    let (writer, meter_after) = writer_on(&server, "x4-true").await;
    let again = writer.apply(&[&a, &b, &tail]).await.unwrap();
    assert_eq!((again.applied, again.already_applied), (0, 6));

    // Through the sink loop, with snapshot positions too: every redelivered batch is delivered.
    let point = Lsn(0x1_0000);
    let snap = |row: u64| put(Position::snapshot(point, row), 100 + row as i64, "s");
    let outcomes = Outcomes::default();
    let snapshot_batches = || {
        vec![
            tracked(vec![snap(1), snap(2)], &outcomes),
            tracked(vec![snap(3), snap(4)], &outcomes),
        ]
    };
    let other = |changes| batch("snapshotted", changes);
    // The snapshot belongs to another source, with a checkpoint of its own.
    let (s1, s2) = (other(vec![snap(1), snap(2)]), other(vec![snap(3), snap(4)]));
    writer.apply(&[&s1, &s2]).await.unwrap();
    let redelivered: Vec<Batch> = snapshot_batches()
        .into_iter()
        .map(|b| Batch {
            source: s1.source.clone(),
            ..b
        })
        .collect();
    let mut loop_batches = redelivered;
    loop_batches.push(tracked(puts(1..=4, "a"), &outcomes));
    run(&writer, loop_batches).await.unwrap();
    let outcomes = outcomes.lock().unwrap().clone();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|(_, o)| o.is_delivered()),
        "{outcomes:?}"
    );

    let expected: Vec<(i64, String)> = (1..=6)
        .map(|n| (n, "a".to_owned()))
        .chain((101..=104).map(|n| (n, "s".to_owned())))
        .collect();
    assert_eq!(rows(&writer).await, expected);
    assert_eq!(meter.counter(REFUSED) + meter_after.counter(REFUSED), 0);
}

#[tokio::test]
async fn x_4_a_replay_older_than_the_records_kept_is_refused_loudly() {
    let server = PgServer::new().await.unwrap();
    let (meter, metrics) = Meter::new("x4-retention");
    let mut config = config(&server, "x4-retention").table(items());
    config.applied_records.keep = 3;
    let writer = PostgresWriter::builder(config)
        .metrics(metrics)
        .connect()
        .await
        .unwrap();
    exec(
        &writer,
        "CREATE TABLE items (id bigint PRIMARY KEY, body text)",
    )
    .await;
    // 100 sink transactions: the records are purged once per 100, keeping the newest 3.
    for n in 1..=100 {
        writer
            .apply(&[&batch("src", puts(n..=n, "a"))])
            .await
            .unwrap();
    }
    assert_eq!(
        scalar(&writer, "SELECT count(*) FROM surefoot_writer.applied").await,
        3
    );
    let error = assert_refused(&writer, &batch("src", puts(50..=50, "a"))).await;
    assert!(
        matches!(&error, WriterError::ReplayRefused(refused)
            if matches!(refused.refusal, Refusal::NeverApplied { .. })),
        "{error:?}"
    );
    assert_eq!(meter.counter(REFUSED), 1);
    let kept = writer.apply(&[&batch("src", puts(98..=100, "a"))]).await;
    assert_eq!(kept.unwrap().already_applied, 3);
}

#[tokio::test]
async fn x_4_positions_applied_before_records_were_kept_are_skipped_as_before() {
    let server = PgServer::new().await.unwrap();
    let (writer, meter) = writer_on(&server, "x4-upgrade").await;
    writer
        .apply(&[&batch("src", puts(1..=5, "a"))])
        .await
        .unwrap();
    // A database upgraded from schema version 2: what migration 0003 does to a checkpoint
    // that existed before records were kept.
    exec(
        &writer,
        "DELETE FROM surefoot_writer.applied; \
         UPDATE surefoot_writer.checkpoint \
         SET unrecorded_major = major, unrecorded_minor = minor",
    )
    .await;
    let again = writer
        .apply(&[&batch("src", puts(3..=3, "a"))])
        .await
        .unwrap();
    assert_eq!((again.applied, again.already_applied), (0, 1));
    // Above the horizon, records are kept and required as everywhere else.
    writer
        .apply(&[&batch("src", puts(6..=7, "a"))])
        .await
        .unwrap();
    let mixed = batch(
        "src",
        vec![
            put(seq(5), 5, "a"),
            put(seq(6), 6, "a"),
            put(seq(7), 7, "a"),
            put(seq(8), 8, "a"),
        ],
    );
    let stats = writer.apply(&[&mixed]).await.unwrap();
    assert_eq!((stats.applied, stats.already_applied), (1, 3));
    exec(&writer, "DELETE FROM surefoot_writer.applied").await;
    assert_refused(&writer, &batch("src", puts(8..=8, "a"))).await;
    assert_eq!(meter.counter(REFUSED), 1);
    assert_eq!(rows(&writer).await.len(), 8);
}

#[tokio::test]
async fn x_4_redeliveries_between_pipelined_transactions_are_delivered_once() {
    let server = PgServer::new().await.unwrap();
    let (meter, metrics) = Meter::new("x4-pipelined");
    let mut config = config(&server, "x4-pipelined").table(items());
    // Small sink transactions, so that many begin ahead of the one before them.
    config.batch.max_rows = 20;
    let writer = PostgresWriter::builder(config)
        .metrics(metrics)
        .connect()
        .await
        .unwrap();
    exec(
        &writer,
        "CREATE TABLE items (id bigint PRIMARY KEY, body text)",
    )
    .await;
    let outcomes = Outcomes::default();
    let five = |t: u64| tracked(puts(t * 5 + 1..=t * 5 + 5, "a"), &outcomes);
    // 0..100 new, 40..60 again (a source redelivering after a failure), 100..150 new, then
    // 90..110 again, coalesced by twos.
    let mut stream: Vec<Batch> = (0..100).map(five).collect();
    stream.extend((40..60).map(five));
    stream.extend((100..150).map(five));
    stream.extend((45..55).map(|t| tracked(puts(t * 10 + 1..=t * 10 + 10, "a"), &outcomes)));
    let sent = stream.len();
    run(&writer, stream).await.unwrap();
    let outcomes = outcomes.lock().unwrap().clone();
    assert_eq!(outcomes.len(), sent);
    assert!(
        outcomes.iter().all(|(_, o)| o.is_delivered()),
        "{outcomes:?}"
    );
    assert_eq!(meter.counter(REFUSED), 0);
    assert_eq!(scalar(&writer, "SELECT count(*) FROM items").await, 750);
    assert_eq!(writer.checkpoint("src").await.unwrap(), Some(seq(750)));
}
