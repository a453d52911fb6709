//! Issue 14, X-5: the outbox relay marks a message sent only when the stream holds it, as this
//! sink's entry for that outbox row (`XRANGE id id`, compared field by field); a refused id it
//! cannot confirm fails loudly (health, metric, error, log) and stays unsent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::Duration;

use common::meter::Meter;
use common::*;
use sqlx::Connection;
use surefoot_core_model::{Batch, Change, Row, Value, batch_channel};
use surefoot_sink_postgres_writer::{
    ApplyMode, OutboxConfig, PostgresWriter, RunningWriter, TableConfig, WriterConfig,
};
use surefoot_test_support::{PgServer, RedisServer};

const STREAM: &str = "x5-stream";
const BOUND: Duration = Duration::from_secs(60);
const REFUSED: &str = "surefoot.writer.outbox.refused";

fn outbox_config(server: &PgServer, database: &str, redis: &RedisServer) -> WriterConfig {
    let mut table = TableConfig::new(table("orders"), ApplyMode::Append);
    table.publish = Some(STREAM.into());
    let mut outbox = OutboxConfig::new(redis.url());
    outbox.poll_interval = Duration::from_millis(50);
    outbox.redis_timeout = Duration::from_secs(1);
    outbox.backoff = surefoot_core_lifecycle::Backoff::new(
        Duration::from_millis(50),
        Duration::from_millis(500),
    );
    let mut config = config(server, "x5").table(table);
    config.database_url = surefoot_core_model::Secret::new(server.url(database));
    config.outbox = Some(outbox);
    config
}

fn order(position: u64, id: i64) -> Batch {
    let row = Row::new().with("id", Value::Int64(id));
    batch(
        "src",
        vec![Change::insert(seq(position), table("orders"), row)],
    )
}

async fn redis_connection(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// The stream's entries: id and `payload` field.
async fn entries(redis: &RedisServer) -> Vec<(String, String)> {
    let mut connection = redis_connection(redis).await;
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(STREAM)
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    reply
        .ids
        .into_iter()
        .map(|entry| {
            let payload: String = entry.get("payload").unwrap_or_default();
            (entry.id, payload)
        })
        .collect()
}

/// Outbox ids marked sent.
async fn sent(writer: &PostgresWriter) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT id FROM surefoot_writer.outbox WHERE sent_at IS NOT NULL ORDER BY id",
    )
    .fetch_all(writer.pool())
    .await
    .unwrap()
}

/// Waits until the relay reports a refusal; fails as soon as one of `unsent` is marked sent.
async fn wait_for_refusal(writer: &PostgresWriter, unsent: &[i64]) -> String {
    tokio::time::timeout(BOUND, async {
        loop {
            let marked = sent(writer).await;
            if let Some(id) = unsent.iter().find(|id| marked.contains(id)) {
                panic!("outbox message {id} marked sent although the stream does not hold it");
            }
            let health = writer.health().await;
            if let Some(refused) = health.outbox.as_ref().and_then(|o| o.refused.clone()) {
                assert_eq!(health.status, "unhealthy", "{health:?}");
                return refused;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the relay never reported the refused id")
}

/// Waits until every outbox row is sent and health is healthy.
async fn wait_drained(writer: &PostgresWriter) {
    tokio::time::timeout(BOUND, async {
        loop {
            let health = writer.health().await;
            if health.outbox.as_ref().unwrap().backlog == 0 && health.status == "healthy" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the outbox was not drained within the bound");
}

async fn stop(running: RunningWriter) {
    let report = running.stop(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test]
async fn x_5_an_id_refused_by_redis_is_not_marked_sent() {
    let server = PgServer::new().await.unwrap();
    let redis = RedisServer::new().await.unwrap();
    // Another writer uses the stream with `XADD *`: its entry id (milliseconds) is far above
    // any outbox id.
    let mut connection = redis_connection(&redis).await;
    let foreign: String = redis::cmd("XADD")
        .arg(STREAM)
        .arg("*")
        .arg("payload")
        .arg("not ours")
        .query_async(&mut connection)
        .await
        .unwrap();
    let (meter, metrics) = Meter::new("x5");
    let writer = PostgresWriter::builder(outbox_config(&server, "postgres", &redis))
        .metrics(metrics)
        .connect()
        .await
        .unwrap();
    writer.apply(&[&order(1, 1)]).await.unwrap();
    let (_sender, receiver) = batch_channel(1);
    let running = writer.start(receiver).unwrap();
    let refused = wait_for_refusal(&writer, &[1]).await;
    eprintln!("refused: {refused}");
    assert!(refused.contains(STREAM), "{refused}");
    assert!(meter.counter(REFUSED) >= 1);
    // Still refused, still unsent, a while later: the relay retries, it never gives up quietly.
    tokio::time::timeout(BOUND, async {
        while meter.counter(REFUSED) < 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the relay stopped retrying");
    assert!(sent(&writer).await.is_empty());
    assert_eq!(entries(&redis).await, [(foreign, "not ours".to_owned())]);
    stop(running).await;
}

#[tokio::test]
async fn x_5_a_restored_sink_database_does_not_mark_absent_messages_sent() {
    let server = PgServer::new().await.unwrap();
    let redis = RedisServer::new().await.unwrap();
    let config = outbox_config(&server, "postgres", &redis);
    let writer = PostgresWriter::builder(config.clone())
        .connect()
        .await
        .unwrap();
    writer.apply(&[&order(1, 1)]).await.unwrap();
    let (_sender, receiver) = batch_channel(1);
    let running = writer.start(receiver).unwrap();
    wait_drained(&writer).await;
    stop(running).await;

    // The backup: the sink database as it is now (message 1 sent, the id sequence at 1).
    let mut admin = sqlx::PgConnection::connect(&server.url("template1"))
        .await
        .unwrap();
    sqlx::raw_sql("CREATE DATABASE backup TEMPLATE postgres")
        .execute(&mut admin)
        .await
        .unwrap();

    // Messages 2 and 3 published after the backup.
    let writer = PostgresWriter::builder(config).connect().await.unwrap();
    writer.apply(&[&order(2, 2), &order(3, 3)]).await.unwrap();
    let (_sender, receiver) = batch_channel(1);
    let running = writer.start(receiver).unwrap();
    wait_drained(&writer).await;
    stop(running).await;
    let published = entries(&redis).await;
    assert_eq!(published.len(), 3, "{published:?}");

    // Restored from the backup while Redis kept the stream: the next messages draw ids 2 and 3
    // again, with other content. The stream's entries 2-0 and 3-0 are not these messages.
    let (meter, metrics) = Meter::new("x5");
    let restored = PostgresWriter::builder(outbox_config(&server, "backup", &redis))
        .metrics(metrics)
        .connect()
        .await
        .unwrap();
    restored
        .apply(&[&order(2, 20), &order(3, 30)])
        .await
        .unwrap();
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM surefoot_writer.outbox WHERE sent_at IS NULL ORDER BY id",
    )
    .fetch_all(restored.pool())
    .await
    .unwrap();
    assert_eq!(ids, [2, 3]);
    let (_sender, receiver) = batch_channel(1);
    let running = restored.start(receiver).unwrap();
    let refused = wait_for_refusal(&restored, &ids).await;
    eprintln!("refused: {refused}");
    assert!(meter.counter(REFUSED) >= 1);
    assert_eq!(sent(&restored).await, [1]);
    assert_eq!(entries(&redis).await, published, "the stream is unchanged");
    stop(running).await;
    admin.close().await.unwrap();
}
