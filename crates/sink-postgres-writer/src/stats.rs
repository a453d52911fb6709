//! Live figures the health endpoint reports, shared between the writer and the relay. Atomics,
//! and one mutex held only to store or copy a string, never across an `.await`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Shared live figures.
#[derive(Debug, Default)]
pub(crate) struct LiveStats {
    /// Unix milliseconds of the last commit; 0 before the first.
    last_commit_ms: AtomicI64,
    /// Tasks waiting for a pooled connection now.
    waiting: AtomicU64,
    /// Microseconds the last acquire took.
    last_acquire_us: AtomicU64,
    /// The last sink transaction failed and no later one succeeded.
    failing: AtomicBool,
    /// The relay's last Redis round failed.
    redis_down: AtomicBool,
    /// Why the relay's last round left a message unsent that Redis refused, until a
    /// round publishes everything it read.
    outbox_refused: Mutex<Option<String>>,
}

impl LiveStats {
    pub(crate) fn committed(&self) {
        self.last_commit_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Release);
        self.failing.store(false, Ordering::Release);
    }

    pub(crate) fn failed(&self) {
        self.failing.store(true, Ordering::Release);
    }

    pub(crate) fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    pub(crate) fn last_commit(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        match self.last_commit_ms.load(Ordering::Acquire) {
            0 => None,
            ms => chrono::DateTime::from_timestamp_millis(ms),
        }
    }

    pub(crate) fn acquire_started(&self) {
        self.waiting.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn acquire_ended(&self, took: Duration) {
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.last_acquire_us.store(micros, Ordering::Release);
    }

    pub(crate) fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Acquire)
    }

    pub(crate) fn last_acquire(&self) -> Duration {
        Duration::from_micros(self.last_acquire_us.load(Ordering::Acquire))
    }

    pub(crate) fn set_redis_down(&self, down: bool) {
        self.redis_down.store(down, Ordering::Release);
    }

    pub(crate) fn redis_down(&self) -> bool {
        self.redis_down.load(Ordering::Acquire)
    }
}

impl LiveStats {
    pub(crate) fn set_outbox_refused(&self, reason: Option<String>) {
        // A poisoned lock only means a panic elsewhere while storing a string: the value is
        // still a whole `Option<String>`, so it is used as it is.
        let mut slot = self
            .outbox_refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = reason;
    }

    pub(crate) fn outbox_refused(&self) -> Option<String> {
        self.outbox_refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
