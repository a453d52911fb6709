#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::Duration;

use surefoot_core_model::{AckOutcome, AckToken};
use surefoot_reaction_queue::{QueueConfig, QueueMetrics, TrySendError, ordered_queue};

use common::{Outcomes, batch, resident_bytes, seq_of};

/// D-M2: a full queue makes the producer wait; nothing is dropped.
#[tokio::test]
async fn d_m2_fast_producer_waits_nothing_dropped_memory_flat() {
    const ITEMS: u64 = 100_000;
    let metrics = QueueMetrics::global("d_m2");
    let (tx, rx) = ordered_queue(QueueConfig::new("d_m2", 100), metrics.clone()).unwrap();
    let outcomes = Outcomes::default();
    let mut resident_at_tenth = 0;
    let produce = async {
        for seq in 0..ITEMS {
            // 1 KiB per batch: a leak of the batches would show in resident memory.
            tx.send(batch("s", seq, 0, 1024, outcomes.token("s", seq)))
                .await
                .unwrap();
            tokio::task::yield_now().await;
        }
        drop(tx);
    };
    let consume = async {
        let mut next = 0;
        while let Some(queued) = rx.recv().await {
            assert_eq!(seq_of(&queued.batch), next, "missing or reordered");
            next += 1;
            if next == ITEMS / 10 {
                resident_at_tenth = resident_bytes();
            }
            // Ten steps of work per item against the producer's one: ten times slower.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            queued.batch.ack.delivered();
        }
        next
    };
    let ((), consumed) = futures::join!(produce, consume);
    let resident_at_end = resident_bytes();

    assert_eq!(consumed, ITEMS);
    assert_eq!(outcomes.count(AckOutcome::Delivered), ITEMS as usize);
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.dropped, 0);
    assert_eq!(snapshot.enqueued, ITEMS);
    assert!(
        snapshot.max_depth <= 100,
        "depth went past capacity: {}",
        snapshot.max_depth
    );
    assert!(
        snapshot.producer_waits > ITEMS / 2,
        "the producer hardly waited: {snapshot:?}"
    );
    assert!(snapshot.producer_wait > Duration::ZERO);
    let growth = resident_at_end.saturating_sub(resident_at_tenth);
    assert!(
        growth < 16 << 20,
        "resident memory grew by {growth} bytes from 10% to 100%"
    );
}

#[tokio::test]
async fn try_send_on_a_full_queue_returns_the_batch() {
    let (tx, rx) =
        ordered_queue(QueueConfig::new("full", 2), QueueMetrics::global("full")).unwrap();
    let outcomes = Outcomes::default();
    for seq in 0..2 {
        tx.try_send(batch("s", seq, 0, 0, outcomes.token("s", seq)))
            .unwrap();
    }
    let error = tx
        .try_send(batch("s", 2, 0, 0, outcomes.token("s", 2)))
        .unwrap_err();
    assert!(matches!(error, TrySendError::Full { .. }), "{error}");
    assert_eq!(
        outcomes.len(),
        0,
        "refused batch's token settled by the queue"
    );
    error.into_batch().ack.delivered();
    assert_eq!(outcomes.get("s", 2), Some(AckOutcome::Delivered));
    assert_eq!(rx.len(), 2);
}

#[tokio::test]
async fn byte_bound_makes_the_producer_wait_until_bytes_are_freed() {
    let config = QueueConfig::new("bytes", 100).with_max_bytes(3000);
    let (tx, rx) = ordered_queue(config, QueueMetrics::global("bytes")).unwrap();
    for seq in 0..2 {
        tx.try_send(batch("s", seq, 0, 1000, AckToken::detached()))
            .unwrap();
    }
    let third = tx
        .try_send(batch("s", 2, 0, 1000, AckToken::detached()))
        .unwrap_err();
    assert!(matches!(third, TrySendError::Full { .. }));
    let waiting = tx.send(third.into_batch());
    let taken = async {
        let first = rx.recv().await.unwrap();
        seq_of(&first.batch)
    };
    let (sent, taken) = futures::join!(waiting, taken);
    sent.unwrap();
    assert_eq!(taken, 0);
    assert_eq!(rx.len(), 2);
}

#[tokio::test]
async fn closing_fails_waiting_producers_and_keeps_what_is_queued() {
    let (tx, rx) =
        ordered_queue(QueueConfig::new("close", 1), QueueMetrics::global("close")).unwrap();
    tx.send(batch("s", 0, 0, 0, AckToken::detached()))
        .await
        .unwrap();
    let waiting = tx.send(batch("s", 1, 0, 0, AckToken::detached()));
    let close = async {
        tokio::task::yield_now().await;
        rx.close();
    };
    let (sent, ()) = futures::join!(waiting, close);
    let error = sent.unwrap_err();
    assert_eq!(seq_of(&error.batch), 1, "the refused batch comes back");
    assert_eq!(seq_of(&rx.recv().await.unwrap().batch), 0);
    assert!(rx.recv().await.is_none());
    assert!(tx.is_closed());
}

#[tokio::test]
async fn dropping_the_receiver_leaves_queued_batches_unacknowledged() {
    let metrics = QueueMetrics::global("drop");
    let (tx, rx) = ordered_queue(QueueConfig::new("drop", 4), metrics.clone()).unwrap();
    let outcomes = Outcomes::default();
    for seq in 0..3 {
        tx.try_send(batch("s", seq, 0, 0, outcomes.token("s", seq)))
            .unwrap();
    }
    drop(rx);
    assert_eq!(outcomes.count(AckOutcome::Abandoned), 3);
    assert_eq!(metrics.snapshot().unacknowledged, 3);
    assert!(
        tx.send(batch("s", 3, 0, 0, AckToken::detached()))
            .await
            .is_err()
    );
}

/// `reserve` is the cancel-safe wait: a dropped wait loses nothing, a held permit is a place,
/// a dropped permit gives it back.
#[tokio::test]
async fn reserve_waits_cancel_safely_and_permits_hold_places() {
    let (tx, rx) = ordered_queue(
        QueueConfig::new("permits", 2),
        QueueMetrics::global("permits"),
    )
    .unwrap();
    let outcomes = Outcomes::default();
    let first = tx.reserve().await.unwrap();
    tx.try_send(batch("s", 0, 0, 0, outcomes.token("s", 0)))
        .unwrap();
    // Full: one batch and one permit.
    let refused = tx
        .try_send(batch("s", 1, 0, 0, outcomes.token("s", 1)))
        .unwrap_err();
    assert!(matches!(refused, TrySendError::Full { .. }));
    // A wait for a place, given up: nothing is lost, no place is taken.
    tokio::select! {
        biased;
        _ = tx.reserve() => panic!("a full queue gave a place"),
        () = tokio::task::yield_now() => {}
    }
    drop(first);
    let second = tx.reserve().await.unwrap();
    second.send(refused.into_batch()).unwrap();
    assert_eq!(seq_of(&rx.recv().await.unwrap().batch), 0);
    assert_eq!(seq_of(&rx.recv().await.unwrap().batch), 1);

    let held = tx.reserve().await.unwrap();
    rx.close();
    let back = held
        .send(batch("s", 2, 0, 0, outcomes.token("s", 2)))
        .unwrap_err();
    assert_eq!(seq_of(&back.batch), 2);
    assert!(tx.reserve().await.is_err());
    assert!(
        outcomes.get("s", 2).is_none(),
        "the queue settled a batch it handed back"
    );
}
