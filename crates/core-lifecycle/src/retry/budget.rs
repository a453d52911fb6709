//! A retry budget shared by many retry loops (the idea of tower's retry budget).
//!
//! Each loop's own attempt budget bounds one caller; when a dependency goes down, a thousand
//! callers each retrying five times still multiply its load by five. A shared budget bounds
//! the retries of all of them together: every call deposits `ratio` of a retry, every retry
//! withdraws one, and the balance never exceeds `max_balance` (which is also where it starts,
//! as a reserve for callers that have not yet deposited anything).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Thousandths of a retry, so the balance can live in an atomic without a lock.
const MILLI: u64 = 1_000;

/// A retry budget shared by clones. See the module docs.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    balance: AtomicU64,
    max: u64,
    deposit: u64,
}

impl RetryBudget {
    /// A full budget of `max_balance` retries, refilled by `ratio` of a retry per call
    /// (`0.1` allows one retry per ten calls in steady state; values are clamped to `0..=1000`).
    pub fn new(max_balance: u32, ratio: f64) -> Self {
        let max = u64::from(max_balance) * MILLI;
        // Clamped first, so the conversion cannot overflow; rounding to thousandths is intended.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let deposit = (ratio.clamp(0.0, 1_000.0) * MILLI as f64).round() as u64;
        Self {
            inner: Arc::new(Inner {
                balance: AtomicU64::new(max),
                max,
                deposit,
            }),
        }
    }

    /// Whole retries available now.
    pub fn available(&self) -> u64 {
        self.inner.balance.load(Ordering::Acquire) / MILLI
    }

    /// Records a call (its first attempt).
    pub(crate) fn deposit(&self) {
        let Inner { max, deposit, .. } = *self.inner;
        // The closure always returns `Some`, so this cannot fail.
        let _always_ok =
            self.inner
                .balance
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |balance| {
                    Some(balance.saturating_add(deposit).min(max))
                });
    }

    /// Takes one retry from the budget; false if there is none.
    pub(crate) fn withdraw(&self) -> bool {
        self.inner
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |balance| {
                balance.checked_sub(MILLI)
            })
            .is_ok()
    }
}
