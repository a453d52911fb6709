//! A circuit breaker: closed, open, half-open.
//!
//! Closed, calls pass; `failure_threshold` consecutive failures open it. Open, calls are
//! rejected at once with [`BreakerError::Open`] (not [`BreakerError::Failed`]: the caller can
//! tell "not tried" from "tried and failed"). After `open_for` it is half-open: up to
//! `half_open_probes` calls go through; a success closes it, a failure opens it again.
//!
//! Only errors whose class [is retryable](crate::ErrorClass::is_retryable) (transient, timeout)
//! count as failures: a permanent error means the dependency answered, and a cancelled call says
//! nothing about it.
//!
//! Lock: one `std::sync::Mutex` around the state, taken briefly before and after the call and
//! never across an `.await`.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::error_class::{Classify, ErrorClass};
use crate::metrics::LifecycleMetrics;

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls pass.
    Closed,
    /// Calls are rejected.
    Open,
    /// A limited number of probe calls pass.
    HalfOpen,
}

impl BreakerState {
    fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// The error of a call through a breaker.
#[derive(Debug, thiserror::Error)]
pub enum BreakerError<E: std::error::Error + 'static> {
    /// The breaker is open; the call was not made.
    #[error("circuit breaker `{breaker}` is open; call rejected (retry after {retry_after:?})")]
    Open {
        /// The breaker's name.
        breaker: Arc<str>,
        /// Time until the breaker lets a probe through.
        retry_after: Duration,
    },
    /// The call was made and failed.
    #[error("call through circuit breaker `{breaker}` failed")]
    Failed {
        /// The breaker's name.
        breaker: Arc<str>,
        /// The call's error.
        #[source]
        error: E,
    },
}

impl<E: std::error::Error + Classify + 'static> Classify for BreakerError<E> {
    /// `Open` is [`ErrorClass::Transient`] (it closes again); `Failed` is the error's class.
    fn class(&self) -> ErrorClass {
        match self {
            BreakerError::Open { .. } => ErrorClass::Transient,
            BreakerError::Failed { error, .. } => error.class(),
        }
    }
}

/// Thresholds of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (at least 1).
    pub failure_threshold: u32,
    /// How long it stays open before letting probes through.
    pub open_for: Duration,
    /// Concurrent probe calls allowed while half-open (at least 1).
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    /// 5 failures, 30 s open, 1 probe.
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probes: u32 },
}

/// A circuit breaker. Cloning gives another handle to the same breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: Arc<str>,
    config: BreakerConfig,
    metrics: Option<LifecycleMetrics>,
    state: Mutex<State>,
}

/// What the outcome of a call means to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    Neutral,
}

impl CircuitBreaker {
    /// A closed breaker named `name` (used in errors, logs and metrics).
    pub fn new(name: impl Into<Arc<str>>, config: BreakerConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                config,
                metrics: None,
                state: Mutex::new(State::Closed { failures: 0 }),
            }),
        }
    }

    /// A breaker that counts its state changes in `surefoot.breaker.transitions`.
    pub fn with_metrics(
        name: impl Into<Arc<str>>,
        config: BreakerConfig,
        metrics: LifecycleMetrics,
    ) -> Self {
        let mut breaker = Self::new(name, config);
        if let Some(inner) = Arc::get_mut(&mut breaker.inner) {
            inner.metrics = Some(metrics);
        }
        breaker
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The current state. An open breaker whose time is up reports `HalfOpen`.
    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Runs `call` if the breaker lets it through, and records its outcome.
    ///
    /// Cancel safety: if the returned future is dropped while `call` runs, the call counts as
    /// neither success nor failure and its half-open probe slot is released.
    pub async fn call<T, E, Fut>(&self, call: Fut) -> Result<T, BreakerError<E>>
    where
        Fut: Future<Output = Result<T, E>>,
        E: std::error::Error + Classify + 'static,
    {
        let mut permit = self.admit().map_err(|retry_after| BreakerError::Open {
            breaker: self.inner.name.clone(),
            retry_after,
        })?;
        let result = call.await;
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(error) if error.class().is_retryable() => Outcome::Failure,
            Err(_) => Outcome::Neutral,
        };
        permit.settle(outcome);
        result.map_err(|error| BreakerError::Failed {
            breaker: self.inner.name.clone(),
            error,
        })
    }

    /// Lets a call through or says how long until it would.
    fn admit(&self) -> Result<Permit<'_>, Duration> {
        let now = Instant::now();
        let mut changed = None;
        let admitted = {
            let mut state = self.lock();
            match *state {
                State::Closed { .. } => Ok(false),
                State::Open { until } if now < until => Err(until - now),
                State::Open { .. } => {
                    *state = State::HalfOpen { probes: 1 };
                    changed = Some(BreakerState::HalfOpen);
                    Ok(true)
                }
                State::HalfOpen { ref mut probes } => {
                    if *probes < self.inner.config.half_open_probes.max(1) {
                        *probes += 1;
                        Ok(true)
                    } else {
                        Err(Duration::ZERO)
                    }
                }
            }
        };
        self.announce(changed);
        admitted.map(|probe| Permit {
            breaker: self,
            probe,
            settled: false,
        })
    }

    fn settle(&self, probe: bool, outcome: Outcome) {
        let config = self.inner.config;
        let changed = {
            let mut state = self.lock();
            let next = match (&*state, outcome) {
                (State::HalfOpen { .. }, Outcome::Success) if probe => {
                    Some(State::Closed { failures: 0 })
                }
                (State::HalfOpen { .. }, Outcome::Failure) if probe => Some(State::Open {
                    until: Instant::now() + config.open_for,
                }),
                (State::HalfOpen { probes }, Outcome::Neutral) if probe => Some(State::HalfOpen {
                    probes: probes.saturating_sub(1),
                }),
                (State::Closed { .. }, Outcome::Success) => Some(State::Closed { failures: 0 }),
                (State::Closed { failures }, Outcome::Failure) => {
                    let failures = failures + 1;
                    Some(if failures >= config.failure_threshold.max(1) {
                        State::Open {
                            until: Instant::now() + config.open_for,
                        }
                    } else {
                        State::Closed { failures }
                    })
                }
                _ => None,
            };
            let before = kind(&state);
            if let Some(next) = next {
                *state = next;
            }
            let after = kind(&state);
            (before != after).then_some(after)
        };
        self.announce(changed);
    }

    fn announce(&self, changed: Option<BreakerState>) {
        let Some(to) = changed else { return };
        tracing::info!(breaker = %self.inner.name, to = to.name(), "circuit breaker state change");
        if let Some(metrics) = &self.inner.metrics {
            metrics.breaker_transition(&self.inner.name, to.name());
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update writes a complete state, so a panic elsewhere cannot leave it broken.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn kind(state: &State) -> BreakerState {
    match state {
        State::Closed { .. } => BreakerState::Closed,
        State::Open { .. } => BreakerState::Open,
        State::HalfOpen { .. } => BreakerState::HalfOpen,
    }
}

/// A call let through; settles as neutral if dropped unsettled.
struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    settled: bool,
}

impl Permit<'_> {
    fn settle(&mut self, outcome: Outcome) {
        self.settled = true;
        self.breaker.settle(self.probe, outcome);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.settle(self.probe, Outcome::Neutral);
        }
    }
}
