//! The retry loop.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::RetryPolicy;
use super::budget::RetryBudget;
use crate::error_class::{Classify, ErrorClass};
use crate::metrics::LifecycleMetrics;

/// Which budget a retry loop ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Budget {
    /// The attempt budget ([`RetryPolicy::max_attempts`]).
    Attempts,
    /// The time budget ([`RetryPolicy::max_elapsed`]): the next delay would have ended past it.
    Time,
    /// The [`RetryBudget`] shared with other callers was empty.
    Shared,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Budget::Attempts => "attempt",
            Budget::Time => "time",
            Budget::Shared => "shared retry",
        })
    }
}

/// Why a retry loop gave up. The last error is always the [`source`](StdError::source).
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E: StdError + 'static> {
    /// Every attempt failed with a retryable error until a budget ran out.
    #[error("`{operation}` failed after {attempts} attempts in {elapsed:?}; {budget} budget spent")]
    Exhausted {
        /// The operation, as named to [`Retry::new`].
        operation: Arc<str>,
        /// Attempts made.
        attempts: u32,
        /// Time since the first attempt began.
        elapsed: Duration,
        /// The budget that ran out.
        budget: Budget,
        /// The last attempt's error.
        #[source]
        last: E,
    },
    /// An attempt failed with an error that retrying cannot fix (permanent, configuration,
    /// cancelled); no further attempt was made.
    #[error("`{operation}` failed with a {class} error on attempt {attempts}; not retried")]
    NotRetryable {
        /// The operation.
        operation: Arc<str>,
        /// Attempts made, the failing one included.
        attempts: u32,
        /// The error's class.
        class: ErrorClass,
        /// The error.
        #[source]
        error: E,
    },
    /// The cancellation token fired while waiting before the next attempt.
    #[error("`{operation}` cancelled after {attempts} attempts")]
    Cancelled {
        /// The operation.
        operation: Arc<str>,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        last: E,
    },
}

impl<E: StdError + 'static> RetryError<E> {
    /// Attempts made before giving up.
    pub fn attempts(&self) -> u32 {
        match self {
            RetryError::Exhausted { attempts, .. }
            | RetryError::NotRetryable { attempts, .. }
            | RetryError::Cancelled { attempts, .. } => *attempts,
        }
    }

    /// The last attempt's error.
    pub fn last_error(&self) -> &E {
        match self {
            RetryError::Exhausted { last, .. }
            | RetryError::NotRetryable { error: last, .. }
            | RetryError::Cancelled { last, .. } => last,
        }
    }

    /// Consumes the error and returns the last attempt's error.
    pub fn into_last_error(self) -> E {
        match self {
            RetryError::Exhausted { last, .. }
            | RetryError::NotRetryable { error: last, .. }
            | RetryError::Cancelled { last, .. } => last,
        }
    }
}

impl<E: StdError + Classify + 'static> Classify for RetryError<E> {
    /// The last error's class, except [`ErrorClass::Cancelled`] when the loop was cancelled.
    fn class(&self) -> ErrorClass {
        match self {
            RetryError::Exhausted { last, .. } => last.class(),
            RetryError::NotRetryable { class, .. } => *class,
            RetryError::Cancelled { .. } => ErrorClass::Cancelled,
        }
    }
}

/// Runs an operation until it succeeds, fails with a non-retryable error, or a budget runs out.
///
/// ```
/// # use std::time::Duration;
/// # use surefoot_core_lifecycle::retry::{Backoff, Retry, RetryPolicy};
/// # use surefoot_core_lifecycle::{Classify, ErrorClass};
/// #[derive(Debug, thiserror::Error)]
/// #[error("connection reset")]
/// struct Reset;
/// impl Classify for Reset {
///     fn class(&self) -> ErrorClass { ErrorClass::Transient }
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let policy = RetryPolicy::new(Backoff::new(Duration::from_millis(10), Duration::from_secs(1)))
///     .with_max_attempts(3);
/// let retry = Retry::new("connect", policy);
/// let result = retry.run(|attempt| async move {
///     if attempt < 2 { Err(Reset) } else { Ok(attempt) }
/// }).await;
/// assert_eq!(result.unwrap(), 2);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Retry {
    operation: Arc<str>,
    policy: RetryPolicy,
    metrics: Option<LifecycleMetrics>,
    cancel: Option<CancellationToken>,
    budget: Option<RetryBudget>,
}

impl Retry {
    /// Retries `operation` (a name used in errors, logs and metrics) under `policy`.
    pub fn new(operation: impl Into<Arc<str>>, policy: RetryPolicy) -> Self {
        Self {
            operation: operation.into(),
            policy,
            metrics: None,
            cancel: None,
            budget: None,
        }
    }

    /// Counts retries in `surefoot.retries`.
    pub fn with_metrics(mut self, metrics: LifecycleMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Stops waiting (and gives up with [`RetryError::Cancelled`]) when `token` is cancelled.
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Also draws every retry from `budget`, shared with other callers; when it is empty the
    /// loop gives up with [`Budget::Shared`].
    pub fn with_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Calls `attempt(n)` for n = 0, 1, … until it succeeds or the loop gives up.
    ///
    /// An error is retried only if its class [is retryable](ErrorClass::is_retryable). Before
    /// retry `n` the loop sleeps a full-jitter delay from the policy's backoff; it gives up
    /// instead if that sleep would end past the time budget, or if the attempt budget is spent.
    ///
    /// Cancel safety: dropping the future drops the attempt in progress, if any; no state is
    /// kept between calls. The cancellation token only interrupts the sleep between attempts,
    /// never an attempt.
    pub async fn run<T, E, F, Fut>(&self, mut attempt: F) -> Result<T, RetryError<E>>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: StdError + Classify + 'static,
    {
        let started = Instant::now();
        let mut made: u32 = 0;
        if let Some(budget) = &self.budget {
            budget.deposit();
        }
        loop {
            let error = match attempt(made).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            made += 1;
            let class = error.class();
            if !class.is_retryable() {
                return Err(RetryError::NotRetryable {
                    operation: self.operation.clone(),
                    attempts: made,
                    class,
                    error,
                });
            }
            let delay = self.policy.backoff().delay(made - 1);
            let elapsed = started.elapsed();
            let budget = if made >= self.policy.max_attempts() {
                Some(Budget::Attempts)
            } else if elapsed.saturating_add(delay) > self.policy.max_elapsed() {
                Some(Budget::Time)
            } else if self
                .budget
                .as_ref()
                .is_some_and(|budget| !budget.withdraw())
            {
                Some(Budget::Shared)
            } else {
                None
            };
            if let Some(budget) = budget {
                tracing::warn!(operation = %self.operation, attempts = made, %budget, "giving up");
                return Err(RetryError::Exhausted {
                    operation: self.operation.clone(),
                    attempts: made,
                    elapsed,
                    budget,
                    last: error,
                });
            }
            tracing::debug!(operation = %self.operation, attempt = made, ?delay, %error, "retrying");
            if let Some(metrics) = &self.metrics {
                metrics.retry(&self.operation);
            }
            if !self.sleep(delay).await {
                return Err(RetryError::Cancelled {
                    operation: self.operation.clone(),
                    attempts: made,
                    last: error,
                });
            }
        }
    }

    /// Sleeps `delay`; false if cancelled first.
    async fn sleep(&self, delay: Duration) -> bool {
        match &self.cancel {
            None => {
                tokio::time::sleep(delay).await;
                true
            }
            Some(token) => tokio::select! {
                biased;
                () = token.cancelled() => false,
                () = tokio::time::sleep(delay) => true,
            },
        }
    }
}
