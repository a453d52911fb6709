#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use surefoot_core_lifecycle::Status;
use surefoot_core_model::{AckOutcome, AckToken, AckTracker, Position};
use surefoot_reaction_queue::{
    Fanout, FileDeadLetters, PublishError, QueueMetrics, ReactionRuntime, RuntimeConfig,
    RuntimeError, SubscribeError,
};

use common::{Outcomes, Recorder, batch};

fn runtime(name: &str, recorder: &Arc<Recorder>, dir: &tempfile::TempDir) -> ReactionRuntime {
    let config = RuntimeConfig::new(name, 1000);
    ReactionRuntime::new(
        config,
        Arc::clone(recorder) as Arc<dyn surefoot_core_model::Reaction>,
        Arc::new(FileDeadLetters::new(dir.path().join("dead.jsonl"))),
        QueueMetrics::global(name),
    )
}

/// A token from `tracker` for `seq` whose outcome is also recorded in `outcomes`.
fn tracked(tracker: &AckTracker, outcomes: &Outcomes, seq: u64) -> AckToken {
    let position = Position::Sequence(seq);
    let inner = tracker.register(position, position).unwrap();
    let record = outcomes.token("s", seq);
    AckToken::new(move |outcome| {
        record.settle_with(outcome);
        inner.settle_with(outcome);
    })
}

/// D-C2 (queue side): stop with 500 in flight and a deadline that allows about 200.
#[tokio::test]
async fn d_c2_stop_acknowledges_exactly_the_applied_and_restart_delivers_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Fanout::new("query");
    let recorder = Arc::new(Recorder::new(Duration::from_millis(4)));
    let tracker = AckTracker::new(None);
    let outcomes = Outcomes::default();

    let first = runtime("d_c2", &recorder, &dir);
    first.start(&upstream).unwrap();
    for seq in 1..=500 {
        let reached = upstream
            .publish(batch("s", seq, 0, 0, tracked(&tracker, &outcomes, seq)))
            .await
            .unwrap();
        assert_eq!(reached, 1);
    }
    let summary = first.stop(Duration::from_secs(1)).await;
    assert!(!summary.drained, "500 items of 4 ms drained within 1 s");
    assert!(summary.aborted.is_empty(), "{summary:?}");
    assert_eq!(first.live_tasks(), 0);
    assert_eq!(first.status(), Status::Stopped);

    let applied: Vec<u64> = recorder.applied().into_iter().map(|(_, seq)| seq).collect();
    eprintln!("applied before the deadline: {}", applied.len());
    assert!(!applied.is_empty() && applied.len() < 500);
    for seq in 1..=500 {
        let outcome = outcomes.get("s", seq).unwrap();
        assert_eq!(
            outcome == AckOutcome::Delivered,
            applied.contains(&seq),
            "item {seq}: outcome {outcome:?}"
        );
    }
    assert_eq!(
        first.metrics().snapshot().unacknowledged,
        500 - applied.len() as u64
    );

    // Restart: the source rewinds to its watermark and delivers the rest again.
    let watermark = tracker.rewind();
    assert_eq!(watermark, Some(Position::Sequence(applied.len() as u64)));
    let second = runtime("d_c2_again", &recorder, &dir);
    second.start(&upstream).unwrap();
    for seq in (applied.len() as u64 + 1)..=500 {
        let token = tracker
            .register(Position::Sequence(seq), Position::Sequence(seq))
            .unwrap();
        upstream
            .publish(batch("s", seq, 0, 0, token))
            .await
            .unwrap();
    }
    let summary = second.stop(Duration::from_secs(30)).await;
    assert!(summary.drained, "{summary:?}");
    assert_eq!(tracker.watermark(), Some(Position::Sequence(500)));

    let mut counts: HashMap<u64, usize> = HashMap::new();
    for (_, seq) in recorder.applied() {
        *counts.entry(seq).or_default() += 1;
    }
    assert_eq!(counts.len(), 500, "applied in total");
    assert!(counts.values().all(|count| *count == 1), "applied twice");
    assert_eq!(second.metrics().snapshot().dropped, 0);
}

/// D-5.2: stop removes the subscription; the upstream's subscriber count is back.
#[tokio::test]
async fn d_5_2_stop_restores_the_upstream_subscriber_count() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Fanout::new("query");
    let other = upstream
        .subscribe(
            "someone else",
            surefoot_reaction_queue::QueueConfig::new("other", 4),
            QueueMetrics::global("other"),
        )
        .unwrap();
    assert_eq!(upstream.subscriber_count(), 1);
    let recorder = Arc::new(Recorder::new(Duration::ZERO));
    let reaction = runtime("d_5_2", &recorder, &dir);
    for _ in 0..3 {
        reaction.start(&upstream).unwrap();
        assert_eq!(upstream.subscriber_count(), 2);
        assert!(reaction.live_tasks() > 0);
        let summary = reaction.stop(Duration::from_secs(10)).await;
        assert!(summary.drained && summary.aborted.is_empty(), "{summary:?}");
        assert_eq!(upstream.subscriber_count(), 1);
        assert_eq!(reaction.live_tasks(), 0);
    }
    drop(other);
    assert_eq!(upstream.subscriber_count(), 0);
}

/// D-6.3: subscribing to a stopping upstream is a typed error and leaves no task.
#[tokio::test]
async fn d_6_3_subscribing_to_a_stopping_upstream_is_a_typed_error_and_leaves_no_task() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Fanout::new("query");
    upstream.begin_stop();
    let recorder = Arc::new(Recorder::new(Duration::ZERO));
    let reaction = runtime("d_6_3", &recorder, &dir);
    let error = reaction.start(&upstream).unwrap_err();
    match &error {
        RuntimeError::Subscribe {
            source: SubscribeError::NotAccepting { status, .. },
            ..
        } => assert_eq!(*status, Status::Stopping),
        other => panic!("unexpected error: {other}"),
    }
    assert_eq!(reaction.live_tasks(), 0);
    assert_eq!(upstream.subscriber_count(), 0);
    assert_eq!(reaction.status(), Status::Failed);

    // Once the upstream runs again, the same runtime starts.
    upstream.finish_stop();
    upstream.restart();
    reaction.start(&upstream).unwrap();
    assert_eq!(upstream.subscriber_count(), 1);
    reaction.stop(Duration::from_secs(10)).await;
    assert_eq!(upstream.subscriber_count(), 0);
    assert_eq!(reaction.live_tasks(), 0);
}

/// D-6.3: a subscription made while the upstream runs is closed by the upstream's stop, not
/// left stale; the runtime learns of it (D-2.2).
#[tokio::test]
async fn d_2_2_upstream_closing_under_a_running_reaction_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Fanout::new("query");
    let recorder = Arc::new(Recorder::new(Duration::ZERO));
    let reaction = runtime("d_2_2", &recorder, &dir);
    reaction.start(&upstream).unwrap();
    let outcomes = Outcomes::default();
    for seq in 0..10 {
        upstream
            .publish(batch("s", seq, 0, 0, outcomes.token("s", seq)))
            .await
            .unwrap();
    }
    upstream.begin_stop();
    let status = tokio::time::timeout(
        Duration::from_secs(30),
        reaction
            .status_machine()
            .wait_for(|status| *status == Status::Failed),
    )
    .await
    .expect("the runtime did not notice the upstream closing");
    assert_eq!(status, Some(Status::Failed));
    let summary = reaction.stop(Duration::from_secs(10)).await;
    assert_eq!(summary.failed.len(), 1, "{summary:?}");
    assert!(
        summary.failed[0].contains("closed its subscription"),
        "{summary:?}"
    );
    // What was queued before the upstream closed was still delivered.
    assert_eq!(outcomes.count(AckOutcome::Delivered), 10);
    assert_eq!(reaction.live_tasks(), 0);
}

#[tokio::test]
async fn a_second_start_is_refused_and_bad_settings_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Fanout::new("query");
    let recorder = Arc::new(Recorder::new(Duration::ZERO));
    let reaction = runtime("twice", &recorder, &dir);
    reaction.start(&upstream).unwrap();
    assert!(matches!(
        reaction.start(&upstream).unwrap_err(),
        RuntimeError::Status { .. }
    ));
    assert_eq!(upstream.subscriber_count(), 1);
    reaction.stop(Duration::from_secs(10)).await;
    // A second stop is a no-op.
    assert!(reaction.stop(Duration::from_secs(1)).await.drained);

    let mut config = RuntimeConfig::new("", 0).with_concurrency(0);
    config.attempt_timeout = Duration::ZERO;
    let bad = ReactionRuntime::new(
        config,
        Arc::clone(&recorder) as Arc<dyn surefoot_core_model::Reaction>,
        Arc::new(FileDeadLetters::new(dir.path().join("dead.jsonl"))),
        QueueMetrics::global("bad"),
    );
    let error = bad.start(&upstream).unwrap_err().to_string();
    for expected in [
        "reaction.queue.name: must not be empty",
        "reaction.queue.capacity: must be at least 1",
        "reaction.concurrency: must be at least 1",
        "reaction.attempt_timeout: must be more than 0",
    ] {
        assert!(error.contains(expected), "{error} lacks {expected}");
    }
    assert_eq!(bad.status(), Status::Stopped);
    assert_eq!(upstream.subscriber_count(), 0);
}

#[tokio::test]
async fn publishing_to_a_stopped_upstream_hands_the_batch_back() {
    let upstream = Fanout::new("query");
    upstream.begin_stop();
    let outcomes = Outcomes::default();
    let error = upstream
        .publish(batch("s", 1, 0, 0, outcomes.token("s", 1)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            PublishError::NotRunning {
                status: Status::Stopping,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        outcomes.get("s", 1).is_none(),
        "the publisher still owns the batch"
    );
    error.into_batch().ack.failed();
    assert_eq!(outcomes.get("s", 1), Some(AckOutcome::Failed));
}

/// A publisher waiting for room when the reaction stops is released: its batch is settled as
/// failed (redelivered), nothing hangs and nothing is dropped.
#[tokio::test]
async fn stop_releases_a_publisher_waiting_for_room() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Fanout::new("query");
    let recorder = Arc::new(Recorder::new(Duration::from_millis(20)));
    let reaction = ReactionRuntime::new(
        RuntimeConfig::new("small", 2),
        Arc::clone(&recorder) as Arc<dyn surefoot_core_model::Reaction>,
        Arc::new(FileDeadLetters::new(dir.path().join("dead.jsonl"))),
        QueueMetrics::global("small"),
    );
    reaction.start(&upstream).unwrap();
    let outcomes = Outcomes::default();
    let publish = async {
        for seq in 0..100 {
            let published = upstream
                .publish(batch("s", seq, 0, 0, outcomes.token("s", seq)))
                .await;
            if let Err(error) = published {
                // The reaction unsubscribed: the source would deliver this again later.
                assert!(
                    matches!(error, PublishError::NoSubscribers { .. }),
                    "{error}"
                );
                error.into_batch().ack.failed();
            }
        }
    };
    let stop = async {
        // Stop once the publisher is blocked behind a full queue and work is under way.
        let started = std::time::Instant::now();
        while reaction.metrics().snapshot().delivered == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "nothing delivered"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        reaction.stop(Duration::from_millis(100)).await
    };
    let ((), summary) = tokio::time::timeout(Duration::from_secs(60), async {
        futures::join!(publish, stop)
    })
    .await
    .expect("the publisher or the stop hung");
    assert!(summary.aborted.is_empty(), "{summary:?}");
    assert_eq!(outcomes.len(), 100, "every batch settled");
    assert_eq!(outcomes.count(AckOutcome::Abandoned), 0);
    let applied = recorder.applied().len();
    assert_eq!(outcomes.count(AckOutcome::Delivered), applied);
    assert_eq!(outcomes.count(AckOutcome::Failed), 100 - applied);
    assert_eq!(reaction.live_tasks(), 0);
}

#[tokio::test]
async fn publishing_without_subscribers_is_refused_not_acknowledged() {
    let upstream = Fanout::new("query");
    let outcomes = Outcomes::default();
    let error = upstream
        .publish(batch("s", 1, 0, 0, outcomes.token("s", 1)))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PublishError::NoSubscribers { .. }),
        "{error}"
    );
    assert!(surefoot_core_lifecycle::Classify::class(&error).is_retryable());
    assert!(outcomes.get("s", 1).is_none());
    drop(error);
    assert_eq!(outcomes.get("s", 1), Some(AckOutcome::Abandoned));
}
