//! What a pool reports: its numbers and whether it is healthy.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::{PoolGate, lock};

/// Whether a pool is serving normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolHealth {
    /// Operations get a connection without waiting past the acquire timeout.
    Ok,
    /// Every slot is in use and operations are queued behind them, or one gave up recently
    /// (within `degraded_for`).
    Degraded,
    /// The pool was closed.
    Closed,
}

/// A snapshot of a pool (FINDINGS S-2, S-7): served as JSON by [`crate::health`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStats {
    /// The pool's name.
    pub name: String,
    /// Health, derived from the numbers below.
    pub health: PoolHealth,
    /// Operations allowed in flight at once.
    pub size: usize,
    /// Operations in flight now.
    pub in_use: usize,
    /// Free slots.
    pub idle: usize,
    /// Operations waiting for a slot now.
    pub waiting: usize,
    /// Open driver connections, when the driver keeps its own pool.
    pub connections: Option<usize>,
    /// Idle driver connections, when the driver keeps its own pool.
    pub idle_connections: Option<usize>,
    /// Operations admitted so far.
    pub acquired: u64,
    /// Operations that gave up waiting so far.
    pub exhausted: u64,
    /// Mean wait for a slot, in microseconds.
    pub acquire_micros_mean: u64,
    /// Longest wait for a slot, in microseconds.
    pub acquire_micros_max: u64,
    /// The configured acquire timeout, in milliseconds.
    pub acquire_timeout_ms: u64,
}

pub(super) fn snapshot(gate: &PoolGate, connections: Option<(usize, usize)>) -> PoolStats {
    let inner = &gate.inner;
    let size = inner.config.size;
    let idle = inner.permits.available_permits().min(size);
    let waiting = inner.waiting.load(Ordering::SeqCst);
    let acquired = inner.acquired.load(Ordering::Relaxed);
    let total = inner.acquire_micros_total.load(Ordering::Relaxed);
    let recently_exhausted =
        lock(&inner.last_exhausted).is_some_and(|at| at.elapsed() < inner.config.degraded_for);
    let health = if gate.is_closed() {
        PoolHealth::Closed
    } else if (waiting > 0 && idle == 0) || recently_exhausted {
        PoolHealth::Degraded
    } else {
        PoolHealth::Ok
    };
    PoolStats {
        name: inner.name.clone(),
        health,
        size,
        in_use: if gate.is_closed() { 0 } else { size - idle },
        idle,
        waiting,
        connections: connections.map(|(open, _)| open),
        idle_connections: connections.map(|(_, idle)| idle),
        acquired,
        exhausted: inner.exhausted.load(Ordering::Relaxed),
        acquire_micros_mean: total.checked_div(acquired).unwrap_or(0),
        acquire_micros_max: inner.acquire_micros_max.load(Ordering::Relaxed),
        acquire_timeout_ms: millis(inner.config.acquire_timeout),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
