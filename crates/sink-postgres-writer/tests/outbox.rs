#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use surefoot_core_model::{Change, Row, Value, batch_channel};
use surefoot_sink_postgres_writer::{
    ApplyMode, OutboxConfig, PostgresWriter, TableConfig, WriterConfig,
};
use surefoot_test_support::{PgServer, RedisServer};

const STREAM: &str = "orders-stream";
const BOUND: Duration = Duration::from_secs(60);

fn outbox_config(server: &PgServer, redis: &RedisServer, sink: &str) -> WriterConfig {
    let mut table = TableConfig::new(table("orders"), ApplyMode::Append);
    table.publish = Some(STREAM.into());
    let mut outbox = OutboxConfig::new(redis.url());
    outbox.poll_interval = Duration::from_millis(50);
    outbox.redis_timeout = Duration::from_secs(1);
    outbox.batch_size = 100;
    outbox.backoff =
        surefoot_core_lifecycle::Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    let mut config = config(server, sink).table(table);
    config.outbox = Some(outbox);
    config
}

fn order(n: u64) -> Change {
    let row = Row::new().with("id", Value::Int64(n as i64));
    Change::insert(seq(n), table("orders"), row)
}

/// Stream entry ids and how often each occurs.
async fn stream_entries(redis: &RedisServer) -> HashMap<String, u32> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(STREAM)
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    let mut counts = HashMap::new();
    for entry in reply.ids {
        *counts.entry(entry.id).or_default() += 1;
    }
    counts
}

async fn outbox_ids(writer: &PostgresWriter) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM surefoot_writer.outbox ORDER BY id")
        .fetch_all(writer.pool())
        .await
        .unwrap()
}

async fn wait_for_backlog_zero(writer: &PostgresWriter) {
    tokio::time::timeout(BOUND, async {
        loop {
            let health = writer.health().await;
            if health.outbox.as_ref().unwrap().backlog == 0 && health.status == "healthy" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the outbox was not drained within the bound");
}

fn assert_exactly_once(ids: &[i64], entries: &HashMap<String, u32>) {
    assert_eq!(entries.len(), ids.len(), "stream and outbox differ in size");
    for id in ids {
        let count = entries.get(&format!("{id}-0")).copied().unwrap_or(0);
        assert_eq!(
            count, 1,
            "outbox message {id} is in the stream {count} times"
        );
    }
}

#[tokio::test]
async fn w_3_chaos_redis_down_every_outbox_message_in_the_stream_exactly_once() {
    let server = PgServer::new().await.unwrap();
    let mut redis = RedisServer::builder().aof(true).start().await.unwrap();
    let writer = PostgresWriter::builder(outbox_config(&server, &redis, "chaos"))
        .connect()
        .await
        .unwrap();
    let (sender, receiver) = batch_channel(64);
    let running = writer.start(receiver).unwrap();
    let mut n = 0u64;
    let mut send = async |count: u64| {
        for _ in 0..count {
            n += 1;
            sender.send(batch("src", vec![order(n)])).await.unwrap();
        }
    };
    send(200).await;
    redis.stop().await.unwrap();
    send(200).await;
    // Redis is down: the writer keeps committing, the outbox grows, health says degraded.
    let degraded = tokio::time::timeout(BOUND, async {
        loop {
            let health = writer.health().await;
            if health.status == "degraded" && health.outbox.as_ref().unwrap().backlog > 0 {
                return health;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("health never reported degraded while Redis was down");
    assert!(degraded.postgres_sync_healthy);
    assert!(!degraded.outbox.unwrap().redis_connected);
    tokio::time::sleep(Duration::from_secs(30)).await;
    send(100).await;
    redis.start().await.unwrap();
    send(100).await;
    wait_for_backlog_zero(&writer).await;
    let ids = outbox_ids(&writer).await;
    let report = running.stop(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report:?}");
    assert!(writer.pool().is_closed());
    assert_eq!(ids.len(), 600);
    assert_exactly_once(&ids, &stream_entries(&redis).await);
}

#[tokio::test]
async fn w_3_relay_crash_between_xadd_and_marking_sent_publishes_nothing_twice() {
    let server = PgServer::new().await.unwrap();
    let redis = RedisServer::builder().aof(true).start().await.unwrap();
    let writer = PostgresWriter::builder(outbox_config(&server, &redis, "crash"))
        .connect()
        .await
        .unwrap();
    let batches: Vec<_> = (1..=5).map(|n| batch("src", vec![order(n)])).collect();
    let refs: Vec<_> = batches.iter().collect();
    let stats = writer.apply(&refs).await.unwrap();
    assert_eq!(stats.published, 5);
    let ids = outbox_ids(&writer).await;
    // A relay that died after XADD of the first three messages and before marking them sent:
    // the entries it added, as it adds them (payload, sink, outbox id; see `relay`).
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    for id in &ids[..3] {
        let payload: String =
            sqlx::query_scalar("SELECT payload::text FROM surefoot_writer.outbox WHERE id = $1")
                .bind(id)
                .fetch_one(writer.pool())
                .await
                .unwrap();
        let _: String = redis::cmd("XADD")
            .arg(STREAM)
            .arg(format!("{id}-0"))
            .arg("payload")
            .arg(payload)
            .arg("sink")
            .arg("crash")
            .arg("outbox_id")
            .arg(id)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    let (_sender, receiver) = batch_channel(1);
    let running = writer.start(receiver).unwrap();
    wait_for_backlog_zero(&writer).await;
    assert_eq!(running.live_tasks(), ["outbox-relay", "sink"]);
    assert!(running.stop(Duration::from_secs(10)).await.is_clean());
    assert_exactly_once(&ids, &stream_entries(&redis).await);
}

#[tokio::test]
async fn health_router_reports_postgres_sync_healthy() {
    let server = PgServer::new().await.unwrap();
    let redis = RedisServer::new().await.unwrap();
    let writer = PostgresWriter::builder(outbox_config(&server, &redis, "health"))
        .connect()
        .await
        .unwrap();
    let router = writer.health_router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = axum::serve(listener, router);
    let body = tokio::select! {
        result = serve => panic!("server ended: {result:?}"),
        body = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream
                .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut text = String::new();
            stream.read_to_string(&mut text).await.unwrap();
            text
        } => body,
    };
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("\"postgres_sync_healthy\":true"), "{body}");
    assert!(body.contains("\"backlog\":0"), "{body}");
    assert!(!body.contains("surreal"), "{body}");
}
