//! The pool gate every backend operation passes: bounded concurrency, a bounded wait, stats.
//!
//! A backend with `size` connections admits `size` operations at once. An operation that finds
//! none free waits up to the acquire timeout, then fails with
//! [`crate::StoreError::PoolExhausted`], counts
//! `surefoot.session_store.pool.exhausted` and marks the pool degraded for a while (FINDINGS
//! S-2). Waiters are counted, so health shows them while they wait.

mod config;
mod stats;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

pub use config::PoolConfig;
pub use stats::{PoolHealth, PoolStats};

use crate::StoreError;
use crate::metrics::StoreMetrics;

/// Admission to a backend's connections. Cloning gives another handle to the same gate.
#[derive(Debug, Clone)]
pub struct PoolGate {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    config: PoolConfig,
    permits: Semaphore,
    waiting: AtomicUsize,
    acquired: AtomicU64,
    exhausted: AtomicU64,
    acquire_micros_total: AtomicU64,
    acquire_micros_max: AtomicU64,
    last_exhausted: std::sync::Mutex<Option<Instant>>,
    closed: AtomicBool,
    metrics: StoreMetrics,
}

impl PoolGate {
    /// A gate for the pool `name` (e.g. `redis`) with `config.size` permits.
    pub fn new(name: impl Into<String>, config: PoolConfig) -> Self {
        let name = name.into();
        let metrics = StoreMetrics::global(&name);
        Self {
            inner: Arc::new(Inner {
                permits: Semaphore::new(config.size),
                name,
                config,
                waiting: AtomicUsize::new(0),
                acquired: AtomicU64::new(0),
                exhausted: AtomicU64::new(0),
                acquire_micros_total: AtomicU64::new(0),
                acquire_micros_max: AtomicU64::new(0),
                last_exhausted: std::sync::Mutex::new(None),
                closed: AtomicBool::new(false),
                metrics,
            }),
        }
    }

    /// The pool's settings.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// Runs `op` once a permit is free, within the operation timeout.
    ///
    /// Fails with `PoolExhausted` if no permit frees up within the acquire timeout, `Closed`
    /// after [`PoolGate::close`], `Timeout` if `op` runs too long. Cancel-safe: dropping the
    /// future gives the permit back and stops counting it as waiting.
    pub async fn run<T, Fut>(&self, operation: &'static str, op: Fut) -> Result<T, StoreError>
    where
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let inner = &self.inner;
        let started = Instant::now();
        inner.waiting.fetch_add(1, Ordering::SeqCst);
        let waiter = WaitingGuard(&inner.waiting);
        let acquired =
            tokio::time::timeout(inner.config.acquire_timeout, inner.permits.acquire()).await;
        let waiting_now = inner.waiting.load(Ordering::SeqCst);
        drop(waiter);
        let _permit = match acquired {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => return Err(StoreError::Closed(inner.name.clone())),
            Err(_elapsed) => return Err(self.exhausted(started.elapsed(), waiting_now)),
        };
        self.record_acquire(started.elapsed());
        surefoot_core_lifecycle::timeout(operation, inner.config.operation_timeout, op).await?
    }

    fn exhausted(&self, waited: Duration, waiting: usize) -> StoreError {
        let inner = &self.inner;
        inner.exhausted.fetch_add(1, Ordering::Relaxed);
        *lock(&inner.last_exhausted) = Some(Instant::now());
        inner.metrics.exhausted.add(1, inner.metrics.labels());
        tracing::warn!(pool = %inner.name, ?waited, waiting, size = inner.config.size, "pool exhausted");
        StoreError::PoolExhausted {
            pool: inner.name.clone(),
            waited,
            size: inner.config.size,
            waiting,
        }
    }

    fn record_acquire(&self, took: Duration) {
        let inner = &self.inner;
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        inner.acquired.fetch_add(1, Ordering::Relaxed);
        inner
            .acquire_micros_total
            .fetch_add(micros, Ordering::Relaxed);
        inner
            .acquire_micros_max
            .fetch_max(micros, Ordering::Relaxed);
        inner
            .metrics
            .acquire_time
            .record(took.as_secs_f64(), inner.metrics.labels());
    }

    /// Refuses every operation from now on; operations already admitted finish.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.permits.close();
    }

    /// Whether [`PoolGate::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// A snapshot of the pool's numbers; `connections` and `idle_connections` come from the
    /// backend's driver when it keeps its own pool.
    pub fn stats(&self, connections: Option<(usize, usize)>) -> PoolStats {
        stats::snapshot(self, connections)
    }
}

struct WaitingGuard<'a>(&'a AtomicUsize);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values are plain numbers, valid whatever a panicking holder did.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
