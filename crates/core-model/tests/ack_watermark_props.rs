//! Property tests of the acknowledgement watermark: under any interleaving of settle-delivered,
//! settle-failed and drop-unsettled across the clones of many batches, the watermark never passes
//! an unsettled or failed batch, never goes backwards, and reaches the last position once every
//! batch is delivered.

use proptest::prelude::*;
use surefoot_core_model::{AckToken, AckTracker, Lsn, Position};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Settle {
    Delivered,
    Failed,
    Drop,
}

#[derive(Debug, Clone)]
struct Plan {
    /// Per batch: (changes in the batch, how each holder settles).
    batches: Vec<(u32, Vec<Settle>)>,
    /// The order in which holders act: indexes into the flattened holder list.
    order: Vec<usize>,
}

fn settle_strategy(all_delivered: bool) -> BoxedStrategy<Settle> {
    if all_delivered {
        Just(Settle::Delivered).boxed()
    } else {
        prop_oneof![
            8 => Just(Settle::Delivered),
            1 => Just(Settle::Failed),
            1 => Just(Settle::Drop),
        ]
        .boxed()
    }
}

fn plan_strategy() -> impl Strategy<Value = Plan> {
    any::<bool>()
        .prop_flat_map(|all_delivered| {
            let batch = (
                1u32..4,
                prop::collection::vec(settle_strategy(all_delivered), 1..5),
            );
            prop::collection::vec(batch, 1..24)
        })
        .prop_flat_map(|batches| {
            let holders: usize = batches.iter().map(|(_, settles)| settles.len()).sum();
            let order = Just((0..holders).collect::<Vec<_>>()).prop_shuffle();
            (Just(batches), order)
        })
        .prop_map(|(batches, order)| Plan { batches, order })
}

/// Batch `i` of a plan: transaction `i + 1`, with `changes` rows at ordinals 0..changes.
fn range(index: usize, changes: u32) -> (Position, Position) {
    let lsn = Lsn(0x1000 + index as u64 * 0x100);
    (
        Position::postgres(lsn, 0),
        Position::postgres(lsn, changes - 1),
    )
}

struct Model {
    /// Per batch: holders not yet settled, and whether any settled badly.
    remaining: Vec<usize>,
    bad: Vec<bool>,
    ranges: Vec<(Position, Position)>,
}

impl Model {
    fn expected_watermark(&self) -> Option<Position> {
        let delivered_prefix = self
            .remaining
            .iter()
            .zip(&self.bad)
            .take_while(|(remaining, bad)| **remaining == 0 && !**bad)
            .count();
        delivered_prefix
            .checked_sub(1)
            .map(|last| self.ranges[last].1)
    }

    /// Batches the watermark must not pass: registered and unsettled, or settled badly.
    fn blocking(&self, registered: usize) -> impl Iterator<Item = Position> + '_ {
        (0..registered)
            .filter(|&i| self.remaining[i] > 0 || self.bad[i])
            .map(|i| self.ranges[i].0)
    }
}

fn run(plan: &Plan) -> Result<(), TestCaseError> {
    let tracker = AckTracker::new(None);
    let holders: Vec<(usize, Settle)> = plan
        .batches
        .iter()
        .enumerate()
        .flat_map(|(batch, (_, settles))| settles.iter().map(move |settle| (batch, *settle)))
        .collect();
    let mut model = Model {
        remaining: plan.batches.iter().map(|(_, s)| s.len()).collect(),
        bad: vec![false; plan.batches.len()],
        ranges: plan
            .batches
            .iter()
            .enumerate()
            .map(|(i, (changes, _))| range(i, *changes))
            .collect(),
    };
    let mut tokens: Vec<Option<AckToken>> = holders.iter().map(|_| None).collect();
    let mut registered = 0;
    let mut previous = None;
    for &holder in &plan.order {
        let (batch, settle) = holders[holder];
        // Register batches in order, lazily, so registrations interleave with settlements.
        while registered <= batch {
            let (first, last) = model.ranges[registered];
            let root = tracker
                .register(first, last)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let clones = plan.batches[registered].1.len();
            let base = holders
                .iter()
                .position(|(b, _)| *b == registered)
                .unwrap_or(0);
            for slot in &mut tokens[base + 1..base + clones] {
                *slot = Some(root.clone());
            }
            tokens[base] = Some(root);
            registered += 1;
        }
        let token = tokens[holder]
            .take()
            .ok_or_else(|| TestCaseError::fail("holder acted twice"))?;
        match settle {
            Settle::Delivered => token.delivered(),
            Settle::Failed => token.failed(),
            Settle::Drop => drop(token),
        }
        model.remaining[batch] -= 1;
        model.bad[batch] |= settle != Settle::Delivered;

        let watermark = tracker.watermark();
        prop_assert_eq!(watermark, model.expected_watermark());
        prop_assert!(
            watermark >= previous,
            "watermark went backwards: {:?} -> {:?}",
            previous,
            watermark
        );
        if let Some(watermark) = watermark {
            for blocking in model.blocking(registered) {
                prop_assert!(
                    watermark < blocking,
                    "watermark {} passed {}",
                    watermark,
                    blocking
                );
            }
        }
        previous = watermark;
    }
    if !model.bad.iter().any(|bad| *bad) {
        let last = model.ranges.last().map(|(_, last)| *last);
        prop_assert_eq!(tracker.watermark(), last);
        prop_assert_eq!(tracker.snapshot().in_flight(), 0);
    } else {
        prop_assert!(tracker.snapshot().failure().is_some());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn watermark_covers_exactly_the_delivered_prefix(plan in plan_strategy()) {
        run(&plan)?;
    }
}
