#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};

use proptest::prelude::*;
use surefoot_core_model::{AckToken, SourceId};
use surefoot_reaction_queue::{QueueConfig, QueueMetrics, ordered_queue};

use common::{at_second, batch, seq_of};

const SOURCES: [&str; 3] = ["alpha", "beta", "gamma"];

/// An operation of the interleaving: enqueue the next event of a source, or dequeue one.
#[derive(Debug, Clone)]
enum Op {
    Enqueue(usize),
    Dequeue,
}

/// Each source's commit seconds, non-decreasing in position order, from a small range so that
/// many events share a timestamp.
fn source_times() -> impl Strategy<Value = Vec<Vec<i64>>> {
    prop::collection::vec(prop::collection::vec(0i64..4, 0..40), 3).prop_map(|sources| {
        sources
            .into_iter()
            .map(|steps| {
                steps
                    .into_iter()
                    .scan(0, |time, step| {
                        *time += step / 3; // mostly 0: equal timestamps
                        Some(*time)
                    })
                    .collect()
            })
            .collect()
    })
}

fn ops() -> impl Strategy<Value = (Vec<Vec<i64>>, Vec<Op>)> {
    source_times().prop_flat_map(|times| {
        let op = prop_oneof![
            3 => (0usize..3).prop_map(Op::Enqueue),
            1 => Just(Op::Dequeue),
        ];
        (Just(times), prop::collection::vec(op, 0..200))
    })
}

/// (time, rank, position) of an event.
type Key = (i64, usize, u64);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_interleaving_dequeues_in_source_order_and_time_rank_position_order((times, ops) in ops()) {
        let config = QueueConfig::new("prop", 10_000)
            .with_source_ranks(SOURCES.map(SourceId::new));
        let (tx, rx) = ordered_queue(config, QueueMetrics::global("prop")).unwrap();
        let mut next = [0usize; 3];
        let mut present: BTreeSet<Key> = BTreeSet::new();
        let mut last_seq: HashMap<usize, u64> = HashMap::new();
        let mut out = Vec::new();
        let check = |key: Key, present: &mut BTreeSet<Key>, last_seq: &mut HashMap<usize, u64>| {
            // The dequeued event is the smallest (time, rank, position) present...
            let smallest = present.pop_first().unwrap();
            assert_eq!(key, smallest);
            // ...and comes after everything dequeued before from its source.
            if let Some(previous) = last_seq.insert(key.1, key.2) {
                assert!(previous < key.2, "source {} went back from {previous} to {}", key.1, key.2);
            }
        };
        let ops = ops.into_iter().chain(std::iter::repeat_n(Op::Dequeue, 200));
        for op in ops {
            match op {
                Op::Enqueue(source) => {
                    let Some(second) = times[source].get(next[source]).copied() else { continue };
                    let seq = next[source] as u64;
                    next[source] += 1;
                    tx.try_send(batch(SOURCES[source], seq, second, 0, AckToken::detached())).unwrap();
                    present.insert((second, source, seq));
                }
                Op::Dequeue => {
                    let Ok(queued) = rx.try_recv() else {
                        assert!(present.is_empty());
                        continue;
                    };
                    let source = SOURCES.iter().position(|s| *s == queued.batch.source.as_str()).unwrap();
                    let second = queued.batch.commit_time.unwrap().timestamp() - at_second(0).timestamp();
                    let key = (second, source, seq_of(&queued.batch));
                    check(key, &mut present, &mut last_seq);
                    out.push(key);
                    queued.batch.ack.delivered();
                }
            }
        }
        prop_assert!(present.is_empty());
        let unique: HashSet<Key> = out.iter().copied().collect();
        prop_assert_eq!(unique.len(), out.len());
    }
}

#[tokio::test]
async fn hundred_thousand_events_sharing_timestamps_all_come_out_once_in_order() {
    const PER_SOURCE: u64 = 33_334;
    let config = QueueConfig::new("bulk", 64).with_source_ranks(SOURCES.map(SourceId::new));
    let metrics = QueueMetrics::global("bulk");
    let (tx, rx) = ordered_queue(config, metrics.clone()).unwrap();
    let produce = |source: &'static str, tx: surefoot_reaction_queue::QueueSender| async move {
        for seq in 0..PER_SOURCE {
            // A hundred events share each second.
            let second = i64::try_from(seq / 100).unwrap();
            tx.send(batch(source, seq, second, 0, AckToken::detached()))
                .await
                .unwrap();
        }
    };
    let consume = async {
        let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
        while let Some(queued) = rx.recv().await {
            seen.entry(queued.batch.source.to_string())
                .or_default()
                .push(seq_of(&queued.batch));
            queued.batch.ack.delivered();
        }
        seen
    };
    let (.., seen) = futures::join!(
        produce(SOURCES[0], tx.clone()),
        produce(SOURCES[1], tx.clone()),
        async move { produce(SOURCES[2], tx).await },
        consume,
    );
    for source in SOURCES {
        let got = &seen[source];
        let expected: Vec<u64> = (0..PER_SOURCE).collect();
        assert_eq!(
            got, &expected,
            "source {source}: missing, repeated or out of order"
        );
    }
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.enqueued, PER_SOURCE * 3);
    assert_eq!(snapshot.dequeued, PER_SOURCE * 3);
    assert_eq!(snapshot.dropped, 0);
    assert!(snapshot.max_depth <= 64);
}
