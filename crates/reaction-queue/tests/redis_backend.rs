#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use surefoot_core_lifecycle::{Backoff, RetryPolicy, TaskGroup};
use surefoot_core_model::{AckOutcome, AckToken, Reaction};
use surefoot_reaction_queue::{
    QueueMetrics, RedisQueueConfig, RedisQueueProducer, RedisStreamWorker, partition_of,
    partition_stream,
};
use surefoot_test_support::RedisServer;

use common::{Outcomes, Recorder, batch};

const STREAM: &str = "queue";
const GROUP: &str = "group";

fn config(consumer: &str) -> RedisQueueConfig {
    let mut config = RedisQueueConfig::new(STREAM, GROUP, consumer);
    config.block = Duration::from_millis(100);
    config.lease_ttl = Duration::from_secs(2);
    config.retry = RetryPolicy::new(Backoff::new(
        Duration::from_millis(1),
        Duration::from_millis(5),
    ))
    .with_max_attempts(2);
    config
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn int(connection: &ConnectionManager, cmd: &mut redis::Cmd) -> u64 {
    let mut connection = connection.clone();
    cmd.query_async(&mut connection).await.unwrap()
}

async fn start_worker(
    redis: &RedisServer,
    consumer: &str,
    reaction: Arc<dyn Reaction>,
    group: &TaskGroup,
) -> QueueMetrics {
    let client = redis::Client::open(redis.url()).unwrap();
    let metrics = QueueMetrics::global(consumer);
    let worker = RedisStreamWorker::connect(&client, config(consumer), reaction, metrics.clone())
        .await
        .unwrap();
    group
        .spawn(consumer.to_owned(), move |cancel| async move {
            worker.run(cancel).await
        })
        .unwrap();
    metrics
}

/// A full stream makes the producer wait until a worker acknowledges (and so removes) entries.
#[tokio::test]
async fn full_stream_makes_the_producer_wait_and_nothing_is_lost() {
    let redis = RedisServer::new().await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let connection =
        surefoot_reaction_queue::connection_manager(&client, std::time::Duration::from_secs(10))
            .await
            .unwrap();
    let metrics = QueueMetrics::global("producer");
    let producer = RedisQueueProducer::new(
        connection.clone(),
        STREAM,
        20,
        Duration::from_secs(5),
        metrics.clone(),
    );
    let outcomes = Outcomes::default();
    for seq in 0..20 {
        producer
            .append(batch("s", seq, 0, 0, outcomes.token("s", seq)))
            .await
            .unwrap();
    }
    assert_eq!(producer.stream_len().await.unwrap(), 20);

    let recorder = Arc::new(Recorder::new(Duration::from_millis(2)));
    let group = TaskGroup::new("workers");
    let produce = async {
        for seq in 20..200 {
            producer
                .append(batch("s", seq, 0, 0, outcomes.token("s", seq)))
                .await
                .unwrap();
            assert!(producer.stream_len().await.unwrap() <= 20);
        }
    };
    let start = start_worker(
        &redis,
        "c1",
        Arc::clone(&recorder) as Arc<dyn Reaction>,
        &group,
    );
    let (worker_metrics, ()) = futures::join!(start, produce);
    wait_until("all applied", || async { recorder.applied().len() == 200 }).await;
    assert!(group.stop(Duration::from_secs(10)).await.is_clean());

    let seqs: Vec<u64> = recorder.applied().into_iter().map(|(_, seq)| seq).collect();
    assert_eq!(
        seqs,
        (0..200).collect::<Vec<_>>(),
        "one consumer applies in stream order"
    );
    assert_eq!(outcomes.count(AckOutcome::Delivered), 200);
    let snapshot = metrics.snapshot();
    assert!(
        snapshot.producer_waits > 0 && snapshot.producer_wait > Duration::ZERO,
        "{snapshot:?}"
    );
    assert_eq!(worker_metrics.snapshot().delivered, 200);
    assert_eq!(producer.stream_len().await.unwrap(), 0);
}

/// A poison entry and an entry that is not a batch go to the dead-letter stream with their
/// error; both are acknowledged; the rest are delivered.
#[tokio::test]
async fn poison_and_undecodable_entries_go_to_the_dead_letter_stream() {
    let redis = RedisServer::new().await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection =
        surefoot_reaction_queue::connection_manager(&client, std::time::Duration::from_secs(10))
            .await
            .unwrap();
    let producer = RedisQueueProducer::new(
        connection.clone(),
        STREAM,
        1000,
        Duration::from_secs(5),
        QueueMetrics::global("p"),
    );
    for seq in 0..50 {
        producer
            .append(batch("s", seq, 0, 0, AckToken::detached()))
            .await
            .unwrap();
    }
    // In the partition of source `s`, after its batches.
    let partition = partition_stream(
        STREAM,
        partition_of(
            &surefoot_core_model::SourceId::new("s"),
            surefoot_reaction_queue::DEFAULT_PARTITIONS,
        ),
    );
    redis::cmd("XADD")
        .arg(&partition)
        .arg("*")
        .arg("garbage")
        .arg("1")
        .query_async::<String>(&mut connection)
        .await
        .unwrap();

    let mut recorder = Recorder::new(Duration::ZERO);
    recorder.poison.insert(17);
    let recorder = Arc::new(recorder);
    let group = TaskGroup::new("workers");
    let metrics = start_worker(
        &redis,
        "c1",
        Arc::clone(&recorder) as Arc<dyn Reaction>,
        &group,
    )
    .await;
    let dead_stream = format!("{STREAM}:dead");
    wait_until("dead letters written", || async {
        int(&connection, redis::cmd("XLEN").arg(&dead_stream)).await == 2
    })
    .await;
    wait_until("stream emptied", || async {
        producer.stream_len().await.unwrap() == 0
    })
    .await;
    assert!(group.stop(Duration::from_secs(10)).await.is_clean());

    assert_eq!(recorder.applied().len(), 49);
    let snapshot = metrics.snapshot();
    assert_eq!(
        (snapshot.delivered, snapshot.dead_lettered, snapshot.dropped),
        (49, 2, 0)
    );
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&dead_stream)
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    let poison = &entries.ids[0];
    let error: String = poison.get("error").unwrap();
    let attempts: u32 = poison.get("attempts").unwrap();
    assert!(error.contains("item 17 is poison"), "{error}");
    assert_eq!(attempts, 1, "a permanent error is not retried");
    let garbage: String = entries.ids[1].get("error").unwrap();
    assert!(garbage.contains("is not a batch"), "{garbage}");
}

/// A worker stopped in the middle of an entry leaves it in the stream and releases its
/// partitions; the next worker starts from that entry.
#[tokio::test]
async fn a_restarted_worker_takes_back_its_own_pending_entries() {
    let redis = RedisServer::new().await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let connection =
        surefoot_reaction_queue::connection_manager(&client, std::time::Duration::from_secs(10))
            .await
            .unwrap();
    let producer = RedisQueueProducer::new(
        connection.clone(),
        STREAM,
        1000,
        Duration::from_secs(5),
        QueueMetrics::global("p"),
    );
    for seq in 0..30 {
        producer
            .append(batch("s", seq, 0, 0, AckToken::detached()))
            .await
            .unwrap();
    }
    // Slow enough that a stop lands in the middle of the stream: after the third item, 27
    // remain, over five seconds of work.
    let recorder = Arc::new(Recorder::new(Duration::from_millis(200)));
    let group = TaskGroup::new("first");
    start_worker(
        &redis,
        "c1",
        Arc::clone(&recorder) as Arc<dyn Reaction>,
        &group,
    )
    .await;
    wait_until("some applied", || async { recorder.applied().len() >= 3 }).await;
    assert!(group.stop(Duration::from_secs(10)).await.is_clean());
    let applied_before = recorder.applied().len();
    assert!(applied_before < 30);
    assert!(
        producer.stream_len().await.unwrap() > 0,
        "the stopped worker left nothing"
    );

    let fast = Arc::new(Recorder::new(Duration::ZERO));
    let group = TaskGroup::new("second");
    start_worker(&redis, "c2", Arc::clone(&fast) as Arc<dyn Reaction>, &group).await;
    wait_until("the rest applied", || async {
        applied_before + fast.applied().len() == 30
    })
    .await;
    assert!(group.stop(Duration::from_secs(10)).await.is_clean());
    let mut all: Vec<u64> = recorder
        .applied()
        .into_iter()
        .chain(fast.applied())
        .map(|(_, seq)| seq)
        .collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..30).collect::<Vec<_>>(),
        "each entry applied exactly once"
    );
}

/// With Redis gone, an append fails with a typed error and the tokens are settled as failed.
#[tokio::test]
async fn append_to_a_stopped_server_fails_and_settles_tokens_as_failed() {
    let mut redis = RedisServer::new().await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let connection =
        surefoot_reaction_queue::connection_manager(&client, std::time::Duration::from_secs(10))
            .await
            .unwrap();
    let producer = RedisQueueProducer::new(
        connection,
        STREAM,
        1000,
        Duration::from_secs(2),
        QueueMetrics::global("p"),
    );
    redis.stop().await.unwrap();
    let outcomes = Outcomes::default();
    let started = Instant::now();
    let error = producer
        .append_all(vec![
            batch("s", 0, 0, 0, outcomes.token("s", 0)),
            batch("s", 1, 0, 0, outcomes.token("s", 1)),
        ])
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        surefoot_core_lifecycle::Classify::class(&error).is_retryable(),
        "{error}"
    );
    assert_eq!(outcomes.count(AckOutcome::Failed), 2);
}

#[test]
fn redis_queue_config_lists_every_problem() {
    let mut config = RedisQueueConfig::new("s", "", "c");
    config.dead_letter_stream = "s".into();
    config.max_len = 0;
    config.block = Duration::ZERO;
    let error = config.validate().unwrap_err().to_string();
    for expected in [
        "redis_queue.group: must not be empty",
        "redis_queue.dead_letter_stream: must differ from the stream",
        "redis_queue.max_len: must be at least 1",
        "redis_queue.block: must be more than 0",
    ] {
        assert!(error.contains(expected), "{error} lacks {expected}");
    }
}

/// The producer as the reaction of an in-memory runtime: an upstream batch is acknowledged
/// once its entry is in the stream.
#[tokio::test]
async fn runtime_feeding_the_stream_acknowledges_once_the_entry_is_in_redis() {
    let redis = RedisServer::new().await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let connection =
        surefoot_reaction_queue::connection_manager(&client, std::time::Duration::from_secs(10))
            .await
            .unwrap();
    let producer = RedisQueueProducer::new(
        connection.clone(),
        STREAM,
        1000,
        Duration::from_secs(5),
        QueueMetrics::global("p"),
    );
    let dir = tempfile::tempdir().unwrap();
    let runtime = surefoot_reaction_queue::ReactionRuntime::new(
        surefoot_reaction_queue::RuntimeConfig::new("to-redis", 64),
        Arc::new(producer),
        Arc::new(surefoot_reaction_queue::FileDeadLetters::new(
            dir.path().join("dead.jsonl"),
        )),
        QueueMetrics::global("to-redis"),
    );
    let upstream = surefoot_reaction_queue::Fanout::new("query");
    runtime.start(&upstream).unwrap();
    let outcomes = Outcomes::default();
    for seq in 0..40 {
        upstream
            .publish(batch("s", seq, 0, 0, outcomes.token("s", seq)))
            .await
            .unwrap();
    }
    assert!(runtime.stop(Duration::from_secs(30)).await.drained);
    assert_eq!(outcomes.count(AckOutcome::Delivered), 40);
    let partition = partition_stream(
        STREAM,
        partition_of(
            &surefoot_core_model::SourceId::new("s"),
            surefoot_reaction_queue::DEFAULT_PARTITIONS,
        ),
    );
    assert_eq!(
        int(&connection, redis::cmd("XLEN").arg(partition)).await,
        40
    );
}
