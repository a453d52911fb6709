//! FINDINGS W-3 / the graceful stop: finish the open transaction, flush the relay, close
//! the pool. The transaction is held open by a handler until the test lets it go, so it is
//! provably under way when the stop is requested; no sleep decides the order.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::gate::gate;
use common::*;
use sqlx::PgPool;
use surefoot_core_model::{AckOutcome, AckToken, Batch, Change, Row, Value};
use surefoot_sink_postgres_writer::{
    ApplyMode, OutboxConfig, PostgresWriter, TableConfig, WriterConfig,
};
use surefoot_test_support::{PgServer, RedisServer};

const STREAM: &str = "held-stream";
const APP: &str = "surefoot-stop-test";
const DEADLINE: Duration = Duration::from_secs(30);

type Outcomes = Arc<Mutex<Vec<(u64, AckOutcome)>>>;

fn held_table() -> TableConfig {
    TableConfig::new(
        table("held"),
        ApplyMode::Custom {
            handler: "hold".into(),
        },
    )
}

fn held_config(server: &PgServer, sink: &str) -> WriterConfig {
    let mut config = config(server, sink);
    config.application_name = APP.to_owned();
    config
}

/// A one-change batch at position `n` whose token records its outcome.
fn tracked(n: u64, outcomes: &Outcomes) -> Batch {
    let row = Row::new().with("id", Value::Int64(n as i64));
    let change = Change::insert(seq(n), table("held"), row);
    let outcomes = Arc::clone(outcomes);
    let ack = AckToken::new(move |outcome| outcomes.lock().unwrap().push((n, outcome)));
    batch_with("src", vec![change], ack)
}

/// A pool of the test's own, which outlives the writer's.
async fn observer(server: &PgServer) -> PgPool {
    PgPool::connect(&server.url("postgres")).await.unwrap()
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// The writer's sessions holding a transaction open between statements (a statement the relay
/// happens to be running is `active`, not counted).
async fn open_transactions(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
    )
    .bind(APP)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn checkpoint(pool: &PgPool, sink: &str) -> Option<i64> {
    sqlx::query_scalar(
        "SELECT major FROM surefoot_writer.checkpoint WHERE sink = $1 AND source = 'src'",
    )
    .bind(sink)
    .fetch_optional(pool)
    .await
    .unwrap()
    .flatten()
}

fn outcomes_of(outcomes: &Outcomes) -> Vec<(u64, AckOutcome)> {
    let mut outcomes = outcomes.lock().unwrap().clone();
    outcomes.sort();
    outcomes
}

#[tokio::test]
async fn w_3_stop_finishes_the_transaction_under_way_flushes_the_relay_and_closes_the_pool() {
    let server = PgServer::new().await.unwrap();
    let redis = RedisServer::new().await.unwrap();
    let mut table = held_table();
    table.publish = Some(STREAM.into());
    let mut config = held_config(&server, "stop").table(table);
    let mut outbox = OutboxConfig::new(redis.url());
    outbox.redis_timeout = Duration::from_secs(2);
    config.outbox = Some(outbox);
    let (hold, inside, release) = gate();
    let writer = PostgresWriter::builder(config)
        .handler("hold", hold)
        .connect()
        .await
        .unwrap();
    exec(
        &writer,
        "CREATE TABLE gate_log (position bigint PRIMARY KEY)",
    )
    .await;
    let db = observer(&server).await;
    let (sender, receiver) = surefoot_core_model::batch_channel(8);
    let running = writer.start(receiver).unwrap();
    assert_eq!(running.live_tasks(), ["outbox-relay", "sink"]);
    let outcomes = Outcomes::default();
    sender.send(tracked(1, &outcomes)).await.unwrap();
    inside.await.unwrap();
    // Batch 1's sink transaction is open, inside the handler; batches 2 to 4 queue behind it.
    for n in 2..=4 {
        sender.send(tracked(n, &outcomes)).await.unwrap();
    }
    assert_eq!(open_transactions(&db).await, 1, "no transaction is open");
    assert_eq!(checkpoint(&db, "stop").await, None);
    assert_eq!(count(&db, "SELECT count(*) FROM gate_log").await, 0);
    assert!(outcomes_of(&outcomes).is_empty());

    let started = Instant::now();
    let mut stop = pin!(running.stop(DEADLINE));
    // The first poll requests the stop (the sink loop is cancelled before stop's first await);
    // it cannot finish while the transaction is held.
    assert!(futures::poll!(&mut stop).is_pending());
    release.send(()).unwrap();
    let report = stop.await;
    let took = started.elapsed();
    assert!(report.is_clean(), "{report:?}");
    assert!(took < DEADLINE, "stop took {took:?}");

    // The transaction under way committed: its handler row, its event and its checkpoint.
    assert_eq!(
        count(&db, "SELECT count(*) FROM gate_log WHERE position = 1").await,
        1
    );
    assert_eq!(count(&db, "SELECT count(*) FROM gate_log").await, 1);
    let events: Vec<i64> = sqlx::query_scalar(
        "SELECT major FROM surefoot_writer.event WHERE sink = 'stop' ORDER BY major",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(events, [1], "only the transaction under way was applied");
    assert_eq!(checkpoint(&db, "stop").await, Some(1));
    // Its batch alone is acknowledged; those queued behind it are settled otherwise, so the
    // source delivers them again.
    let settled = outcomes_of(&outcomes);
    assert_eq!(settled.len(), 4, "{settled:?}");
    assert_eq!(settled[0], (1, AckOutcome::Delivered));
    for (n, outcome) in &settled[1..] {
        assert!(!outcome.is_delivered(), "batch {n}: {outcome:?}");
    }
    // The relay published what the transaction committed before it ended.
    let (id, sent): (i64, bool) = sqlx::query_as(
        "SELECT id, sent_at IS NOT NULL FROM surefoot_writer.outbox WHERE sink = 'stop'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(sent, "the committed message was left unsent");
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(STREAM)
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    let ids: Vec<String> = entries.ids.into_iter().map(|entry| entry.id).collect();
    assert_eq!(ids, [format!("{id}-0")]);
    // No task is left: the sink loop dropped its end of the channel; the pool is closed.
    let refused = sender.send(tracked(5, &outcomes)).await;
    assert!(refused.is_err(), "the sink loop still receives");
    assert!(writer.pool().is_closed());
}

#[tokio::test]
async fn w_3_stop_past_its_deadline_aborts_the_sink_and_nothing_of_its_transaction_commits() {
    let server = PgServer::new().await.unwrap();
    let config = held_config(&server, "late").table(held_table());
    let (hold, inside, release) = gate();
    let writer = PostgresWriter::builder(config)
        .handler("hold", hold)
        .connect()
        .await
        .unwrap();
    exec(
        &writer,
        "CREATE TABLE gate_log (position bigint PRIMARY KEY)",
    )
    .await;
    let db = observer(&server).await;
    let (sender, receiver) = surefoot_core_model::batch_channel(8);
    let running = writer.start(receiver).unwrap();
    let outcomes = Outcomes::default();
    sender.send(tracked(1, &outcomes)).await.unwrap();
    inside.await.unwrap();
    sender.send(tracked(2, &outcomes)).await.unwrap();
    assert_eq!(open_transactions(&db).await, 1);

    // The transaction is never released: the deadline passes with it open.
    let deadline = Duration::from_millis(300);
    let started = Instant::now();
    let report = running.stop(deadline).await;
    let took = started.elapsed();
    assert!(
        report.aborted.iter().any(|task| task == "sink"),
        "the sink task was not aborted: {report:?}"
    );
    assert!(
        took >= deadline,
        "stop returned before its deadline: {took:?}"
    );
    assert!(
        took < deadline + Duration::from_secs(10),
        "stop took {took:?}"
    );
    assert!(writer.pool().is_closed());
    // Nothing of the held transaction is visible, and it is no longer open on the server.
    assert_eq!(count(&db, "SELECT count(*) FROM gate_log").await, 0);
    assert_eq!(
        count(&db, "SELECT count(*) FROM surefoot_writer.event").await,
        0
    );
    assert_eq!(checkpoint(&db, "late").await, None);
    tokio::time::timeout(Duration::from_secs(10), async {
        while open_transactions(&db).await > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the aborted transaction is still open on the server");
    // Neither batch is acknowledged: the source delivers both again.
    let settled = outcomes_of(&outcomes);
    assert_eq!(settled.len(), 2, "{settled:?}");
    assert!(
        settled.iter().all(|(_, outcome)| !outcome.is_delivered()),
        "{settled:?}"
    );
    assert!(sender.send(tracked(3, &outcomes)).await.is_err());
    drop(release);
}
