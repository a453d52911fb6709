//! Property tests of the status machine against the transition table.

use proptest::prelude::*;
use surefoot_core_lifecycle::status::TRANSITIONS;
use surefoot_core_lifecycle::{Status, StatusMachine, TransitionError};

fn status() -> impl Strategy<Value = Status> {
    prop::sample::select(Status::ALL.to_vec())
}

/// Every non-empty subset of statuses as a `&'static` slice, so it can be an `expected` set.
fn expected_sets() -> Vec<&'static [Status]> {
    (1u32..32)
        .map(|mask| {
            let set: Vec<Status> = Status::ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, s)| *s)
                .collect();
            &*Box::leak(set.into_boxed_slice())
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn status_machine_follows_the_table(
        ops in prop::collection::vec((0usize..31, status()), 0..64),
    ) {
        let sets = expected_sets();
        let machine = StatusMachine::new(Status::Stopped);
        let mut watch = machine.subscribe();
        let mut model = Status::Stopped;
        for (set, to) in ops {
            let expected = sets[set];
            let result = machine.transition_from(expected, to);
            let allowed = expected.iter().all(|from| TRANSITIONS.contains(&(*from, to)));
            match result {
                Ok(left) => {
                    prop_assert!(allowed && expected.contains(&model));
                    prop_assert_eq!(left, model);
                    prop_assert!(left.can_transition_to(to));
                    model = to;
                }
                Err(TransitionError::NotAllowed { from, to: refused }) => {
                    prop_assert!(!allowed);
                    prop_assert!(!from.can_transition_to(refused));
                }
                Err(TransitionError::Conflict { actual, .. }) => {
                    prop_assert!(allowed && !expected.contains(&model));
                    prop_assert_eq!(actual, model);
                }
            }
            prop_assert_eq!(machine.current(), model);
            prop_assert_eq!(*watch.borrow_and_update(), model);
        }
    }

    #[test]
    fn only_listed_pairs_are_transitions(from in status(), to in status()) {
        let machine = StatusMachine::new(from);
        let result = machine.transition(from, to);
        prop_assert_eq!(result.is_ok(), TRANSITIONS.contains(&(from, to)));
        // Failed is reachable exactly from the active states.
        if to == Status::Failed {
            prop_assert_eq!(from.can_transition_to(to), from.is_active());
        }
    }
}
