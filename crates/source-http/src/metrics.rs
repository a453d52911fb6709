//! The source's metrics, recorded through the `opentelemetry` API (no-ops until the application
//! installs a meter provider), and mirrored in plain counters readable with
//! [`crate::HttpSource::stats`].
//!
//! | instrument | kind | meaning |
//! | --- | --- | --- |
//! | `surefoot.http.requests` | counter (attribute `status`) | requests answered, by HTTP status |
//! | `surefoot.http.changes.accepted` | counter | changes queued for a batch |
//! | `surefoot.http.batch.changes` | histogram | changes per batch sent to the output |
//! | `surefoot.http.wait.seconds` | histogram | time from a request being queued to its answer |
//! | `surefoot.http.idempotent.replays` | counter | requests answered from an idempotency record |
//! | `surefoot.http.async.failed` | counter | changes answered `202` whose batch then failed |
//! | `surefoot.http.idempotency.errors` | counter | idempotency records that could not be written |
//! | `surefoot.http.sequence.reservation_failures` | counter | failed reservations of sequences in Redis (the batch waits) |
//!
//! Every instrument carries the attribute `source` (the source id).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};

/// The scope name of the global meter used by the source.
pub const METER_NAME: &str = "surefoot-source-http";

/// Counts since the source was built, for tests and health pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Requests answered 200 or 202.
    pub accepted: u64,
    /// Requests answered 4xx.
    pub client_errors: u64,
    /// Requests answered 429.
    pub throttled: u64,
    /// Requests answered 5xx.
    pub server_errors: u64,
    /// Requests answered from an idempotency record.
    pub replays: u64,
    /// Batches sent to the output.
    pub batches: u64,
    /// Changes sent to the output.
    pub changes: u64,
    /// Changes answered `202` whose batch then failed (async mode).
    pub async_failed: u64,
    /// Idempotency records that could not be written.
    pub idempotency_errors: u64,
    /// Failed reservations of sequences in Redis.
    pub sequence_reservation_failures: u64,
    /// Instance lease renewals that failed, or found the lease taken.
    pub lease_failures: u64,
}

#[derive(Debug, Default)]
struct Counts {
    accepted: AtomicU64,
    client_errors: AtomicU64,
    throttled: AtomicU64,
    server_errors: AtomicU64,
    replays: AtomicU64,
    batches: AtomicU64,
    changes: AtomicU64,
    async_failed: AtomicU64,
    idempotency_errors: AtomicU64,
    sequence_reservation_failures: AtomicU64,
    lease_failures: AtomicU64,
}

/// The source's instruments. Cloning is cheap.
#[derive(Debug, Clone)]
pub(crate) struct HttpMetrics {
    attrs: [KeyValue; 1],
    requests: Counter<u64>,
    accepted_changes: Counter<u64>,
    batch_changes: Histogram<u64>,
    wait: Histogram<f64>,
    replays: Counter<u64>,
    async_failed: Counter<u64>,
    idempotency_errors: Counter<u64>,
    sequence_reservation_failures: Counter<u64>,
    lease_failures: Counter<u64>,
    counts: Arc<Counts>,
}

impl HttpMetrics {
    pub(crate) fn global(source: &str) -> Self {
        Self::new(&opentelemetry::global::meter(METER_NAME), source)
    }

    fn new(meter: &Meter, source: &str) -> Self {
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .build()
        };
        Self {
            attrs: [KeyValue::new("source", source.to_owned())],
            requests: counter("surefoot.http.requests", "Requests answered, by status"),
            accepted_changes: counter("surefoot.http.changes.accepted", "Changes queued"),
            batch_changes: meter
                .u64_histogram("surefoot.http.batch.changes")
                .with_description("Changes per batch sent to the output")
                .build(),
            wait: meter
                .f64_histogram("surefoot.http.wait.seconds")
                .with_description("Time from a request being queued to its answer")
                .with_unit("s")
                .build(),
            replays: counter(
                "surefoot.http.idempotent.replays",
                "Requests answered from an idempotency record",
            ),
            async_failed: counter(
                "surefoot.http.async.failed",
                "Changes answered 202 whose batch then failed",
            ),
            idempotency_errors: counter(
                "surefoot.http.idempotency.errors",
                "Idempotency records that could not be written",
            ),
            sequence_reservation_failures: counter(
                "surefoot.http.sequence.reservation_failures",
                "Failed reservations of sequences in Redis",
            ),
            lease_failures: counter(
                "surefoot.http.instance_lease.failures",
                "Instance lease renewals that failed or found the lease taken",
            ),
            counts: Arc::default(),
        }
    }

    pub(crate) fn answered(&self, status: u16) {
        let attrs = [
            self.attrs[0].clone(),
            KeyValue::new("status", i64::from(status)),
        ];
        self.requests.add(1, &attrs);
        let counter = match status {
            200..=299 => &self.counts.accepted,
            429 => &self.counts.throttled,
            400..=499 => &self.counts.client_errors,
            _ => &self.counts.server_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn queued(&self, changes: usize) {
        self.accepted_changes.add(changes as u64, &self.attrs);
    }

    pub(crate) fn batch_sent(&self, changes: usize) {
        self.batch_changes.record(changes as u64, &self.attrs);
        self.counts.batches.fetch_add(1, Ordering::Relaxed);
        let changes = changes as u64;
        self.counts.changes.fetch_add(changes, Ordering::Relaxed);
    }

    pub(crate) fn waited(&self, waited: Duration) {
        self.wait.record(waited.as_secs_f64(), &self.attrs);
    }

    pub(crate) fn replayed(&self) {
        self.replays.add(1, &self.attrs);
        self.counts.replays.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn async_failed(&self, changes: usize) {
        self.async_failed.add(changes as u64, &self.attrs);
        let changes = changes as u64;
        self.counts
            .async_failed
            .fetch_add(changes, Ordering::Relaxed);
    }

    pub(crate) fn idempotency_error(&self) {
        self.idempotency_errors.add(1, &self.attrs);
        self.counts
            .idempotency_errors
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sequence_reservation_failed(&self) {
        self.sequence_reservation_failures.add(1, &self.attrs);
        self.counts
            .sequence_reservation_failures
            .fetch_add(1, Ordering::Relaxed);
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn lease_failed(&self) {
        self.lease_failures.add(1, &self.attrs);
        self.counts.lease_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> Stats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let counts = &self.counts;
        Stats {
            accepted: read(&counts.accepted),
            client_errors: read(&counts.client_errors),
            throttled: read(&counts.throttled),
            server_errors: read(&counts.server_errors),
            replays: read(&counts.replays),
            batches: read(&counts.batches),
            changes: read(&counts.changes),
            async_failed: read(&counts.async_failed),
            idempotency_errors: read(&counts.idempotency_errors),
            sequence_reservation_failures: read(&counts.sequence_reservation_failures),
            lease_failures: read(&counts.lease_failures),
        }
    }
}
