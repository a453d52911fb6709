//! Queue throughput against its limits, measured in the same run:
//!
//! - **in-memory**: batches/s through [`ordered_queue`] against a plain `tokio::sync::mpsc`
//!   channel of the same capacity, one producer task and one consumer, the same pre-built
//!   batches, each settled by the consumer. With one source, and with three sources merged.
//! - **Redis**: batches/s appended by [`RedisQueueProducer::append_all`] in pipelines of
//!   `PIPELINE` against `redis-benchmark -c 1 -P <PIPELINE>` sending the very same `XADD`
//!   command (same fields, same bytes) to the same server. Ours includes encoding the batch,
//!   the `XLEN` bound check per pipeline and settling every token.
//!
//! Each figure is the median of `REPS` runs; the benchmark prints ratios, never asserts.
//!
//! Run: `cargo bench -p surefoot-reaction-queue --bench queue`

// A benchmark program: it reports on stdout, and a failed unwrap is the run failing.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use surefoot_core_lifecycle::TaskGroup;
use surefoot_core_model::{AckToken, Batch, Change, Position, Row, SourceId, TableRef, Value};
use surefoot_reaction_queue::{QueueConfig, QueueMetrics, RedisQueueProducer, ordered_queue};
use surefoot_test_support::RedisServer;

const CAPACITY: usize = 1024;
const ITEMS: u64 = 400_000;
const REDIS_ITEMS: u64 = 100_000;
const PIPELINE: usize = 50;
const REPS: usize = 3;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("reaction-queue benchmark ({REPS} runs each, median)");
    runtime.block_on(in_memory());
    let redis = runtime.block_on(RedisServer::new()).unwrap();
    runtime.block_on(redis_against_benchmark(&redis, "2 worker threads"));
    // redis-benchmark is a single-threaded event loop; so is this runtime.
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    single.block_on(redis_against_benchmark(&redis, "current-thread runtime"));
}

async fn in_memory() {
    for sources in [1, 3] {
        let ours = median(REPS, || in_memory_ours(sources)).await;
        let theirs = median(REPS, || in_memory_mpsc(sources)).await;
        report(
            &format!("in-memory, {sources} source(s), capacity {CAPACITY}"),
            ITEMS,
            ours,
            theirs,
            "tokio mpsc",
        );
    }
}

async fn redis_against_benchmark(redis: &RedisServer, flavour: &str) {
    let ours = median(REPS, || redis_ours(redis)).await;
    let theirs = median(REPS, || redis_benchmark(redis)).await;
    report(
        &format!("Redis XADD, pipeline {PIPELINE}, {flavour}"),
        REDIS_ITEMS,
        ours,
        theirs,
        "redis-benchmark",
    );
}

fn report(what: &str, items: u64, ours: Duration, theirs: Duration, limit: &str) {
    let rate = |d: Duration| items as f64 / d.as_secs_f64();
    println!(
        "{what}: ours {:.0} batches/s, {limit} {:.0} batches/s, ratio {:.2}",
        rate(ours),
        rate(theirs),
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
}

async fn median<F, Fut>(reps: usize, mut run: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Duration>,
{
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        times.push(run().await);
    }
    times.sort();
    times[reps / 2]
}

fn batch(source: &SourceId, seq: u64) -> Batch {
    let position = Position::Sequence(seq);
    let row = Row::new()
        .with("id", Value::Text(seq.to_string()))
        .with("body", Value::Text("payload".repeat(4)));
    Batch {
        source: source.clone(),
        first: position,
        last: position,
        commit_time: Some(chrono::Utc::now()),
        changes: Arc::from(vec![Change::insert(
            position,
            TableRef::new("public", "items"),
            row,
        )]),
        ack: AckToken::detached(),
    }
}

fn batches(sources: usize, items: u64) -> Vec<Batch> {
    let ids: Vec<SourceId> = (0..sources)
        .map(|i| SourceId::new(format!("s{i}")))
        .collect();
    (0..items)
        .map(|seq| batch(&ids[(seq as usize) % sources], seq))
        .collect()
}

async fn in_memory_ours(sources: usize) -> Duration {
    let items = batches(sources, ITEMS);
    let (tx, rx) = ordered_queue(
        QueueConfig::new("bench", CAPACITY),
        QueueMetrics::global("bench"),
    )
    .unwrap();
    let group = TaskGroup::new("bench");
    let started = Instant::now();
    group
        .spawn("producer", move |_| async move {
            for batch in items {
                tx.send(batch).await?;
            }
            Ok::<_, surefoot_reaction_queue::SendError>(())
        })
        .unwrap();
    let mut received = 0;
    while let Some(queued) = rx.recv().await {
        queued.batch.ack.delivered();
        received += 1;
    }
    let elapsed = started.elapsed();
    assert_eq!(received, ITEMS);
    assert!(group.stop(Duration::from_secs(5)).await.is_clean());
    elapsed
}

async fn in_memory_mpsc(sources: usize) -> Duration {
    let items = batches(sources, ITEMS);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(CAPACITY);
    let group = TaskGroup::new("bench");
    let started = Instant::now();
    group
        .spawn("producer", move |_| async move {
            for batch in items {
                tx.send(batch).await?;
            }
            Ok::<_, tokio::sync::mpsc::error::SendError<Batch>>(())
        })
        .unwrap();
    let mut received = 0;
    while let Some(batch) = rx.recv().await {
        batch.ack.delivered();
        received += 1;
    }
    let elapsed = started.elapsed();
    assert_eq!(received, ITEMS);
    assert!(group.stop(Duration::from_secs(5)).await.is_clean());
    elapsed
}

async fn connection(redis: &RedisServer) -> redis::aio::ConnectionManager {
    let client = redis::Client::open(redis.url()).unwrap();
    surefoot_reaction_queue::connection_manager(&client, std::time::Duration::from_secs(10))
        .await
        .unwrap()
}

async fn clear(connection: &mut redis::aio::ConnectionManager) {
    redis::cmd("FLUSHALL")
        .query_async::<()>(connection)
        .await
        .unwrap();
}

async fn redis_ours(redis: &RedisServer) -> Duration {
    let mut connection = connection(redis).await;
    clear(&mut connection).await;
    let producer = RedisQueueProducer::new(
        connection,
        "bench",
        u64::MAX,
        Duration::from_secs(10),
        QueueMetrics::global("bench-redis"),
    );
    let mut items = batches(1, REDIS_ITEMS).into_iter();
    let started = Instant::now();
    loop {
        let pipeline: Vec<Batch> = items.by_ref().take(PIPELINE).collect();
        if pipeline.is_empty() {
            break;
        }
        producer.append_all(pipeline).await.unwrap();
    }
    let elapsed = started.elapsed();
    assert_eq!(producer.stream_len().await.unwrap(), REDIS_ITEMS);
    elapsed
}

/// The exact XADD our producer sends for one batch, as arguments for redis-benchmark.
fn xadd_arguments() -> Vec<String> {
    let one = batch(&SourceId::new("s0"), 1);
    vec![
        "XADD".into(),
        "theirs".into(),
        "*".into(),
        "source".into(),
        one.source.to_string(),
        "first".into(),
        serde_json::to_string(&one.first).unwrap(),
        "last".into(),
        serde_json::to_string(&one.last).unwrap(),
        "commit_time".into(),
        one.commit_time.unwrap().to_rfc3339(),
        "changes".into(),
        serde_json::to_string(&*one.changes).unwrap(),
    ]
}

async fn redis_benchmark(redis: &RedisServer) -> Duration {
    let mut connection = connection(redis).await;
    clear(&mut connection).await;
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &redis.port().to_string()])
        .args(["-n", &REDIS_ITEMS.to_string(), "-c", "1"])
        .args(["-P", &PIPELINE.to_string(), "-q", "--csv"])
        .args(xadd_arguments())
        .output()
        .expect("redis-benchmark (install redis-tools)");
    assert!(output.status.success(), "{output:?}");
    let csv = String::from_utf8(output.stdout).unwrap();
    // The first column (the command) contains commas itself: rps is the seventh from the end.
    let rps: f64 = csv
        .lines()
        .nth(1)
        .and_then(|line| line.rsplit(',').nth(6))
        .map(|field| field.trim_matches('"').parse().unwrap())
        .expect("redis-benchmark CSV");
    Duration::from_secs_f64(REDIS_ITEMS as f64 / rps)
}
