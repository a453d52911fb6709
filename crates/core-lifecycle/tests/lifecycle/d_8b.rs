//! D-8b: a connection retry may loop forever (no budget, no circuit breaker).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use surefoot_core_lifecycle::retry::Budget;
use surefoot_core_lifecycle::{
    Backoff, BreakerConfig, BreakerError, BreakerState, CircuitBreaker, Classify, ErrorClass,
    Retry, RetryBudget, RetryError, RetryPolicy,
};
use tokio::time::Instant;

use crate::common::Metrics;

#[derive(Debug, thiserror::Error)]
#[error("connection refused")]
struct Refused;

impl Classify for Refused {
    fn class(&self) -> ErrorClass {
        ErrorClass::Transient
    }
}

#[tokio::test(start_paused = true)]
async fn d_8b_retry_stops_at_its_budget_and_the_breaker_opens() {
    let metrics = Metrics::new();
    let breaker = CircuitBreaker::with_metrics(
        "publisher",
        BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(60),
            half_open_probes: 1,
        },
        metrics.metrics.clone(),
    );
    let policy = RetryPolicy::new(Backoff::new(
        Duration::from_millis(10),
        Duration::from_millis(100),
    ))
    .with_max_attempts(6)
    .with_max_elapsed(Duration::from_secs(30));
    let retry = Retry::new("publish", policy).with_metrics(metrics.metrics.clone());
    let calls = Arc::new(AtomicU32::new(0));

    let result: Result<(), _> = retry
        .run(|_attempt| {
            let calls = calls.clone();
            let breaker = breaker.clone();
            async move {
                breaker
                    .call(async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        Err::<(), _>(Refused)
                    })
                    .await
            }
        })
        .await;

    let error = result.unwrap_err();
    let RetryError::Exhausted {
        attempts,
        budget,
        last,
        ..
    } = &error
    else {
        panic!("{error}");
    };
    assert_eq!((*attempts, *budget), (6, Budget::Attempts));
    assert!(
        matches!(last, BreakerError::Open { .. }),
        "rejected, not failed: {last}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the breaker stopped the calls"
    );
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(
        metrics.sum("surefoot.retries", &[("operation", "publish")]),
        5
    );
    assert_eq!(
        metrics.sum("surefoot.breaker.transitions", &[("to", "open")]),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn d_8b_breaker_half_opens_and_closes_on_a_successful_probe() {
    let breaker = CircuitBreaker::new(
        "db",
        BreakerConfig {
            failure_threshold: 1,
            open_for: Duration::from_secs(10),
            half_open_probes: 1,
        },
    );
    let failed = breaker.call(async { Err::<(), _>(Refused) }).await;
    assert!(matches!(failed, Err(BreakerError::Failed { .. })));
    let rejected = breaker.call(async { Ok::<(), Refused>(()) }).await;
    let Err(BreakerError::Open { retry_after, .. }) = rejected else {
        panic!("{rejected:?}");
    };
    assert_eq!(retry_after, Duration::from_secs(10));
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    breaker.call(async { Ok::<(), Refused>(()) }).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn d_8b_retry_stops_at_its_time_budget() {
    let policy = RetryPolicy::new(Backoff::new(
        Duration::from_millis(100),
        Duration::from_secs(1),
    ))
    .with_max_attempts(u32::MAX)
    .with_max_elapsed(Duration::from_secs(5));
    let started = Instant::now();
    let result = Retry::new("connect", policy)
        .run(|_| async { Err::<(), _>(Refused) })
        .await;
    let Err(RetryError::Exhausted {
        budget, elapsed, ..
    }) = result
    else {
        panic!("{result:?}");
    };
    assert_eq!(budget, Budget::Time);
    assert!(elapsed <= Duration::from_secs(5));
    assert!(started.elapsed() <= Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn d_8b_shared_retry_budget_bounds_retries_across_callers() {
    let budget = RetryBudget::new(3, 0.0);
    let policy = RetryPolicy::new(Backoff::new(
        Duration::from_millis(1),
        Duration::from_millis(10),
    ))
    .with_max_attempts(10);
    let calls = Arc::new(AtomicU32::new(0));
    let mut budgets = Vec::new();
    for _ in 0..5 {
        let calls = calls.clone();
        let error = Retry::new("fan-out", policy)
            .with_budget(budget.clone())
            .run(move |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(Refused) }
            })
            .await
            .unwrap_err();
        let RetryError::Exhausted { budget, .. } = error else {
            panic!("{error}");
        };
        budgets.push(budget);
    }
    assert!(budgets.iter().all(|b| *b == Budget::Shared));
    // Five first attempts, and only the three retries the shared budget held.
    assert_eq!(calls.load(Ordering::SeqCst), 5 + 3);
    assert_eq!(budget.available(), 0);
}

#[test]
fn d_8b_ceiling_does_not_overflow_to_the_cap() {
    // Found by the property below: a zero base must stay zero past 2^31.
    let zero = Backoff::new(Duration::ZERO, Duration::from_millis(1));
    assert_eq!(zero.ceiling(32), Duration::ZERO);
    let big = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    assert_eq!(big.ceiling(200), Duration::from_secs(60));
    assert_eq!(big.ceiling(3), Duration::from_secs(8));
}

fn expected_ceiling(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let scaled = base.as_nanos().saturating_mul(1u128 << attempt.min(100));
    Duration::from_nanos(u64::try_from(scaled.min(cap.as_nanos())).unwrap_or(u64::MAX))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn d_8b_every_backoff_delay_is_within_zero_and_its_ceiling(
        base_ms in 0u64..10_000,
        cap_ms in 0u64..600_000,
        attempt in 0u32..80,
        seed: u64,
    ) {
        let (base, cap) = (Duration::from_millis(base_ms), Duration::from_millis(cap_ms));
        let backoff = Backoff::new(base, cap);
        let ceiling = expected_ceiling(base, cap, attempt);
        prop_assert_eq!(backoff.ceiling(attempt), ceiling);
        let delay = backoff.delay_with(attempt, &mut StdRng::seed_from_u64(seed));
        prop_assert!(delay <= ceiling, "{delay:?} > {ceiling:?}");
    }

    #[test]
    fn d_8b_schedule_total_never_exceeds_max_elapsed(
        base_ms in 0u64..5_000,
        cap_ms in 0u64..60_000,
        max_attempts in 1u32..50,
        max_elapsed_ms in 0u64..120_000,
        seed: u64,
    ) {
        let (base, cap) = (Duration::from_millis(base_ms), Duration::from_millis(cap_ms));
        let policy = RetryPolicy::new(Backoff::new(base, cap))
            .with_max_attempts(max_attempts)
            .with_max_elapsed(Duration::from_millis(max_elapsed_ms));
        let delays: Vec<Duration> = policy.schedule(StdRng::seed_from_u64(seed)).collect();
        prop_assert!(delays.len() < max_attempts as usize);
        for (n, delay) in delays.iter().enumerate() {
            prop_assert!(*delay <= expected_ceiling(base, cap, n as u32));
        }
        prop_assert!(delays.iter().sum::<Duration>() <= policy.max_elapsed());
    }

    #[test]
    fn d_8b_retry_loop_never_runs_past_max_elapsed(
        base_ms in 1u64..2_000,
        cap_ms in 1u64..20_000,
        max_attempts in 1u32..40,
        max_elapsed_ms in 0u64..60_000,
        work_ms in 0u64..500,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let policy = RetryPolicy::new(Backoff::new(Duration::from_millis(base_ms), Duration::from_millis(cap_ms)))
            .with_max_attempts(max_attempts)
            .with_max_elapsed(Duration::from_millis(max_elapsed_ms));
        let (attempts, waited, worked) = runtime.block_on(async {
            let started = Instant::now();
            let mut worked = Duration::ZERO;
            let result = Retry::new("op", policy)
                .run(|_| {
                    worked += Duration::from_millis(work_ms);
                    async move {
                        tokio::time::sleep(Duration::from_millis(work_ms)).await;
                        Err::<(), _>(Refused)
                    }
                })
                .await;
            (result.unwrap_err().attempts(), started.elapsed(), worked)
        });
        prop_assert!(attempts <= max_attempts);
        // Time spent waiting between attempts (total minus time in the attempts themselves,
        // the last one included) never exceeds the budget.
        prop_assert!(waited - worked <= policy.max_elapsed());
        // And no wait starts that would end past the budget.
        let before_last = waited - Duration::from_millis(work_ms);
        prop_assert!(before_last <= policy.max_elapsed());
    }
}
