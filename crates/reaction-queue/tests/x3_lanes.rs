//! X-3 (issue 14), the in-process runtime: a key's lane never passes an item that is not
//! settled delivered, and the default attempt limit outlasts a sink's own transaction limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use surefoot_core_lifecycle::{Backoff, ErrorClass, RetryPolicy};
use surefoot_core_model::{AckOutcome, Batch, ComponentError, Reaction};
use surefoot_reaction_queue::{
    DeadLetterSink, Fanout, FileDeadLetters, QueueMetrics, ReactionRuntime, RuntimeConfig,
};

use common::{Outcomes, batch, seq_of};

/// The sequence the reaction stalls on.
const STUCK: u64 = 1;

/// How the stuck item fails while `failing` is set.
#[derive(Clone, Copy)]
enum Failure {
    /// Every attempt outlasts the attempt limit.
    Hang,
    /// Every attempt fails permanently (so the item goes to the dead letters).
    Permanent,
    /// Every attempt fails with a transient error.
    Transient,
}

/// Records the order of applied items and the attempts per item; fails [`STUCK`] while
/// `failing` is set.
struct Stalling {
    failure: Failure,
    failing: AtomicBool,
    applied: Mutex<Vec<u64>>,
    attempts: Mutex<HashMap<u64, u64>>,
}

#[derive(Debug, thiserror::Error)]
#[error("item {0} refused")]
struct Refused(u64);

impl Stalling {
    fn new(failure: Failure) -> Arc<Self> {
        Arc::new(Self {
            failure,
            failing: AtomicBool::new(true),
            applied: Mutex::default(),
            attempts: Mutex::default(),
        })
    }

    fn applied(&self) -> Vec<u64> {
        self.applied.lock().unwrap().clone()
    }

    fn attempts(&self, seq: u64) -> u64 {
        self.attempts
            .lock()
            .unwrap()
            .get(&seq)
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl Reaction for Stalling {
    fn name(&self) -> &str {
        "stalling"
    }

    async fn apply(&self, batch: &Batch) -> Result<(), ComponentError> {
        let seq = seq_of(batch);
        *self.attempts.lock().unwrap().entry(seq).or_default() += 1;
        if seq == STUCK && self.failing.load(Ordering::SeqCst) {
            match self.failure {
                Failure::Hang => std::future::pending::<()>().await,
                Failure::Permanent => {
                    return Err(ComponentError::new(
                        "apply",
                        ErrorClass::Permanent,
                        Refused(seq),
                    ));
                }
                Failure::Transient => {
                    return Err(ComponentError::new(
                        "apply",
                        ErrorClass::Transient,
                        Refused(seq),
                    ));
                }
            }
        }
        self.applied.lock().unwrap().push(seq);
        Ok(())
    }
}

async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn config(name: &str) -> RuntimeConfig {
    let mut config = RuntimeConfig::new(name, 64).with_retry(
        RetryPolicy::new(Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(5),
        ))
        .with_max_attempts(3),
    );
    config.attempt_timeout = Duration::from_millis(50);
    config
}

/// Runs items 0..4 of one source through one lane while item [`STUCK`] cannot be settled
/// delivered, checks that nothing after it is applied or settled, then lets it through.
async fn case(
    name: &str,
    failure: Failure,
    dead_letters: Arc<dyn DeadLetterSink>,
    heal: impl FnOnce(&Stalling),
) -> (Vec<u64>, Outcomes, ReactionRuntime) {
    let reaction = Stalling::new(failure);
    let runtime = ReactionRuntime::new(
        config(name),
        Arc::clone(&reaction) as Arc<dyn Reaction>,
        dead_letters,
        QueueMetrics::global(name),
    );
    let upstream = Fanout::new("query");
    runtime.start(&upstream).unwrap();
    let outcomes = Outcomes::default();
    for seq in 0..4 {
        upstream
            .publish(batch("s", seq, 0, 0, outcomes.token("s", seq)))
            .await
            .unwrap();
    }
    // Either the lane holds the stuck item (it is attempted again, past the retry policy),
    // or it has passed it.
    wait_until(
        "the stuck item is held or passed",
        Duration::from_secs(20),
        || reaction.attempts(STUCK) >= 7 || reaction.applied().contains(&2),
    )
    .await;
    assert_eq!(
        reaction.applied(),
        vec![0],
        "{name}: the lane passed item {STUCK}, which was not settled delivered (outcome {:?})",
        outcomes.get("s", STUCK)
    );
    for seq in STUCK..4 {
        assert_eq!(outcomes.get("s", seq), None, "{name}: item {seq} settled");
    }
    let health = runtime.health();
    assert_eq!(health.held.len(), 1, "{name}: {health:?}");
    let held = &health.held[0];
    assert_eq!(
        (held.source.as_str(), held.first),
        ("s", surefoot_core_model::Position::Sequence(STUCK)),
        "{name}: {health:?}"
    );
    assert!(!health.is_healthy(), "{name}: a held lane is not healthy");
    assert_eq!(runtime.metrics().snapshot().lanes_held, 1, "{name}");

    heal(&reaction);
    wait_until("every item settled", Duration::from_secs(20), || {
        outcomes.len() == 4
    })
    .await;
    assert!(runtime.health().held.is_empty(), "{name}: still held");
    let applied = reaction.applied();
    let summary = runtime.stop(Duration::from_secs(10)).await;
    assert!(summary.drained, "{name}: {summary:?}");
    (applied, outcomes, runtime)
}

#[tokio::test]
async fn x_3_a_lane_never_passes_an_item_that_was_not_delivered() {
    // Attempts that outlast the attempt limit: the effect may still be under way, so the item
    // is neither dead-lettered nor passed; the lane holds it until an attempt succeeds.
    let dir = tempfile::tempdir().unwrap();
    let file = FileDeadLetters::new(dir.path().join("dead.jsonl"));
    let (applied, outcomes, runtime) = case(
        "x3-timeout",
        Failure::Hang,
        Arc::new(file.clone()),
        |reaction| {
            reaction.failing.store(false, Ordering::SeqCst);
        },
    )
    .await;
    assert_eq!(applied, vec![0, 1, 2, 3]);
    assert_eq!(outcomes.count(AckOutcome::Delivered), 4);
    assert!(file.read_all().await.unwrap_or_default().is_empty());
    assert_eq!(runtime.metrics().snapshot().dead_lettered, 0);

    // Transient failures past the retry policy (the sink is down): not a reason to give the
    // item up and let later ones pass; the lane holds it until the sink is back.
    let dir = tempfile::tempdir().unwrap();
    let file = FileDeadLetters::new(dir.path().join("dead.jsonl"));
    let (applied, outcomes, runtime) = case(
        "x3-transient",
        Failure::Transient,
        Arc::new(file.clone()),
        |reaction| reaction.failing.store(false, Ordering::SeqCst),
    )
    .await;
    assert_eq!(applied, vec![0, 1, 2, 3]);
    assert_eq!(outcomes.count(AckOutcome::Delivered), 4);
    assert_eq!(runtime.metrics().snapshot().dead_lettered, 0);

    // A dead letter that cannot be written: the lane holds the item and writes it again until
    // the destination takes it; only then do later items go.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let file = FileDeadLetters::new(missing.join("dead.jsonl"));
    let (applied, outcomes, runtime) = case(
        "x3-dead-letter",
        Failure::Permanent,
        Arc::new(file.clone()),
        // The item still fails; its dead letter can now be written.
        |_| std::fs::create_dir(&missing).unwrap(),
    )
    .await;
    assert_eq!(applied, vec![0, 2, 3]);
    assert_eq!(outcomes.count(AckOutcome::Delivered), 4);
    assert_eq!(file.read_all().await.unwrap().len(), 1);
    let snapshot = runtime.metrics().snapshot();
    assert_eq!((snapshot.dead_lettered, snapshot.dropped), (1, 0));
}

/// A stop while a lane is held leaves the held item and everything after it unacknowledged
/// (redelivered, in order, by the source), and applies nothing after it.
#[tokio::test]
async fn x_3_a_stop_while_a_lane_is_held_leaves_the_rest_unacknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let reaction = Stalling::new(Failure::Permanent);
    let runtime = ReactionRuntime::new(
        config("x3-stop"),
        Arc::clone(&reaction) as Arc<dyn Reaction>,
        Arc::new(FileDeadLetters::new(
            dir.path().join("missing").join("dead.jsonl"),
        )),
        QueueMetrics::global("x3-stop"),
    );
    let upstream = Fanout::new("query");
    runtime.start(&upstream).unwrap();
    let outcomes = Outcomes::default();
    for seq in 0..4 {
        upstream
            .publish(batch("s", seq, 0, 0, outcomes.token("s", seq)))
            .await
            .unwrap();
    }
    wait_until("the lane is held", Duration::from_secs(20), || {
        !runtime.health().held.is_empty()
    })
    .await;
    let summary = runtime.stop(Duration::from_millis(200)).await;
    assert!(summary.aborted.is_empty(), "{summary:?}");
    assert_eq!(reaction.applied(), vec![0]);
    assert_eq!(outcomes.get("s", 0), Some(AckOutcome::Delivered));
    for seq in 1..4 {
        assert_eq!(outcomes.get("s", seq), Some(AckOutcome::Failed), "{seq}");
    }
}

/// The PostgreSQL writer's default `transaction_timeout` (`sink-postgres-writer`,
/// `PoolConfig`): a sink transaction may legitimately take this long before the sink itself
/// gives up with a definite error.
const SINK_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// A reaction whose one attempt takes as long as a sink transaction may is delivered on its
/// first attempt under the default settings: the runtime does not give up (and retry, or pass
/// the item) while the sink may still commit it.
#[tokio::test(start_paused = true)]
async fn x_3_the_default_attempt_timeout_outlasts_the_sink_transaction_timeout() {
    struct AsSlowAsTheSink;
    #[async_trait::async_trait]
    impl Reaction for AsSlowAsTheSink {
        fn name(&self) -> &str {
            "slow"
        }
        async fn apply(&self, _batch: &Batch) -> Result<(), ComponentError> {
            tokio::time::sleep(SINK_TRANSACTION_TIMEOUT + Duration::from_secs(1)).await;
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let runtime = ReactionRuntime::new(
        RuntimeConfig::new("x3-default-timeout", 8),
        Arc::new(AsSlowAsTheSink),
        Arc::new(FileDeadLetters::new(dir.path().join("dead.jsonl"))),
        QueueMetrics::global("x3-default-timeout"),
    );
    let upstream = Fanout::new("query");
    runtime.start(&upstream).unwrap();
    let outcomes = Outcomes::default();
    upstream
        .publish(batch("s", 0, 0, 0, outcomes.token("s", 0)))
        .await
        .unwrap();
    let summary = runtime.stop(Duration::from_secs(3600)).await;
    assert!(summary.drained, "{summary:?}");
    let snapshot = runtime.metrics().snapshot();
    assert_eq!(
        (snapshot.delivered, snapshot.retried, snapshot.dead_lettered),
        (1, 0, 0),
        "the attempt was cut short by the runtime"
    );
    assert_eq!(outcomes.get("s", 0), Some(AckOutcome::Delivered));
    assert!(RuntimeConfig::new("r", 1).attempt_timeout > SINK_TRANSACTION_TIMEOUT);
    #[cfg(feature = "redis")]
    assert!(
        surefoot_reaction_queue::RedisQueueConfig::new("s", "g", "c").attempt_timeout
            > SINK_TRANSACTION_TIMEOUT
    );
}
