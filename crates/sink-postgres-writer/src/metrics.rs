//! The writer's metrics (FINDINGS W-11), recorded through the `opentelemetry` API (no-ops until
//! the application installs a meter provider).
//!
//! | instrument | kind | meaning |
//! | --- | --- | --- |
//! | `surefoot.writer.batch.changes` | histogram | changes per sink transaction |
//! | `surefoot.writer.commit.seconds` | histogram | time from `BEGIN` to the end of `COMMIT` |
//! | `surefoot.writer.changes.applied` | counter | changes applied (rows/s is its rate) |
//! | `surefoot.writer.changes.dead_lettered` | counter | changes sent to the dead-letter table |
//! | `surefoot.writer.changes.skipped` | counter | changes at or below the checkpoint, proven applied |
//! | `surefoot.writer.batches.refused` | counter (attribute `source`) | batches at or below the checkpoint not proven applied, refused (X-4) |
//! | `surefoot.writer.lag.seconds` | histogram | source commit time to sink commit |
//! | `surefoot.writer.transactions.failed` | counter (attribute `class`) | failed attempts |
//! | `surefoot.writer.pool.acquire.seconds` | histogram | waiting for a pooled connection |
//! | `surefoot.writer.outbox.backlog` | gauge | unsent outbox messages, as the relay last saw |
//! | `surefoot.writer.outbox.published` | counter | messages published to Redis |
//! | `surefoot.writer.outbox.refused` | counter (attribute `stream`) | messages Redis refused that the stream does not hold as ours, left unsent (X-5) |
//!
//! Every instrument carries the attribute `sink`.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};
use surefoot_core_lifecycle::ErrorClass;

use crate::apply::FlushStats;

/// The scope name of [`WriterMetrics::global`].
pub const METER_NAME: &str = "surefoot-sink-postgres-writer";

/// The writer's instruments. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct WriterMetrics {
    attrs: [KeyValue; 1],
    batch_changes: Histogram<u64>,
    commit_seconds: Histogram<f64>,
    applied: Counter<u64>,
    dead_lettered: Counter<u64>,
    skipped: Counter<u64>,
    lag_seconds: Histogram<f64>,
    failed: Counter<u64>,
    acquire_seconds: Histogram<f64>,
    backlog: Gauge<u64>,
    published: Counter<u64>,
    refused: Counter<u64>,
    outbox_refused: Counter<u64>,
}

impl WriterMetrics {
    /// Instruments from `meter`, labelled with `sink`.
    pub fn new(meter: &Meter, sink: &str) -> Self {
        let seconds = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_description(description)
                .with_unit("s")
                .build()
        };
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .build()
        };
        Self {
            attrs: [KeyValue::new("sink", sink.to_owned())],
            batch_changes: meter
                .u64_histogram("surefoot.writer.batch.changes")
                .with_description("Changes per sink transaction")
                .build(),
            commit_seconds: seconds("surefoot.writer.commit.seconds", "Sink transaction time"),
            applied: counter("surefoot.writer.changes.applied", "Changes applied"),
            dead_lettered: counter(
                "surefoot.writer.changes.dead_lettered",
                "Changes dead-lettered",
            ),
            skipped: counter("surefoot.writer.changes.skipped", "Changes already applied"),
            lag_seconds: seconds(
                "surefoot.writer.lag.seconds",
                "Source commit to sink commit",
            ),
            failed: counter(
                "surefoot.writer.transactions.failed",
                "Failed sink transactions",
            ),
            acquire_seconds: seconds("surefoot.writer.pool.acquire.seconds", "Connection wait"),
            backlog: meter
                .u64_gauge("surefoot.writer.outbox.backlog")
                .with_description("Unsent outbox messages")
                .build(),
            published: counter("surefoot.writer.outbox.published", "Messages published"),
            refused: counter(
                "surefoot.writer.batches.refused",
                "Batches at or below the checkpoint not proven applied, refused",
            ),
            outbox_refused: counter(
                "surefoot.writer.outbox.refused",
                "Outbox messages refused by Redis and not in the stream as ours, left unsent",
            ),
        }
    }

    /// Instruments from the global meter provider.
    pub fn global(sink: &str) -> Self {
        Self::new(&opentelemetry::global::meter(METER_NAME), sink)
    }

    pub(crate) fn committed(&self, changes: u64, stats: FlushStats, seconds: f64) {
        self.batch_changes.record(changes, &self.attrs);
        self.commit_seconds.record(seconds, &self.attrs);
        self.applied.add(stats.applied, &self.attrs);
        self.dead_lettered.add(stats.dead_lettered, &self.attrs);
        self.skipped.add(stats.already_applied, &self.attrs);
    }

    /// Changes of a batch dead-lettered whole after a permanent failure.
    pub(crate) fn dead_lettered(&self, changes: u64) {
        self.dead_lettered.add(changes, &self.attrs);
    }

    pub(crate) fn lag(&self, seconds: f64) {
        self.lag_seconds.record(seconds, &self.attrs);
    }

    pub(crate) fn failed(&self, class: ErrorClass) {
        let attrs = [
            self.attrs[0].clone(),
            KeyValue::new("class", class.to_string()),
        ];
        self.failed.add(1, &attrs);
    }

    pub(crate) fn acquired(&self, seconds: f64) {
        self.acquire_seconds.record(seconds, &self.attrs);
    }

    pub(crate) fn backlog(&self, messages: u64) {
        self.backlog.record(messages, &self.attrs);
    }

    /// A batch of `source` refused as an unproven replay.
    pub(crate) fn refused(&self, source: &str) {
        let attrs = [
            self.attrs[0].clone(),
            KeyValue::new("source", source.to_owned()),
        ];
        self.refused.add(1, &attrs);
    }

    /// A message for `stream` that Redis refused and the stream does not hold as ours.
    pub(crate) fn outbox_refused(&self, stream: &str) {
        let attrs = [
            self.attrs[0].clone(),
            KeyValue::new("stream", stream.to_owned()),
        ];
        self.outbox_refused.add(1, &attrs);
    }

    pub(crate) fn published(&self, messages: u64) {
        self.published.add(messages, &self.attrs);
    }
}
