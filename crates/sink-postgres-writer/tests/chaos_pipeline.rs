//! The pipelined sink loop under killed connections: the writer's server sessions are
//! terminated ten times while a stream of inserts and updates flows, catching transactions
//! under way, begun ahead and waiting on the checkpoint lock. Afterwards the target equals the
//! stream's final state, every batch was acknowledged delivered exactly once, and the
//! checkpoint stands at the last position.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{AckOutcome, AckToken, Batch, Change, Value, batch_channel};
use surefoot_sink_postgres_writer::{ApplyMode, PostgresWriter, TableConfig};
use surefoot_test_support::PgServer;

const APP: &str = "surefoot-chaos-pipeline";
const TRANSACTIONS: u64 = 400;
const PER_TRANSACTION: u64 = 10;
const KILLS: usize = 10;

type Outcomes = Arc<Mutex<Vec<(u64, AckOutcome)>>>;

/// Source transaction `t`: new ids, and updates of ids inserted earlier. Applies them to
/// `state` as the target should end up.
fn transaction(t: u64, state: &mut BTreeMap<i64, String>, outcomes: &Outcomes) -> Batch {
    let changes: Vec<Change> = (0..PER_TRANSACTION)
        .map(|c| {
            let n = t * PER_TRANSACTION + c + 1;
            let update = c % 3 == 2 && !state.is_empty();
            let id = if update {
                let index = (n as usize * 7919) % state.len();
                *state.keys().nth(index).unwrap()
            } else {
                n as i64
            };
            let body = format!("{} at {n}", if update { "updated" } else { "inserted" });
            state.insert(id, body.clone());
            let row = row(id, Value::Text(body));
            if update {
                Change::update(seq(n), table("items"), None, None, row)
            } else {
                Change::insert(seq(n), table("items"), row)
            }
        })
        .collect();
    let outcomes = Arc::clone(outcomes);
    let ack = AckToken::new(move |outcome| outcomes.lock().unwrap().push((t, outcome)));
    batch_with("src", changes, ack)
}

#[tokio::test]
async fn chaos_pipelined_writer_survives_killed_connections() {
    let server = PgServer::new().await.unwrap();
    let mut config = config(&server, "chaos").table(TableConfig::new(
        table("items"),
        ApplyMode::Mirror {
            key: vec!["id".into()],
        },
    ));
    config.batch.max_rows = 100;
    config.application_name = APP.into();
    let writer = PostgresWriter::builder(config).connect().await.unwrap();
    exec(
        &writer,
        "CREATE TABLE items (id bigint PRIMARY KEY, body text)",
    )
    .await;
    let observer = sqlx::PgPool::connect(&server.url("postgres"))
        .await
        .unwrap();
    let outcomes = Outcomes::default();
    let mut expected = BTreeMap::new();
    let batches: Vec<Batch> = (0..TRANSACTIONS)
        .map(|t| transaction(t, &mut expected, &outcomes))
        .collect();
    let last = TRANSACTIONS * PER_TRANSACTION;
    let (sender, receiver) = batch_channel(16);
    let produce = async move {
        for batch in batches {
            sender.send(batch).await.unwrap();
        }
    };
    let kill = async {
        let mut killed = 0;
        let (mut at, deadline) = (0, Instant::now() + Duration::from_secs(120));
        while killed < KILLS {
            let major: Option<i64> = sqlx::query_scalar(
                "SELECT major FROM surefoot_writer.checkpoint WHERE sink = 'chaos'",
            )
            .fetch_optional(&observer)
            .await
            .unwrap()
            .flatten();
            let done = major.unwrap_or(0) as u64;
            assert!(done < last, "the stream ended after {killed} kills");
            assert!(Instant::now() < deadline, "no progress: checkpoint {done}");
            // Spread the kills over the stream: one every 100 positions or so, leaving room
            // for all of them even when this loop is slow to get its turn.
            if done >= at {
                if server.terminate_backends(APP).await.unwrap() > 0 {
                    killed += 1;
                    at = done + 100;
                }
            } else {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        killed
    };
    let run = writer.run(receiver, CancellationToken::new());
    let ((), killed, result) = tokio::join!(produce, kill, run);
    result.unwrap();
    assert_eq!(killed, KILLS);
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, body FROM items ORDER BY id")
        .fetch_all(&observer)
        .await
        .unwrap();
    let expected: Vec<(i64, String)> = expected.into_iter().collect();
    assert_eq!(rows.len(), expected.len());
    assert!(
        rows == expected,
        "the target differs from the stream's final state"
    );
    assert_eq!(writer.checkpoint("src").await.unwrap(), Some(seq(last)));
    let outcomes = outcomes.lock().unwrap().clone();
    assert_eq!(
        outcomes.len() as u64,
        TRANSACTIONS,
        "each batch settled once"
    );
    assert!(
        outcomes.iter().all(|(_, outcome)| outcome.is_delivered()),
        "{outcomes:?}"
    );
}
