//! Message-flow metrics, recorded through the `opentelemetry` API (no-ops until the application
//! installs a meter provider) and mirrored in plain counters that tests and health checks read
//! with [`QueueMetrics::snapshot`].
//!
//! | instrument | kind | meaning |
//! | --- | --- | --- |
//! | `surefoot.queue.enqueued` | counter | batches accepted by the queue |
//! | `surefoot.queue.dequeued` | counter | batches taken out of the queue |
//! | `surefoot.queue.delivered` | counter | batches whose reaction effect is done and acknowledged |
//! | `surefoot.queue.retried` | counter | reaction attempts repeated after a failure |
//! | `surefoot.queue.dead_lettered` | counter | batches written to the dead-letter destination |
//! | `surefoot.queue.dropped` | counter | batches discarded; nothing in this crate discards, so it stays 0 |
//! | `surefoot.queue.claimed` | counter | Redis backend: entries claimed one by one from another consumer; always 0 since X-3 (partitions are taken over whole), kept for dashboards |
//! | `surefoot.queue.unacknowledged` | counter | batches left unacknowledged at stop (redelivered later) |
//! | `surefoot.queue.lanes_held` | counter | holds begun: a lane (or Redis partition) kept an item that was not settled delivered at its head instead of passing it (X-3) |
//! | `surefoot.queue.partitions_taken_over` | counter | Redis backend: partitions whose lease this consumer took over after it expired (X-3) |
//! | `surefoot.queue.depth` | gauge | batches waiting in the queue |
//! | `surefoot.queue.producer_wait.seconds` | histogram | how long a producer waited for room |
//! | `surefoot.queue.latency.seconds` | histogram | from enqueue to the reaction's effect being done |
//!
//! Every instrument carries the attribute `queue` (the queue or reaction name).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};

/// The scope name of [`QueueMetrics::global`].
pub const METER_NAME: &str = "surefoot-reaction-queue";

#[derive(Debug, Default)]
struct Counts {
    enqueued: AtomicU64,
    dequeued: AtomicU64,
    delivered: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    dropped: AtomicU64,
    unacknowledged: AtomicU64,
    claimed: AtomicU64,
    lanes_held: AtomicU64,
    taken_over: AtomicU64,
    depth: AtomicU64,
    max_depth: AtomicU64,
    waits: AtomicU64,
    wait_nanos: AtomicU64,
    latency_count: AtomicU64,
    latency_max_nanos: AtomicU64,
}

/// The readable values of a [`QueueMetrics`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricsSnapshot {
    /// Batches accepted by the queue.
    pub enqueued: u64,
    /// Batches taken out of the queue.
    pub dequeued: u64,
    /// Batches delivered (effect done, token settled as delivered).
    pub delivered: u64,
    /// Attempts repeated after a failure.
    pub retried: u64,
    /// Batches written to the dead-letter destination.
    pub dead_lettered: u64,
    /// Batches discarded. Always 0: nothing here discards.
    pub dropped: u64,
    /// Batches left unacknowledged at stop, for redelivery.
    pub unacknowledged: u64,
    /// Redis backend: pending entries claimed from other consumers (0 since X-3: partitions
    /// are taken over whole, see `partitions_taken_over`).
    pub claimed: u64,
    /// Holds begun: an item not settled delivered kept at the head of its lane.
    pub lanes_held: u64,
    /// Redis backend: partition leases taken over after they expired.
    pub partitions_taken_over: u64,
    /// Batches waiting now.
    pub depth: u64,
    /// The highest depth seen.
    pub max_depth: u64,
    /// Sends that had to wait for room.
    pub producer_waits: u64,
    /// Total time producers waited for room.
    pub producer_wait: Duration,
    /// Batches whose end-to-end latency was recorded.
    pub latency_count: u64,
    /// The longest end-to-end latency recorded.
    pub latency_max: Duration,
}

/// The queue's and runtime's instruments. Cloning is cheap and shares the counters.
#[derive(Debug, Clone)]
pub struct QueueMetrics {
    attrs: Arc<[KeyValue; 1]>,
    counts: Arc<Counts>,
    enqueued: Counter<u64>,
    dequeued: Counter<u64>,
    delivered: Counter<u64>,
    retried: Counter<u64>,
    dead_lettered: Counter<u64>,
    dropped: Counter<u64>,
    unacknowledged: Counter<u64>,
    claimed: Counter<u64>,
    lanes_held: Counter<u64>,
    taken_over: Counter<u64>,
    depth: Gauge<u64>,
    wait: Histogram<f64>,
    latency: Histogram<f64>,
}

impl QueueMetrics {
    /// Instruments from `meter`, labelled with `queue`.
    pub fn new(meter: &Meter, queue: &str) -> Self {
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .build()
        };
        let seconds = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_description(description)
                .with_unit("s")
                .build()
        };
        Self {
            attrs: Arc::new([KeyValue::new("queue", queue.to_owned())]),
            counts: Arc::default(),
            enqueued: counter("surefoot.queue.enqueued", "Batches accepted"),
            dequeued: counter("surefoot.queue.dequeued", "Batches taken out"),
            delivered: counter("surefoot.queue.delivered", "Batches delivered"),
            retried: counter("surefoot.queue.retried", "Attempts repeated"),
            dead_lettered: counter("surefoot.queue.dead_lettered", "Batches dead-lettered"),
            dropped: counter("surefoot.queue.dropped", "Batches discarded (stays 0)"),
            unacknowledged: counter(
                "surefoot.queue.unacknowledged",
                "Batches left unacknowledged at stop",
            ),
            claimed: counter(
                "surefoot.queue.claimed",
                "Pending entries claimed from a silent consumer",
            ),
            lanes_held: counter(
                "surefoot.queue.lanes_held",
                "Holds begun on an item not settled delivered",
            ),
            taken_over: counter(
                "surefoot.queue.partitions_taken_over",
                "Partition leases taken over after they expired",
            ),
            depth: meter
                .u64_gauge("surefoot.queue.depth")
                .with_description("Batches waiting")
                .build(),
            wait: seconds(
                "surefoot.queue.producer_wait.seconds",
                "Time a producer waited for room",
            ),
            latency: seconds("surefoot.queue.latency.seconds", "Enqueue to effect done"),
        }
    }

    /// Instruments from the global meter provider.
    pub fn global(queue: &str) -> Self {
        Self::new(&opentelemetry::global::meter(METER_NAME), queue)
    }

    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let c = &self.counts;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            enqueued: load(&c.enqueued),
            dequeued: load(&c.dequeued),
            delivered: load(&c.delivered),
            retried: load(&c.retried),
            dead_lettered: load(&c.dead_lettered),
            dropped: load(&c.dropped),
            unacknowledged: load(&c.unacknowledged),
            claimed: load(&c.claimed),
            lanes_held: load(&c.lanes_held),
            partitions_taken_over: load(&c.taken_over),
            depth: load(&c.depth),
            max_depth: load(&c.max_depth),
            producer_waits: load(&c.waits),
            producer_wait: Duration::from_nanos(load(&c.wait_nanos)),
            latency_count: load(&c.latency_count),
            latency_max: Duration::from_nanos(load(&c.latency_max_nanos)),
        }
    }

    pub(crate) fn enqueued(&self, depth: usize) {
        self.counts.enqueued.fetch_add(1, Ordering::Relaxed);
        self.enqueued.add(1, &self.attrs[..]);
        self.set_depth(depth);
    }

    /// Redis backend: `count` entries appended; the depth is observed separately.
    #[cfg(feature = "redis")]
    pub(crate) fn appended(&self, count: usize) {
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        self.counts.enqueued.fetch_add(count, Ordering::Relaxed);
        self.enqueued.add(count, &self.attrs[..]);
    }

    /// Redis backend: the stream's length, as observed.
    #[cfg(feature = "redis")]
    pub(crate) fn observed_depth(&self, depth: u64) {
        self.set_depth(usize::try_from(depth).unwrap_or(usize::MAX));
    }

    pub(crate) fn dequeued(&self, depth: usize) {
        self.counts.dequeued.fetch_add(1, Ordering::Relaxed);
        self.dequeued.add(1, &self.attrs[..]);
        self.set_depth(depth);
    }

    fn set_depth(&self, depth: usize) {
        let depth = u64::try_from(depth).unwrap_or(u64::MAX);
        self.counts.depth.store(depth, Ordering::Relaxed);
        self.counts.max_depth.fetch_max(depth, Ordering::Relaxed);
        self.depth.record(depth, &self.attrs[..]);
    }

    pub(crate) fn producer_waited(&self, waited: Duration) {
        self.counts.waits.fetch_add(1, Ordering::Relaxed);
        self.counts
            .wait_nanos
            .fetch_add(nanos(waited), Ordering::Relaxed);
        self.wait.record(waited.as_secs_f64(), &self.attrs[..]);
    }

    pub(crate) fn delivered(&self, latency: Duration) {
        self.counts.delivered.fetch_add(1, Ordering::Relaxed);
        self.delivered.add(1, &self.attrs[..]);
        self.record_latency(latency);
    }

    pub(crate) fn dead_lettered(&self, latency: Duration) {
        self.counts.dead_lettered.fetch_add(1, Ordering::Relaxed);
        self.dead_lettered.add(1, &self.attrs[..]);
        self.record_latency(latency);
    }

    fn record_latency(&self, latency: Duration) {
        self.counts.latency_count.fetch_add(1, Ordering::Relaxed);
        self.counts
            .latency_max_nanos
            .fetch_max(nanos(latency), Ordering::Relaxed);
        self.latency.record(latency.as_secs_f64(), &self.attrs[..]);
    }

    pub(crate) fn retried(&self) {
        self.counts.retried.fetch_add(1, Ordering::Relaxed);
        self.retried.add(1, &self.attrs[..]);
    }

    pub(crate) fn unacknowledged(&self, count: u64) {
        self.counts
            .unacknowledged
            .fetch_add(count, Ordering::Relaxed);
        self.unacknowledged.add(count, &self.attrs[..]);
    }

    #[cfg(feature = "redis")]
    pub(crate) fn read_from_stream(&self, count: usize) {
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        self.counts.dequeued.fetch_add(count, Ordering::Relaxed);
        self.dequeued.add(count, &self.attrs[..]);
    }

    pub(crate) fn lane_held(&self) {
        self.counts.lanes_held.fetch_add(1, Ordering::Relaxed);
        self.lanes_held.add(1, &self.attrs[..]);
    }

    #[cfg(feature = "redis")]
    pub(crate) fn partition_taken_over(&self) {
        self.counts.taken_over.fetch_add(1, Ordering::Relaxed);
        self.taken_over.add(1, &self.attrs[..]);
    }

    /// Records a zero on every counter, so that exporters show them (`dropped` above all)
    /// from the start rather than after their first event.
    pub(crate) fn declare(&self) {
        for counter in [
            &self.enqueued,
            &self.dequeued,
            &self.delivered,
            &self.retried,
            &self.dead_lettered,
            &self.dropped,
            &self.unacknowledged,
            &self.claimed,
            &self.lanes_held,
            &self.taken_over,
        ] {
            counter.add(0, &self.attrs[..]);
        }
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
