#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use surefoot_core_model::{AckOutcome, Position};
use surefoot_reaction_queue::{QueueMetrics, RedisQueueProducer, create_group};
use surefoot_test_support::RedisServer;

use common::{Outcomes, batch};

const STREAM: &str = "reaction:orders";
const GROUP: &str = "orders";
const APPLIED: &str = "applied";
const ITEMS: u64 = 600;

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

fn worker(url: &str, consumer: &str, hang_after: Option<u64>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_surefoot-queue-worker"));
    command
        .env("SUREFOOT_REDIS_URL", url)
        .env("SUREFOOT_STREAM", STREAM)
        .env("SUREFOOT_GROUP", GROUP)
        .env("SUREFOOT_CONSUMER", consumer)
        .env("SUREFOOT_APPLIED", APPLIED)
        // Entries are read two at a time, so one waits for at most one other before its
        // turn; claims happen after two idle seconds.
        .env("SUREFOOT_READ_COUNT", "2")
        .env("SUREFOOT_CLAIM_IDLE_MS", "2000")
        .env("SUREFOOT_WORK_MS", "2");
    if let Some(limit) = hang_after {
        command.env("SUREFOOT_HANG_AFTER", limit.to_string());
    }
    command.spawn().unwrap()
}

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

/// Three worker processes share the stream; one is SIGKILLed holding pending entries; the
/// others claim them; every produced batch is applied exactly once.
#[tokio::test]
async fn sigkilled_worker_pending_entries_are_claimed_and_each_batch_applied_once() {
    let redis = RedisServer::builder().aof(true).start().await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection =
        surefoot_reaction_queue::connection_manager(&client, std::time::Duration::from_secs(10))
            .await
            .unwrap();
    create_group(&mut connection, STREAM, GROUP, Duration::from_secs(5))
        .await
        .unwrap();

    // Produce: every batch counts as delivered once XADD is acknowledged.
    let metrics = QueueMetrics::global("producer");
    let producer = RedisQueueProducer::new(
        connection.clone(),
        STREAM,
        10_000,
        Duration::from_secs(5),
        metrics.clone(),
    );
    let outcomes = Outcomes::default();
    let mut seq_of_id: HashMap<String, u64> = HashMap::new();
    for chunk in (0..ITEMS).collect::<Vec<_>>().chunks(50) {
        let batches = chunk
            .iter()
            .map(|seq| batch("s", *seq, 0, 16, outcomes.token("s", *seq)))
            .collect();
        let ids = producer.append_all(batches).await.unwrap();
        seq_of_id.extend(ids.into_iter().zip(chunk.iter().copied()));
    }
    assert_eq!(outcomes.count(AckOutcome::Delivered), ITEMS as usize);
    assert_eq!(metrics.snapshot().enqueued, ITEMS);

    let url = redis.url();
    let mut workers = Workers(vec![
        ("w0".into(), worker(&url, "w0", Some(30))),
        ("w1".into(), worker(&url, "w1", None)),
        ("w2".into(), worker(&url, "w2", None)),
    ]);

    // w0 gets stuck mid-stream holding entries it has read and not acknowledged.
    wait_until("w0 is stuck", Duration::from_secs(60), || async {
        query::<Option<String>>(&connection, redis::cmd("GET").arg("hung:w0"))
            .await
            .is_some()
    })
    .await;
    let pending: Vec<(String, String, u64, u64)> = query(
        &connection,
        redis::cmd("XPENDING")
            .arg(STREAM)
            .arg(GROUP)
            .arg("-")
            .arg("+")
            .arg(1000)
            .arg("w0"),
    )
    .await;
    assert!(!pending.is_empty(), "w0 holds no pending entries");
    let (_, child) = &mut workers.0[0];
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // The others finish the stream, claiming w0's entries after they idle for a second.
    wait_until(
        "every batch is applied",
        Duration::from_secs(90),
        || async { query::<u64>(&connection, redis::cmd("HLEN").arg(APPLIED)).await == ITEMS },
    )
    .await;
    wait_until("nothing is pending", Duration::from_secs(30), || async {
        let summary: common::PendingSummary =
            query(&connection, redis::cmd("XPENDING").arg(STREAM).arg(GROUP)).await;
        summary.0 == 0
    })
    .await;

    let applied: HashMap<String, String> =
        query(&connection, redis::cmd("HGETALL").arg(APPLIED)).await;
    let expected: Vec<String> = (0..ITEMS)
        .map(|seq| format!("s:{}", Position::Sequence(seq)))
        .collect();
    let mut got: Vec<String> = applied.keys().cloned().collect();
    got.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(
        got, expected_sorted,
        "applied set differs from produced set"
    );
    // Each batch's effect happened once: as many first applications as batches. A delivery
    // that outlasts the claim idle time on a loaded machine is delivered again (at least once)
    // and skipped by position; those are counted apart.
    let first: Option<u64> = query(
        &connection,
        redis::cmd("GET").arg(format!("{APPLIED}:applied")),
    )
    .await;
    assert_eq!(first, Some(ITEMS), "a batch was applied twice");
    let skipped: Option<u64> = query(
        &connection,
        redis::cmd("GET").arg(format!("{APPLIED}:redelivered")),
    )
    .await;
    eprintln!("redeliveries skipped by position: {}", skipped.unwrap_or(0));
    for (id, ..) in &pending {
        let seq = seq_of_id[id];
        let by = &applied[&format!("s:{}", Position::Sequence(seq))];
        assert_ne!(
            by, "w0",
            "entry {id} held by the killed worker was not taken over"
        );
    }
    let stream_len: u64 = query(&connection, redis::cmd("XLEN").arg(STREAM)).await;
    assert_eq!(
        stream_len, 0,
        "acknowledged entries are deleted; none is left"
    );
    let dead: u64 = query(
        &connection,
        redis::cmd("XLEN").arg(format!("{STREAM}:dead")),
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
