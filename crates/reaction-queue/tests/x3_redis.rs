//! X-3 (issue 14), the Redis backend: with several consumers, and when one is SIGKILLed, a
//! position-idempotent consumer sees each source's positions strictly increasing, so it skips
//! nothing it never applied.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use surefoot_core_lifecycle::TaskGroup;
use surefoot_core_model::{AckOutcome, Batch, ComponentError, Reaction};
use surefoot_reaction_queue::{
    QueueMetrics, RedisQueueConfig, RedisQueueProducer, RedisStreamWorker,
};
use surefoot_test_support::RedisServer;

use common::{Outcomes, batch, seq_of};

const SOURCES: u64 = 6;
const PER_SOURCE: u64 = 120;
const PARTITIONS: u32 = 8;

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn query<T: redis::FromRedisValue>(
    connection: &ConnectionManager,
    cmd: &mut redis::Cmd,
) -> T {
    let mut connection = connection.clone();
    cmd.query_async(&mut connection).await.unwrap()
}

/// Per source: the checkpoint and every position applied.
type SourceState = (Option<u64>, BTreeSet<u64>);

/// A consumer that is idempotent by position as the PostgreSQL writer is: per source, a
/// position above the checkpoint is applied and becomes the checkpoint; one at or below it is
/// skipped. Skipping one that was never applied is a loss, recorded in `lost`.
#[derive(Default)]
struct PositionIdempotent {
    state: Mutex<HashMap<String, SourceState>>,
    lost: Mutex<Vec<String>>,
    repeats: AtomicU64,
    applied: AtomicU64,
}

#[async_trait::async_trait]
impl Reaction for PositionIdempotent {
    fn name(&self) -> &str {
        "position-idempotent"
    }

    async fn apply(&self, batch: &Batch) -> Result<(), ComponentError> {
        // Some work, so that consumers overlap.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let seq = seq_of(batch);
        let mut state = self.state.lock().unwrap();
        let (checkpoint, applied) = state.entry(batch.source.to_string()).or_default();
        if checkpoint.is_some_and(|checkpoint| seq <= checkpoint) {
            if applied.contains(&seq) {
                self.repeats.fetch_add(1, Ordering::Relaxed);
            } else {
                self.lost.lock().unwrap().push(format!(
                    "{}: {seq} skipped after {checkpoint:?}",
                    batch.source
                ));
            }
            return Ok(());
        }
        *checkpoint = Some(seq);
        applied.insert(seq);
        self.applied.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn producer(connection: &ConnectionManager, stream: &str) -> RedisQueueProducer {
    RedisQueueProducer::new(
        connection.clone(),
        stream,
        100_000,
        Duration::from_secs(5),
        QueueMetrics::global("producer"),
    )
    .with_partitions(PARTITIONS)
}

/// Appends `PER_SOURCE` batches of each of `SOURCES` sources, interleaved, in pipelines of
/// 24; every token settles delivered.
async fn produce(producer: &RedisQueueProducer, pause: Duration) {
    let outcomes = Outcomes::default();
    let all: Vec<(u64, u64)> = (0..PER_SOURCE)
        .flat_map(|seq| (0..SOURCES).map(move |source| (source, seq)))
        .collect();
    for chunk in all.chunks(24) {
        let batches = chunk
            .iter()
            .map(|(source, seq)| {
                let name = format!("s{source}");
                let ack = outcomes.token(&name, *seq);
                batch(&name, *seq, 0, 16, ack)
            })
            .collect();
        producer.append_all(batches).await.unwrap();
        tokio::time::sleep(pause).await;
    }
    assert_eq!(
        outcomes.count(AckOutcome::Delivered),
        (SOURCES * PER_SOURCE) as usize
    );
}

fn test_config(stream: &str, consumer: &str) -> RedisQueueConfig {
    let mut config = RedisQueueConfig::new(stream, "group", consumer);
    config.block = Duration::from_millis(100);
    config.read_count = 4;
    config.lease_ttl = Duration::from_secs(2);
    config.partitions = PARTITIONS;
    config
}

/// Three consumers share the queue; the position-idempotent consumer behind them sees every
/// source's positions strictly increasing and applies each batch exactly once.
#[tokio::test]
async fn x_3_three_redis_consumers_keep_per_source_order() {
    let redis = RedisServer::new().await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let connection = surefoot_reaction_queue::connection_manager(&client, Duration::from_secs(10))
        .await
        .unwrap();
    let stream = "x3-order";
    let sink = Arc::new(PositionIdempotent::default());
    let group = TaskGroup::new("consumers");
    let mut metrics = Vec::new();
    for consumer in ["c0", "c1", "c2"] {
        let worker = RedisStreamWorker::connect(
            &client,
            test_config(stream, consumer),
            Arc::clone(&sink) as Arc<dyn Reaction>,
            QueueMetrics::global(consumer),
        )
        .await
        .unwrap();
        metrics.push(worker.metrics().clone());
        group
            .spawn(
                consumer,
                move |cancel| async move { worker.run(cancel).await },
            )
            .unwrap();
    }
    // Produced over about two lease periods, so that the consumers rebalance the partitions
    // while batches flow.
    produce(&producer(&connection, stream), Duration::from_millis(120)).await;
    let total = SOURCES * PER_SOURCE;
    wait_until(
        "every batch is applied or lost",
        Duration::from_secs(120),
        || async {
            sink.applied.load(Ordering::Relaxed) + sink.lost.lock().unwrap().len() as u64 >= total
        },
    )
    .await;
    let report = group.stop(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report:?}");
    let lost = sink.lost.lock().unwrap().clone();
    assert!(
        lost.is_empty(),
        "{} batches skipped unapplied: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let state = sink.state.lock().unwrap();
    for source in 0..SOURCES {
        let (_, applied) = &state[&format!("s{source}")];
        assert_eq!(applied.len() as u64, PER_SOURCE, "source s{source}");
    }
    assert_eq!(sink.applied.load(Ordering::Relaxed), total);
    let delivered: u64 = metrics.iter().map(|m| m.snapshot().delivered).sum();
    assert!(delivered >= total, "{delivered}");
    let busy = metrics
        .iter()
        .filter(|m| m.snapshot().delivered > 0)
        .count();
    assert_eq!(busy, 3, "every consumer got partitions");
    eprintln!(
        "consumers that applied: {busy}; repeats skipped by position: {}",
        sink.repeats.load(Ordering::Relaxed)
    );
}

/// Worker processes, killed if the test ends early.
struct Workers(Vec<(String, Child)>);

impl Drop for Workers {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            if child.try_wait().ok().flatten().is_none() {
                child.kill().ok();
                child.wait().ok();
            }
        }
    }
}

fn worker_process(url: &str, stream: &str, consumer: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_surefoot-queue-worker"))
        .env("SUREFOOT_REDIS_URL", url)
        .env("SUREFOOT_STREAM", stream)
        .env("SUREFOOT_GROUP", "group")
        .env("SUREFOOT_CONSUMER", consumer)
        .env("SUREFOOT_APPLIED", "applied")
        .env("SUREFOOT_READ_COUNT", "4")
        .env("SUREFOOT_CLAIM_IDLE_MS", "2000")
        .env("SUREFOOT_LEASE_TTL_MS", "2000")
        .env("SUREFOOT_PARTITIONS", PARTITIONS.to_string())
        .env("SUREFOOT_WORK_MS", "3")
        .spawn()
        .unwrap()
}

/// Three worker processes; one is SIGKILLed mid-stream. Its partitions are taken over by the
/// others, which first apply what it left, in order: the position-idempotent consumer (kept in
/// Redis by the worker process) never skips a batch it did not apply, and applies each once.
#[tokio::test]
async fn x_3_a_killed_consumers_partitions_are_taken_over_in_order() {
    let redis = RedisServer::builder().aof(true).start().await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let connection = surefoot_reaction_queue::connection_manager(&client, Duration::from_secs(10))
        .await
        .unwrap();
    let stream = "x3-kill";
    let url = redis.url();
    let mut workers = Workers(
        ["w0", "w1", "w2"]
            .iter()
            .map(|name| ((*name).to_owned(), worker_process(&url, stream, name)))
            .collect(),
    );
    let producer = producer(&connection, stream);
    let produce = produce(&producer, Duration::from_millis(60));
    let kill = async {
        wait_until(
            "w0 has applied 40 batches",
            Duration::from_secs(60),
            || async {
                query::<Option<u64>>(&connection, redis::cmd("GET").arg("applied:by:w0"))
                    .await
                    .unwrap_or(0)
                    >= 40
            },
        )
        .await;
        let (_, child) = &mut workers.0[0];
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    };
    futures::join!(produce, kill);
    let killed_at: u64 = query::<Option<u64>>(&connection, redis::cmd("GET").arg("applied:by:w0"))
        .await
        .unwrap_or(0);

    let total = SOURCES * PER_SOURCE;
    wait_until(
        "every batch is applied or lost",
        Duration::from_secs(120),
        || async {
            let applied: Option<u64> =
                query(&connection, redis::cmd("GET").arg("applied:applied")).await;
            let lost: u64 =
                query(&connection, redis::cmd("LLEN").arg("applied:out_of_order")).await;
            applied.unwrap_or(0) + lost >= total
        },
    )
    .await;
    let lost: Vec<String> = query(
        &connection,
        redis::cmd("LRANGE")
            .arg("applied:out_of_order")
            .arg(0)
            .arg(9),
    )
    .await;
    assert!(lost.is_empty(), "batches skipped unapplied: {lost:?}");
    let applied: Option<u64> = query(&connection, redis::cmd("GET").arg("applied:applied")).await;
    assert_eq!(applied, Some(total), "each batch applied once");
    let fields: u64 = query(&connection, redis::cmd("HLEN").arg("applied")).await;
    assert_eq!(fields, total);
    let by_survivors: u64 = {
        let w1: Option<u64> = query(&connection, redis::cmd("GET").arg("applied:by:w1")).await;
        let w2: Option<u64> = query(&connection, redis::cmd("GET").arg("applied:by:w2")).await;
        w1.unwrap_or(0) + w2.unwrap_or(0)
    };
    assert_eq!(killed_at + by_survivors, total);
    let repeats: Option<u64> =
        query(&connection, redis::cmd("GET").arg("applied:redelivered")).await;
    eprintln!(
        "w0 applied {killed_at} before SIGKILL; survivors {by_survivors}; repeats skipped by position: {}",
        repeats.unwrap_or(0)
    );
    let takeovers: Option<u64> = query(
        &connection,
        redis::cmd("GET").arg(format!("{stream}:takeovers")),
    )
    .await;
    assert!(
        takeovers.unwrap_or(0) >= 1,
        "no partition of w0 was taken over"
    );
    eprintln!("partitions taken over: {}", takeovers.unwrap_or(0));
    let dead: u64 = query(
        &connection,
        redis::cmd("XLEN").arg(format!("{stream}:dead")),
    )
    .await;
    assert_eq!(dead, 0);

    // The survivors stop cleanly on SIGTERM.
    for (name, child) in &mut workers.0[1..] {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{name} did not stop"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.success(), "{name} exited with {status}");
    }
}
