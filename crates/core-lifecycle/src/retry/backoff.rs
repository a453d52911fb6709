//! Exponential backoff with full jitter, and the schedule of delays a retry policy allows.
//!
//! Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): the delay before
//! retry `n` (0-based) is drawn uniformly from `[0, min(cap, base * 2^n)]`. Clients that failed
//! together do not retry together (FINDINGS W-14).

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with full jitter: delay `n` lies in `[0, min(cap, base * 2^n)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// Backoff starting at `base` and never above `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap }
    }

    /// The first ceiling.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The largest delay ever returned.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The largest delay for retry `attempt` (0-based): `min(cap, base * 2^attempt)`, without
    /// overflow.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let base = self.base.as_nanos();
        let scaled = match 1u128.checked_shl(attempt) {
            Some(factor) => base.saturating_mul(factor),
            None if base == 0 => 0,
            None => u128::MAX,
        };
        if scaled >= self.cap.as_nanos() {
            self.cap
        } else {
            u64::try_from(scaled).map_or(self.cap, Duration::from_nanos)
        }
    }

    /// A delay for retry `attempt` drawn uniformly from `[0, ceiling(attempt)]` with `rng`.
    pub fn delay_with(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=ceiling))
    }

    /// [`Self::delay_with`] using the thread-local random generator.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, &mut rand::rng())
    }
}

impl Default for Backoff {
    /// 100 ms base, 10 s cap.
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(10))
    }
}

/// How long and how often to retry: a [`Backoff`], an attempt budget and a total time budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    backoff: Backoff,
    max_attempts: u32,
    max_elapsed: Duration,
}

impl RetryPolicy {
    /// At most 5 attempts within 30 s, waiting per `backoff` between them.
    pub fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            max_attempts: 5,
            max_elapsed: Duration::from_secs(30),
        }
    }

    /// At most `attempts` attempts in all (the first one included); `0` behaves like `1`.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Never wait past `elapsed` since the first attempt began: a delay that would end later
    /// is not taken and the retry loop gives up instead.
    pub fn with_max_elapsed(mut self, elapsed: Duration) -> Self {
        self.max_elapsed = elapsed;
        self
    }

    /// The backoff.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// The attempt budget.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The time budget.
    pub fn max_elapsed(&self) -> Duration {
        self.max_elapsed
    }

    /// The delays this policy allows when every attempt fails instantly, drawn with `rng`:
    /// at most `max_attempts - 1` delays, delay `n` within `[0, backoff.ceiling(n)]`, their sum
    /// at most `max_elapsed`. The retry loop applies the same rules to the real clock.
    pub fn schedule<R: Rng>(&self, rng: R) -> Schedule<R> {
        Schedule {
            policy: *self,
            rng,
            retry: 0,
            total: Duration::ZERO,
            done: false,
        }
    }
}

impl Default for RetryPolicy {
    /// [`RetryPolicy::new`] with [`Backoff::default`].
    fn default() -> Self {
        Self::new(Backoff::default())
    }
}

/// Iterator over the delays of a [`RetryPolicy`]; see [`RetryPolicy::schedule`].
#[derive(Debug)]
pub struct Schedule<R> {
    policy: RetryPolicy,
    rng: R,
    retry: u32,
    total: Duration,
    done: bool,
}

impl<R: Rng> Iterator for Schedule<R> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.done || self.retry.saturating_add(1) >= self.policy.max_attempts {
            self.done = true;
            return None;
        }
        let delay = self.policy.backoff.delay_with(self.retry, &mut self.rng);
        let total = self.total.saturating_add(delay);
        if total > self.policy.max_elapsed {
            self.done = true;
            return None;
        }
        self.retry += 1;
        self.total = total;
        Some(delay)
    }
}
