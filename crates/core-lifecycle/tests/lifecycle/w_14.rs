//! W-14: backoff without jitter (thundering herd).

use std::collections::HashSet;
use std::time::Duration;

use surefoot_core_lifecycle::{Backoff, RetryPolicy};

#[test]
fn w_14_full_jitter_spreads_delays_over_the_whole_range() {
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    let ceiling = backoff.ceiling(5);
    assert_eq!(ceiling, Duration::from_millis(3_200));
    let delays: Vec<Duration> = (0..1_000).map(|_| backoff.delay(5)).collect();
    let distinct: HashSet<_> = delays.iter().collect();
    assert!(
        distinct.len() > 990,
        "only {} distinct delays",
        distinct.len()
    );
    assert!(delays.iter().all(|d| *d <= ceiling));
    assert!(
        delays.iter().any(|d| *d < ceiling / 10),
        "lower tenth never used"
    );
    assert!(
        delays.iter().any(|d| *d > ceiling * 9 / 10),
        "upper tenth never used"
    );
}

#[test]
fn w_14_clients_that_fail_together_do_not_retry_together() {
    let policy = RetryPolicy::new(Backoff::new(
        Duration::from_millis(50),
        Duration::from_secs(5),
    ))
    .with_max_attempts(6)
    .with_max_elapsed(Duration::from_secs(600));
    let schedules: HashSet<Vec<Duration>> = (0..100)
        .map(|_| policy.schedule(rand::rng()).collect())
        .collect();
    assert_eq!(schedules.len(), 100);
}
