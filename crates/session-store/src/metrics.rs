//! Metrics through the opentelemetry API (a no-op until the application installs a provider).

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};

/// The store's instruments, labelled with the pool's name.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    /// Operations that gave up waiting for a pool slot.
    pub exhausted: Counter<u64>,
    /// Time to get a pool slot, in seconds.
    pub acquire_time: Histogram<f64>,
    /// Sessions whose save lost a compare-and-set.
    pub conflicts: Counter<u64>,
    /// Messages published.
    pub published: Counter<u64>,
    /// Resumes, labelled `recovered`.
    pub resumes: Counter<u64>,
    /// Errors reported to clients by the handler boundary, labelled `code`.
    pub handler_errors: Counter<u64>,
    labels: Vec<KeyValue>,
}

impl StoreMetrics {
    /// Instruments on `meter`.
    pub fn new(meter: &Meter, pool: &str) -> Self {
        Self {
            exhausted: meter
                .u64_counter("surefoot.session_store.pool.exhausted")
                .with_description("operations that gave up waiting for a pool slot")
                .build(),
            acquire_time: meter
                .f64_histogram("surefoot.session_store.pool.acquire_time")
                .with_unit("s")
                .build(),
            conflicts: meter
                .u64_counter("surefoot.session_store.conflicts")
                .build(),
            published: meter
                .u64_counter("surefoot.session_store.published")
                .build(),
            resumes: meter.u64_counter("surefoot.session_store.resumes").build(),
            handler_errors: meter
                .u64_counter("surefoot.session_store.handler_errors")
                .build(),
            labels: vec![KeyValue::new("pool", pool.to_owned())],
        }
    }

    /// Instruments on the global meter provider.
    pub fn global(pool: &str) -> Self {
        Self::new(
            &opentelemetry::global::meter("surefoot-session-store"),
            pool,
        )
    }

    /// The pool label.
    pub fn labels(&self) -> &[KeyValue] {
        &self.labels
    }
}
