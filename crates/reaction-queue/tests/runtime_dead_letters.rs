#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use surefoot_core_lifecycle::{Backoff, RetryPolicy};
use surefoot_core_model::{AckOutcome, Batch, Reaction};
#[cfg(feature = "redis")]
use surefoot_reaction_queue::RedisDeadLetters;
use surefoot_reaction_queue::{
    DeadLetterSink, Fanout, FileDeadLetters, QueueMetrics, ReactionRuntime, RuntimeConfig,
};
#[cfg(feature = "redis")]
use surefoot_test_support::RedisServer;

use common::{Outcomes, Recorder, batch, seq_of};

const ITEMS: u64 = 10_000;
const KEYS: u64 = 37;
const POISON: u64 = 4_321;

fn key(batch: &Batch) -> u64 {
    seq_of(batch) % KEYS
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy::new(Backoff::new(
        Duration::from_millis(1),
        Duration::from_millis(5),
    ))
    .with_max_attempts(3)
}

async fn run_with(
    dead_letters: Arc<dyn DeadLetterSink>,
    name: &str,
) -> (Arc<Recorder>, Outcomes, ReactionRuntime) {
    let upstream = Fanout::new("query");
    let mut recorder = Recorder::new(Duration::ZERO);
    recorder.poison.insert(POISON);
    recorder.key = key;
    let recorder = Arc::new(recorder);
    let config = RuntimeConfig::new(name, 256)
        .with_concurrency(4)
        .with_retry(quick_retries());
    let runtime = ReactionRuntime::new(
        config,
        Arc::clone(&recorder) as Arc<dyn Reaction>,
        dead_letters,
        QueueMetrics::global(name),
    )
    .with_key(key);
    runtime.start(&upstream).unwrap();
    let outcomes = Outcomes::default();
    for seq in 0..ITEMS {
        upstream
            .publish(batch("s", seq, 0, 0, outcomes.token("s", seq)))
            .await
            .unwrap();
    }
    let summary = runtime.stop(Duration::from_secs(60)).await;
    assert!(summary.drained && summary.aborted.is_empty(), "{summary:?}");
    (recorder, outcomes, runtime)
}

fn check_delivery(recorder: &Recorder, outcomes: &Outcomes, runtime: &ReactionRuntime) {
    let applied = recorder.applied();
    assert_eq!(applied.len() as u64, ITEMS - 1);
    assert!(!applied.iter().any(|(_, seq)| *seq == POISON));
    // Per-key order: within a key, sequences were applied in increasing order.
    let mut last: HashMap<u64, u64> = HashMap::new();
    for (_, seq) in &applied {
        if let Some(previous) = last.insert(seq % KEYS, *seq) {
            assert!(
                previous < *seq,
                "key {} went from {previous} to {seq}",
                seq % KEYS
            );
        }
    }
    assert_eq!(
        recorder.overlaps.load(Ordering::Relaxed),
        0,
        "two items of one key at once"
    );
    // Every token settled as delivered: the dead-lettered one counts as settled.
    assert_eq!(outcomes.count(AckOutcome::Delivered), ITEMS as usize);
    let snapshot = runtime.metrics().snapshot();
    assert_eq!(snapshot.delivered, ITEMS - 1);
    assert_eq!(snapshot.dead_lettered, 1);
    assert_eq!(snapshot.dropped, 0);
    // A permanent error is not retried.
    assert_eq!(snapshot.retried, 0);
}

#[tokio::test]
async fn one_in_ten_thousand_permanent_failure_goes_to_the_dead_letter_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = FileDeadLetters::new(dir.path().join("dead.jsonl"));
    let (recorder, outcomes, runtime) = run_with(Arc::new(file.clone()), "poison_file").await;
    check_delivery(&recorder, &outcomes, &runtime);
    let letters = file.read_all().await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(
        letter.first,
        surefoot_core_model::Position::Sequence(POISON)
    );
    assert_eq!(letter.attempts, 1);
    assert_eq!(letter.class, "permanent");
    assert!(
        letter.error.contains("item 4321 is poison"),
        "{}",
        letter.error
    );
    assert_eq!(letter.changes.len(), 1);
}

// Needs the `redis` feature.
#[cfg(feature = "redis")]
#[tokio::test]
async fn one_in_ten_thousand_permanent_failure_goes_to_the_dead_letter_stream() {
    let redis = RedisServer::new().await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let connection =
        surefoot_reaction_queue::connection_manager(&client, std::time::Duration::from_secs(10))
            .await
            .unwrap();
    let sink = RedisDeadLetters::new(connection.clone(), "dead", Duration::from_secs(5));
    let (recorder, outcomes, runtime) = run_with(Arc::new(sink), "poison_redis").await;
    check_delivery(&recorder, &outcomes, &runtime);
    let mut connection = connection;
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("dead")
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(entries.ids.len(), 1);
    let entry = &entries.ids[0];
    let attempts: u32 = entry.get("attempts").unwrap();
    let error: String = entry.get("error").unwrap();
    assert_eq!(attempts, 1);
    assert!(error.contains("item 4321 is poison"), "{error}");
}

/// A transient failure is retried with backoff until it succeeds; the retries are counted.
#[tokio::test]
async fn transient_failures_are_retried_then_delivered() {
    struct Flaky {
        failures_left: std::sync::Mutex<u32>,
    }
    #[derive(Debug, thiserror::Error)]
    #[error("flaky")]
    struct Flake;
    #[async_trait::async_trait]
    impl Reaction for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        async fn apply(&self, _batch: &Batch) -> Result<(), surefoot_core_model::ComponentError> {
            let mut left = self.failures_left.lock().unwrap();
            if *left == 0 {
                return Ok(());
            }
            *left -= 1;
            Err(surefoot_core_model::ComponentError::new(
                "apply",
                surefoot_core_lifecycle::ErrorClass::Transient,
                Flake,
            ))
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let upstream = Fanout::new("query");
    let runtime = ReactionRuntime::new(
        RuntimeConfig::new("flaky", 8).with_retry(quick_retries().with_max_attempts(10)),
        Arc::new(Flaky {
            failures_left: std::sync::Mutex::new(4),
        }),
        Arc::new(FileDeadLetters::new(dir.path().join("dead.jsonl"))),
        QueueMetrics::global("flaky"),
    );
    runtime.start(&upstream).unwrap();
    let outcomes = Outcomes::default();
    upstream
        .publish(batch("s", 0, 0, 0, outcomes.token("s", 0)))
        .await
        .unwrap();
    let summary = runtime.stop(Duration::from_secs(30)).await;
    assert!(summary.drained, "{summary:?}");
    assert_eq!(outcomes.get("s", 0), Some(AckOutcome::Delivered));
    let snapshot = runtime.metrics().snapshot();
    assert_eq!(
        (snapshot.retried, snapshot.delivered, snapshot.dead_lettered),
        (4, 1, 0)
    );
}
