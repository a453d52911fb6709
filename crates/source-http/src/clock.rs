//! The wall clock the source reads, injectable so tests can step it back without touching the
//! system clock.

use std::fmt::Debug;

/// A wall clock in Unix milliseconds.
pub trait WallClock: Send + Sync + Debug {
    /// Milliseconds since the Unix epoch (0 before it).
    fn now_millis(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_millis(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            })
    }
}
