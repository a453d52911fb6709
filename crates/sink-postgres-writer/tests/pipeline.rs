//! The sink loop's pipelining: a transaction begun ahead writes only after its predecessor
//! committed, and insert-first `COPY`s fall back to the probe when a key exists.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::sync::{Arc, Mutex};

use common::gate::gate;
use common::*;
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{AckOutcome, AckToken, Batch, Change, Value, batch_channel};
use surefoot_sink_postgres_writer::{ApplyMode, FailurePolicy, PostgresWriter, TableConfig};
use surefoot_test_support::PgServer;

type Outcomes = Arc<Mutex<Vec<(u64, AckOutcome)>>>;

fn items() -> TableConfig {
    TableConfig::new(
        table("items"),
        ApplyMode::Mirror {
            key: vec!["id".into()],
        },
    )
}

fn text(value: &str) -> Value {
    Value::Text(value.into())
}

/// A batch of `changes` whose token records its outcome under its last position.
fn tracked(changes: Vec<Change>, outcomes: &Outcomes) -> Batch {
    let last = match changes.last().unwrap().position {
        surefoot_core_model::Position::Sequence(n) => n,
        other => panic!("unexpected position {other}"),
    };
    let outcomes = Arc::clone(outcomes);
    let ack = AckToken::new(move |outcome| outcomes.lock().unwrap().push((last, outcome)));
    batch_with("src", changes, ack)
}

fn insert(n: u64, id: i64, body: Value) -> Change {
    Change::insert(seq(n), table("items"), row(id, body))
}

fn update(n: u64, id: i64, body: &str) -> Change {
    Change::update(seq(n), table("items"), None, None, row(id, text(body)))
}

/// Sends `batches` into a fresh channel, closes it, and runs the sink loop to its end.
async fn run(writer: &PostgresWriter, batches: Vec<Batch>) -> Result<(), String> {
    let (sender, receiver) = batch_channel(batches.len() + 1);
    for batch in batches {
        sender.send(batch).await.unwrap();
    }
    drop(sender);
    writer
        .run(receiver, CancellationToken::new())
        .await
        .map_err(|e| e.to_string())
}

async fn bodies(writer: &PostgresWriter) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT id, body FROM items ORDER BY id")
        .fetch_all(writer.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_transaction_begun_ahead_of_a_failed_one_writes_nothing() {
    let server = PgServer::new().await.unwrap();
    let mut config = config(&server, "pipe").table(items());
    config.batch.max_rows = 4;
    config.on_failure = FailurePolicy::Fail;
    let writer = PostgresWriter::builder(config).connect().await.unwrap();
    exec(
        &writer,
        "CREATE TABLE items (id bigint PRIMARY KEY, body text NOT NULL)",
    )
    .await;
    let outcomes = Outcomes::default();
    // Transactions of two batches of two changes: A (1..4) commits; B breaks NOT NULL at
    // position 5 and fails; C and D follow it, C begun ahead while B runs.
    let mut batches = Vec::new();
    for t in 0..8u64 {
        let (n1, n2) = (2 * t + 1, 2 * t + 2);
        let first = if n1 == 5 {
            Value::Null
        } else {
            text(&format!("v{n1}"))
        };
        batches.push(tracked(
            vec![
                insert(n1, n1 as i64, first),
                insert(n2, n2 as i64, text(&format!("v{n2}"))),
            ],
            &outcomes,
        ));
    }
    let error = run(&writer, batches).await.unwrap_err();
    assert!(
        error.contains("upsert") || error.contains("copy"),
        "{error}"
    );
    let rows = bodies(&writer).await;
    let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        [1, 2, 3, 4],
        "only transaction A may have been applied"
    );
    let checkpoint = writer.checkpoint("src").await.unwrap();
    assert_eq!(checkpoint, Some(seq(4)));
    let outcomes = outcomes.lock().unwrap().clone();
    for (last, outcome) in &outcomes {
        assert_eq!(
            outcome.is_delivered(),
            *last <= 4,
            "batch ending at {last}: {outcome:?}"
        );
    }
    assert_eq!(outcomes.len(), 8, "every batch settled: {outcomes:?}");
}

#[tokio::test]
async fn pipelined_transactions_keep_per_key_order_through_insert_first_conflicts() {
    let server = PgServer::new().await.unwrap();
    let mut config = config(&server, "order").table(items());
    config.batch.max_rows = 4;
    let writer = PostgresWriter::builder(config).connect().await.unwrap();
    exec(
        &writer,
        "CREATE TABLE items (id bigint PRIMARY KEY, body text)",
    )
    .await;
    let outcomes = Outcomes::default();
    let mut n = 0u64;
    let mut next = || {
        n += 1;
        n
    };
    let mut batches = Vec::new();
    // Inserts only: the probe finds no key, so the next transactions COPY first.
    for id in (1..=16).step_by(2) {
        let changes = vec![
            insert(next(), id, text("new")),
            insert(next(), id + 1, text("new")),
        ];
        batches.push(tracked(changes, &outcomes));
    }
    // Rounds of updates of the same keys, mixed with inserts: each insert-first COPY meets an
    // existing key and falls back to probing; the last update of a key must win.
    for round in 1..=5 {
        for id in [3i64, 7, 12] {
            let changes = vec![
                update(next(), id, &format!("r{round}")),
                insert(next(), 100 * round + id, text("late")),
            ];
            batches.push(tracked(changes, &outcomes));
        }
    }
    let last = n;
    run(&writer, batches).await.unwrap();
    let rows = bodies(&writer).await;
    assert_eq!(rows.len(), 16 + 15);
    for (id, body) in &rows {
        let expected = match id {
            3 | 7 | 12 => "r5",
            1..=16 => "new",
            _ => "late",
        };
        assert_eq!(body, expected, "row {id}");
    }
    assert_eq!(writer.checkpoint("src").await.unwrap(), Some(seq(last)));
    let outcomes = outcomes.lock().unwrap();
    assert_eq!(outcomes.len(), 23);
    assert!(outcomes.iter().all(|(_, outcome)| outcome.is_delivered()));
}

#[tokio::test]
async fn cancelling_finishes_the_transaction_under_way_and_the_one_begun_ahead() {
    let server = PgServer::new().await.unwrap();
    let (gate, inside, release) = gate();
    let mut config = config(&server, "cancel").table(TableConfig::new(
        table("gated"),
        ApplyMode::Custom {
            handler: "gate".into(),
        },
    ));
    config.batch.max_rows = 2;
    config.application_name = "surefoot-pipeline-cancel".into();
    let writer = PostgresWriter::builder(config)
        .handler("gate", gate)
        .connect()
        .await
        .unwrap();
    exec(&writer, "CREATE TABLE gate_log (position bigint NOT NULL)").await;
    let outcomes = Outcomes::default();
    let (sender, receiver) = batch_channel(8);
    let gated = |n: u64| {
        let change = Change::insert(seq(n), table("gated"), row(n as i64, Value::Null));
        tracked(vec![change], &outcomes)
    };
    // Transaction A: positions 1 and 2. The rest is sent once A holds the checkpoint lock, so
    // the transaction begun after it (B: 3 and 4) must wait for that lock.
    for n in 1..=2u64 {
        sender.send(gated(n)).await.unwrap();
    }
    let cancel = CancellationToken::new();
    let observer = sqlx::PgPool::connect(&server.url("postgres"))
        .await
        .unwrap();
    let run = writer.run(receiver, cancel.clone());
    let steer = async {
        inside.await.unwrap();
        for n in 3..=6u64 {
            sender.send(gated(n)).await.unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while lock_waits(&observer).await != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "no transaction began ahead"
            );
            tokio::task::yield_now().await;
        }
        cancel.cancel();
        release.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(run, steer);
    result.unwrap();
    // The batches never taken (5 and 6) go with the channel: settled, not delivered.
    drop(sender);
    let logged: Vec<i64> = sqlx::query_scalar("SELECT position FROM gate_log ORDER BY position")
        .fetch_all(&observer)
        .await
        .unwrap();
    assert_eq!(logged, [1, 2, 3, 4], "A and B finish, nothing after them");
    assert_eq!(writer.checkpoint("src").await.unwrap(), Some(seq(4)));
    let mut outcomes = outcomes.lock().unwrap().clone();
    outcomes.sort_by_key(|(n, _)| *n);
    let delivered: Vec<u64> = outcomes
        .iter()
        .filter(|(_, outcome)| outcome.is_delivered())
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(delivered, [1, 2, 3, 4]);
    assert_eq!(
        outcomes.len(),
        6,
        "the batches not applied are settled too: {outcomes:?}"
    );
}

/// Sessions of the cancel test's writer waiting on a lock.
async fn lock_waits(observer: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE application_name = 'surefoot-pipeline-cancel' AND wait_event_type = 'Lock'",
    )
    .fetch_one(observer)
    .await
    .unwrap()
}
