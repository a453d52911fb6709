//! The JSONL file provider against real files: good, bad, empty, large, cancelled.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use surefoot_bootstrap::{BootstrapConfig, BootstrapError, JsonlProvider, Step};
use surefoot_core_lifecycle::{CancellationToken, Classify, ErrorClass};
use surefoot_core_model::{
    Batch, BatchReceiver, BootstrapProvider, Change, Position, Row, SnapshotRequest, SourceId,
    TableRef, Value, batch_channel,
};

fn change(sequence: u64, table: &str) -> Change {
    Change::insert(
        Position::Sequence(sequence),
        TableRef::new("public", table),
        Row::new()
            .with("id", Value::Int64(i64::try_from(sequence).unwrap()))
            .with("note", Value::Text(format!("row {sequence}"))),
    )
}

fn jsonl(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|change| serde_json::to_string(change).unwrap() + "\n")
        .collect()
}

fn file_with(contents: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".jsonl")
        .tempfile()
        .unwrap();
    file.write_all(contents.as_bytes()).unwrap();
    file.flush().unwrap();
    file
}

fn provider(path: &Path, config: BootstrapConfig) -> JsonlProvider {
    JsonlProvider::new(SourceId::new("orders"), path, config).unwrap()
}

fn request(tables: Vec<TableRef>) -> SnapshotRequest {
    SnapshotRequest {
        consumer: "test".to_owned(),
        tables,
    }
}

/// Runs the snapshot while draining its batches; returns the result and every batch received.
async fn snapshot(
    provider: &JsonlProvider,
    tables: Vec<TableRef>,
) -> (
    Result<surefoot_core_model::SnapshotComplete, BootstrapError>,
    Vec<Batch>,
) {
    let (output, batches) = batch_channel(4);
    let read = provider.read(request(tables), output, CancellationToken::new());
    tokio::join!(read, drain(batches))
}

async fn drain(mut batches: BatchReceiver) -> Vec<Batch> {
    let mut received = Vec::new();
    while let Some(batch) = batches.recv().await {
        received.push(batch);
    }
    received
}

fn changes_of(batches: Vec<Batch>) -> Vec<Change> {
    batches
        .into_iter()
        .flat_map(|batch| {
            let changes = batch.changes.to_vec();
            batch.ack.delivered();
            changes
        })
        .collect()
}

#[tokio::test]
async fn a_good_file_is_delivered_in_order_and_complete() {
    let written: Vec<Change> = (1..=5).map(|n| change(n, "orders")).collect();
    // Blank lines are skipped; the last line has no newline.
    let contents = jsonl(&written[..3]) + "\n  \n" + &jsonl(&written[3..]);
    let file = file_with(contents.trim_end());
    let (result, batches) =
        snapshot(&provider(file.path(), BootstrapConfig::default()), vec![]).await;
    let complete = result.unwrap();
    assert_eq!(complete.rows, 5);
    assert_eq!(complete.consistent_point, Position::Sequence(5));
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].first, Position::Sequence(1));
    assert_eq!(batches[0].last, Position::Sequence(5));
    assert_eq!(batches[0].source, SourceId::new("orders"));
    assert_eq!(changes_of(batches), written);
}

#[tokio::test]
async fn the_trait_gives_the_same_snapshot() {
    let written: Vec<Change> = (1..=3).map(|n| change(n, "orders")).collect();
    let file = file_with(&jsonl(&written));
    let provider = provider(file.path(), BootstrapConfig::default());
    assert_eq!(provider.path(), file.path());
    let dynamic: &dyn BootstrapProvider = &provider;
    let (output, batches) = batch_channel(4);
    let (result, batches) = tokio::join!(
        dynamic.snapshot(request(vec![]), output, CancellationToken::new()),
        drain(batches)
    );
    assert_eq!(result.unwrap().rows, 3);
    assert_eq!(changes_of(batches), written);
}

#[tokio::test]
async fn a_bad_line_names_the_file_and_line_and_nothing_completes() {
    let good = jsonl(&[change(1, "orders"), change(2, "orders")]);
    let contents = good + "{\"position\": not json}\n" + &jsonl(&[change(3, "orders")]);
    let file = file_with(&contents);
    let (result, _batches) =
        snapshot(&provider(file.path(), BootstrapConfig::default()), vec![]).await;
    let error = result.unwrap_err();
    assert!(
        matches!(&error, BootstrapError::BadLine { path, line: 3, .. } if path == file.path()),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("{}:3: not a change", file.path().display())),
        "{message}"
    );
    assert_eq!(error.class(), ErrorClass::Permanent);

    // Through the trait, the error keeps its class and its cause.
    let dynamic: &dyn BootstrapProvider = &provider(file.path(), BootstrapConfig::default());
    let (output, batches) = batch_channel(4);
    let (result, _batches) = tokio::join!(
        dynamic.snapshot(request(vec![]), output, CancellationToken::new()),
        drain(batches)
    );
    let error = result.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Permanent);
    let cause = std::error::Error::source(&error).unwrap();
    assert!(cause.to_string().contains(":3: not a change"), "{cause}");
}

#[tokio::test]
async fn a_valid_json_line_that_is_not_a_change_is_a_bad_line() {
    let contents = jsonl(&[change(1, "orders")]) + "{\"hello\": 1}\n";
    let file = file_with(&contents);
    let (result, _) = snapshot(&provider(file.path(), BootstrapConfig::default()), vec![]).await;
    assert!(
        matches!(result, Err(BootstrapError::BadLine { line: 2, .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_empty_file_is_an_empty_complete_snapshot() {
    let file = file_with("");
    let (result, batches) =
        snapshot(&provider(file.path(), BootstrapConfig::default()), vec![]).await;
    let complete = result.unwrap();
    assert_eq!(complete.rows, 0);
    assert_eq!(
        complete.consistent_point,
        surefoot_bootstrap::jsonl::EMPTY_FILE_POINT
    );
    assert!(batches.is_empty());
}

#[tokio::test]
async fn a_missing_file_is_a_permanent_open_error() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("absent.jsonl");
    let (result, _) = snapshot(&provider(&path, BootstrapConfig::default()), vec![]).await;
    let error = result.unwrap_err();
    assert!(
        matches!(&error, BootstrapError::Open { path: p, .. } if *p == path),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Permanent);
}

#[tokio::test]
async fn a_large_file_arrives_in_bounded_batches_read_in_small_chunks() {
    let written: Vec<Change> = (1..=5_000).map(|n| change(n, "orders")).collect();
    let file = file_with(&jsonl(&written));
    let config = BootstrapConfig {
        batch_changes: 256,
        // Smaller than a line: every line spans several reads.
        chunk_bytes: 61,
        max_line_bytes: 4096,
        ..BootstrapConfig::default()
    };
    let (result, batches) = snapshot(&provider(file.path(), config), vec![]).await;
    let complete = result.unwrap();
    assert_eq!(complete.rows, 5_000);
    assert_eq!(complete.consistent_point, Position::Sequence(5_000));
    assert_eq!(batches.len(), 20); // 19 full batches and one of 136
    assert!(batches.iter().all(|batch| batch.changes.len() <= 256));
    for pair in batches.windows(2) {
        assert!(pair[0].last < pair[1].first);
    }
    assert_eq!(changes_of(batches), written);
}

#[tokio::test]
async fn only_the_requested_tables_are_sent() {
    let written = vec![
        change(1, "orders"),
        change(2, "customers"),
        change(3, "orders"),
    ];
    let file = file_with(&jsonl(&written));
    let (result, batches) = snapshot(
        &provider(file.path(), BootstrapConfig::default()),
        vec![TableRef::new("public", "orders")],
    )
    .await;
    let complete = result.unwrap();
    assert_eq!(complete.rows, 2);
    assert_eq!(complete.consistent_point, Position::Sequence(3));
    assert_eq!(
        changes_of(batches),
        vec![written[0].clone(), written[2].clone()]
    );
}

#[tokio::test]
async fn a_line_longer_than_the_limit_fails_with_its_number() {
    let short = jsonl(&[change(1, "orders")]);
    let long = jsonl(&[Change::insert(
        Position::Sequence(2),
        TableRef::new("public", "orders"),
        Row::new().with("note", Value::Text("x".repeat(5_000))),
    )]);
    let config = BootstrapConfig {
        chunk_bytes: 100,
        max_line_bytes: 1_000,
        ..BootstrapConfig::default()
    };
    let file = file_with(&(short.clone() + &long));
    let (result, _) = snapshot(&provider(file.path(), config.clone()), vec![]).await;
    assert!(
        matches!(
            result,
            Err(BootstrapError::LineTooLong {
                line: 2,
                limit: 1_000,
                ..
            })
        ),
        "{result:?}"
    );

    // The same when the whole line arrives in one read.
    let config = BootstrapConfig {
        chunk_bytes: 64 * 1024,
        ..config
    };
    let (result, _) = snapshot(&provider(file.path(), config), vec![]).await;
    assert!(
        matches!(result, Err(BootstrapError::LineTooLong { line: 2, .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn positions_going_back_fail_the_snapshot() {
    let file = file_with(&jsonl(&[change(2, "orders"), change(1, "orders")]));
    let (result, _) = snapshot(&provider(file.path(), BootstrapConfig::default()), vec![]).await;
    let error = result.unwrap_err();
    assert!(
        matches!(
            error,
            BootstrapError::OutOfOrder {
                line: 2,
                previous: Position::Sequence(2),
                position: Position::Sequence(1),
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn cancellation_stops_a_snapshot_waiting_on_its_consumer() {
    let written: Vec<Change> = (1..=100).map(|n| change(n, "orders")).collect();
    let file = file_with(&jsonl(&written));
    let config = BootstrapConfig {
        batch_changes: 10,
        ..BootstrapConfig::default()
    };
    let provider = provider(file.path(), config);
    // Room for one batch and nobody receiving: the provider blocks on the second.
    let (output, mut batches) = batch_channel(1);
    let cancel = CancellationToken::new();
    let canceller = async {
        while output.capacity() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cancel.cancel();
    };
    let (result, ()) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(
            provider.read(request(vec![]), output.clone(), cancel.clone()),
            canceller
        )
    })
    .await
    .expect("cancellation was not honoured");
    let error = result.unwrap_err();
    assert!(matches!(error, BootstrapError::Cancelled), "{error:?}");
    assert_eq!(error.class(), ErrorClass::Cancelled);
    drop(output);
    let received = drain_now(&mut batches);
    assert_eq!(received, 1, "only the batch that fitted was sent");
}

fn drain_now(batches: &mut BatchReceiver) -> usize {
    let mut count = 0;
    while let Some(batch) = batches.try_recv() {
        batch.ack.delivered();
        count += 1;
    }
    count
}

#[tokio::test]
async fn a_cancelled_token_sends_nothing() {
    let file = file_with(&jsonl(&[change(1, "orders")]));
    let cancel = CancellationToken::new();
    cancel.cancel();
    let (output, mut batches) = batch_channel(4);
    let result = provider(file.path(), BootstrapConfig::default())
        .read(request(vec![]), output, cancel)
        .await;
    assert!(
        matches!(result, Err(BootstrapError::Cancelled)),
        "{result:?}"
    );
    assert_eq!(drain_now(&mut batches), 0);
}

#[tokio::test]
async fn a_gone_consumer_fails_the_snapshot() {
    let file = file_with(&jsonl(&[change(1, "orders")]));
    let (output, batches) = batch_channel(4);
    drop(batches);
    let result = provider(file.path(), BootstrapConfig::default())
        .read(request(vec![]), output, CancellationToken::new())
        .await;
    let error = result.unwrap_err();
    assert!(matches!(error, BootstrapError::OutputClosed), "{error:?}");
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_never_receives_hits_the_snapshot_timeout() {
    let written: Vec<Change> = (1..=3).map(|n| change(n, "orders")).collect();
    let file = file_with(&jsonl(&written));
    let config = BootstrapConfig {
        batch_changes: 1,
        snapshot_timeout: Duration::from_secs(60),
        ..BootstrapConfig::default()
    };
    let (output, _batches) = batch_channel(1);
    let result = provider(file.path(), config)
        .read(request(vec![]), output, CancellationToken::new())
        .await;
    let error = result.unwrap_err();
    assert!(
        matches!(
            error,
            BootstrapError::Timeout {
                step: Step::Snapshot,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Timeout);
}

#[test]
fn an_invalid_configuration_is_refused_with_every_problem() {
    let config = BootstrapConfig {
        batch_changes: 0,
        chunk_bytes: 0,
        ..BootstrapConfig::default()
    };
    let error = JsonlProvider::new(SourceId::new("orders"), "/nowhere.jsonl", config).unwrap_err();
    assert_eq!(error.class(), ErrorClass::Configuration);
    let message = error.to_string();
    assert!(
        message.contains("batch_changes") && message.contains("chunk_bytes"),
        "{message}"
    );
}

/// a consumer idempotent by position skips a change at or below the last one it applied,
/// so a line whose position equals the previous line's would be lost: it is refused, with its
/// line number, whichever tables are requested.
#[tokio::test]
async fn x_1_jsonl_a_line_whose_position_is_not_above_the_previous_one_is_refused_with_its_line_number()
 {
    let contents = jsonl(&[change(1, "orders"), change(2, "orders")])
        + "\n"
        + &jsonl(&[change(2, "orders"), change(3, "orders")]);
    let file = file_with(&contents);
    let (result, _) = snapshot(&provider(file.path(), BootstrapConfig::default()), vec![]).await;
    let error = result.unwrap_err();
    assert!(
        matches!(
            error,
            BootstrapError::OutOfOrder {
                line: 4,
                previous: Position::Sequence(2),
                position: Position::Sequence(2),
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("{}:4: ", file.path().display())),
        "{message}"
    );

    // The same when the earlier line is of a table not requested.
    let file = file_with(&jsonl(&[change(1, "customers"), change(1, "orders")]));
    let (result, batches) = snapshot(
        &provider(file.path(), BootstrapConfig::default()),
        vec![TableRef::new("public", "orders")],
    )
    .await;
    assert!(
        matches!(result, Err(BootstrapError::OutOfOrder { line: 2, .. })),
        "{result:?}"
    );
    assert!(changes_of(batches).is_empty());
}

/// a file written with snapshot positions (as the PostgreSQL provider numbers its rows)
/// keeps them, and its consistent point is its last row's position.
#[tokio::test]
async fn x_1_jsonl_snapshot_positions_are_kept_and_bound_the_snapshot() {
    let point = surefoot_core_model::Lsn(0x16_B374_D848);
    let written: Vec<Change> = (0..10)
        .map(|row| {
            let mut change = change(row + 1, "orders");
            change.position = Position::snapshot(point, row);
            change
        })
        .collect();
    let file = file_with(&jsonl(&written));
    let config = BootstrapConfig {
        batch_changes: 3,
        ..BootstrapConfig::default()
    };
    let (result, batches) = snapshot(&provider(file.path(), config), vec![]).await;
    let complete = result.unwrap();
    assert_eq!(complete.rows, 10);
    assert_eq!(complete.consistent_point, Position::snapshot(point, 9));
    assert_eq!(batches.len(), 4);
    assert_eq!(batches[1].first, Position::snapshot(point, 3));
    assert_eq!(batches[1].last, Position::snapshot(point, 5));
    assert_eq!(changes_of(batches), written);
}
