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
    QueueMetrics, RedisQueueConfig, RedisQueueProducer, RedisStreamWorker, partition_of,
};
use surefoot_test_support::RedisServer;

use common::{Outcomes, batch, seq_of};

const SOURCES: u64 = 16;
const PER_SOURCE: u64 = 45;
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
    let mut workers = Vec::new();
    for consumer in ["c0", "c1", "c2"] {
        let worker = Arc::new(
            RedisStreamWorker::connect(
                &client,
                test_config(stream, consumer),
                Arc::clone(&sink) as Arc<dyn Reaction>,
                QueueMetrics::global(consumer),
            )
            .await
            .unwrap(),
        );
        metrics.push(worker.metrics().clone());
        workers.push(Arc::clone(&worker));
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
    // The partitions end up shared: each consumer holds its fair share (3 of 8).
    wait_until(
        "the partitions are balanced",
        Duration::from_secs(30),
        || async { workers.iter().all(|w| w.owned_partitions().len() >= 2) },
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

/// An entry that cannot be settled (it fails permanently and its dead letter is refused: the
/// dead-letter key holds a string) holds its partition: nothing after it is applied, the
/// worker's health shows it, and once the dead letter can be written the rest follows in order.
#[tokio::test]
async fn x_3_a_redis_partition_holds_an_entry_it_cannot_settle() {
    let redis = RedisServer::new().await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let connection = surefoot_reaction_queue::connection_manager(&client, Duration::from_secs(10))
        .await
        .unwrap();
    let stream = "x3-hold";
    let dead = format!("{stream}:dead");
    query::<()>(
        &connection,
        redis::cmd("SET").arg(&dead).arg("not a stream"),
    )
    .await;
    let producer = producer(&connection, stream);
    let outcomes = Outcomes::default();
    let batches = (0..6)
        .map(|seq| batch("s", seq, 0, 0, outcomes.token("s", seq)))
        .collect();
    producer.append_all(batches).await.unwrap();

    let mut recorder = common::Recorder::new(Duration::ZERO);
    recorder.poison.insert(2);
    let recorder = Arc::new(recorder);
    let mut config = test_config(stream, "c0");
    config.retry = surefoot_core_lifecycle::RetryPolicy::new(
        surefoot_core_lifecycle::Backoff::new(Duration::from_millis(1), Duration::from_millis(20)),
    )
    .with_max_attempts(2);
    let worker = Arc::new(
        RedisStreamWorker::connect(
            &client,
            config,
            Arc::clone(&recorder) as Arc<dyn Reaction>,
            QueueMetrics::global("x3-hold"),
        )
        .await
        .unwrap(),
    );
    let group = TaskGroup::new("consumer");
    let running = Arc::clone(&worker);
    group
        .spawn("c0", move |cancel| async move { running.run(cancel).await })
        .unwrap();
    wait_until("the partition is held", Duration::from_secs(30), || async {
        !worker.health().held.is_empty()
    })
    .await;
    let seqs = |recorder: &common::Recorder| -> Vec<u64> {
        recorder.applied().into_iter().map(|(_, seq)| seq).collect()
    };
    assert_eq!(seqs(&recorder), vec![0, 1]);
    let held = worker.health().held[0].clone();
    assert_eq!(held.first, surefoot_core_model::Position::Sequence(2));
    assert!(
        held.reason.contains("dead letter not written"),
        "{}",
        held.reason
    );
    assert_eq!(producer.stream_len().await.unwrap(), 4, "entries 2..6 stay");
    assert_eq!(worker.metrics().snapshot().lanes_held, 1);

    query::<()>(&connection, redis::cmd("DEL").arg(&dead)).await;
    wait_until("the rest applied", Duration::from_secs(30), || async {
        recorder.applied().len() == 5
    })
    .await;
    assert_eq!(seqs(&recorder), vec![0, 1, 3, 4, 5]);
    wait_until("the stream emptied", Duration::from_secs(30), || async {
        producer.stream_len().await.unwrap() == 0
    })
    .await;
    assert!(worker.health().held.is_empty());
    let letters: u64 = query(&connection, redis::cmd("XLEN").arg(&dead)).await;
    assert_eq!(letters, 1);
    assert!(group.stop(Duration::from_secs(10)).await.is_clean());
}

/// A consumer whose lease was taken (it expired; here the test hands it to another consumer
/// name, as a takeover does) stops the partition at its next fenced delete: it applies at
/// most the entry it was on, and deletes nothing.
#[tokio::test]
async fn x_3_a_consumer_that_lost_its_lease_stops_at_its_next_entry() {
    let redis = RedisServer::new().await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let connection = surefoot_reaction_queue::connection_manager(&client, Duration::from_secs(10))
        .await
        .unwrap();
    let stream = "x3-fence";
    let producer = producer(&connection, stream);
    let batches = (0..50)
        .map(|seq| batch("s", seq, 0, 0, surefoot_core_model::AckToken::detached()))
        .collect();
    producer.append_all(batches).await.unwrap();
    // Slow enough that the lease changes hands in the middle of the stream.
    let recorder = Arc::new(common::Recorder::new(Duration::from_millis(100)));
    let config = test_config(stream, "c0");
    let worker = Arc::new(
        RedisStreamWorker::connect(
            &client,
            config,
            Arc::clone(&recorder) as Arc<dyn Reaction>,
            QueueMetrics::global("x3-fence"),
        )
        .await
        .unwrap(),
    );
    let group = TaskGroup::new("consumer");
    let running = Arc::clone(&worker);
    group
        .spawn("c0", move |cancel| async move { running.run(cancel).await })
        .unwrap();
    wait_until("two applied", Duration::from_secs(30), || async {
        recorder.applied().len() >= 2
    })
    .await;
    let partition = partition_of(&surefoot_core_model::SourceId::new("s"), PARTITIONS);
    // Another consumer's lease, with a newer token.
    query::<()>(
        &connection,
        redis::cmd("SET")
            .arg(format!("{stream}:lease:{partition}"))
            .arg("intruder#1000")
            .arg("PX")
            .arg(60_000),
    )
    .await;
    let at_theft = recorder.applied().len();
    wait_until(
        "the partition is given up",
        Duration::from_secs(30),
        || async { !worker.owned_partitions().contains(&partition) },
    )
    .await;
    let left = producer.stream_len().await.unwrap();
    let applied = recorder.applied().len();
    assert!(
        applied <= at_theft + 1,
        "applied {applied} after the lease was lost at {at_theft}"
    );
    // Deleted: what was applied before the theft, less perhaps the last one, whose delete
    // may have come after it and been refused.
    let before = 50 - at_theft as u64;
    assert!(
        left == before || left == before + 1,
        "{left} entries left; {before} expected: an entry was deleted after the lease was lost"
    );
    assert!(group.stop(Duration::from_secs(10)).await.is_clean());
}
