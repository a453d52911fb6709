//! The source's metrics, recorded through the `opentelemetry` API (no-ops until the
//! application installs a meter provider).
//!
//! | instrument | kind | meaning |
//! | --- | --- | --- |
//! | `surefoot.pg.transactions.received` | counter | transactions decoded from the stream |
//! | `surefoot.pg.changes.received` | counter | changes decoded from the stream |
//! | `surefoot.pg.transactions.skipped` | counter | transactions resent by the server after a reconnect and skipped, being at or below the watermark |
//! | `surefoot.pg.connections.attempted` | counter | replication connections opened or tried |
//! | `surefoot.pg.connections.failed` | counter (attribute `class`) | sessions that ended with an error |
//! | `surefoot.pg.connections.recovered` | counter | sessions that streamed after a failed one |
//! | `surefoot.pg.stream.silences_survived` | counter | silences past the liveness timeout during which the server showed the walsender working |
//! | `surefoot.pg.backpressure.seconds` | counter (f64) | time a decoded transaction waited for room in the output |
//! | `surefoot.pg.wal.lag_bytes` | gauge | server WAL end minus the confirmed position |
//! | `surefoot.pg.wal.retained_bytes` | gauge | WAL the slot keeps on the server |
//!
//! Every instrument carries the attribute `source` (the source id).

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Meter};
use surefoot_core_lifecycle::ErrorClass;

/// The scope name of [`SourceMetrics::global`].
pub const METER_NAME: &str = "surefoot-source-postgres";

/// The source's instruments. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct SourceMetrics {
    attrs: [KeyValue; 1],
    transactions: Counter<u64>,
    changes: Counter<u64>,
    skipped: Counter<u64>,
    attempts: Counter<u64>,
    failures: Counter<u64>,
    recoveries: Counter<u64>,
    blocked_seconds: Counter<f64>,
    silences: Counter<u64>,
    lag_bytes: Gauge<u64>,
    retained_bytes: Gauge<u64>,
}

impl SourceMetrics {
    /// Instruments from `meter`, labelled with `source`.
    pub fn new(meter: &Meter, source: &str) -> Self {
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .build()
        };
        let gauge = |name: &'static str, description: &'static str| {
            meter
                .u64_gauge(name)
                .with_description(description)
                .with_unit("By")
                .build()
        };
        Self {
            attrs: [KeyValue::new("source", source.to_owned())],
            transactions: counter("surefoot.pg.transactions.received", "Transactions decoded"),
            changes: counter("surefoot.pg.changes.received", "Changes decoded"),
            skipped: counter(
                "surefoot.pg.transactions.skipped",
                "Transactions at or below the watermark, resent after a reconnect",
            ),
            attempts: counter(
                "surefoot.pg.connections.attempted",
                "Replication connections tried",
            ),
            failures: counter(
                "surefoot.pg.connections.failed",
                "Sessions ended by an error",
            ),
            recoveries: counter(
                "surefoot.pg.connections.recovered",
                "Sessions that streamed after a failed one",
            ),
            silences: counter(
                "surefoot.pg.stream.silences_survived",
                "Silences past the liveness timeout while the walsender was working",
            ),
            blocked_seconds: meter
                .f64_counter("surefoot.pg.backpressure.seconds")
                .with_description("Time decoded transactions waited for room in the output")
                .with_unit("s")
                .build(),
            lag_bytes: gauge(
                "surefoot.pg.wal.lag_bytes",
                "Server WAL end minus the confirmed position",
            ),
            retained_bytes: gauge("surefoot.pg.wal.retained_bytes", "WAL retained by the slot"),
        }
    }

    /// Instruments from the global meter provider.
    pub fn global(source: &str) -> Self {
        Self::new(&opentelemetry::global::meter(METER_NAME), source)
    }

    pub(crate) fn transaction_received(&self, changes: usize) {
        self.transactions.add(1, &self.attrs);
        self.changes.add(changes as u64, &self.attrs);
    }

    /// Changes of a part of a spilled transaction, delivered before its commit's last part.
    pub(crate) fn part_received(&self, changes: usize) {
        self.changes.add(changes as u64, &self.attrs);
    }

    pub(crate) fn transaction_skipped(&self) {
        self.skipped.add(1, &self.attrs);
    }

    pub(crate) fn connection_attempted(&self) {
        self.attempts.add(1, &self.attrs);
    }

    pub(crate) fn session_failed(&self, class: ErrorClass) {
        let attrs = [
            self.attrs[0].clone(),
            KeyValue::new("class", class.to_string()),
        ];
        self.failures.add(1, &attrs);
    }

    pub(crate) fn recovered(&self) {
        self.recoveries.add(1, &self.attrs);
    }

    pub(crate) fn blocked(&self, waited: std::time::Duration) {
        self.blocked_seconds.add(waited.as_secs_f64(), &self.attrs);
    }

    pub(crate) fn silence_survived(&self) {
        self.silences.add(1, &self.attrs);
    }

    pub(crate) fn wal_positions(&self, lag_bytes: u64, retained_bytes: u64) {
        self.lag_bytes.record(lag_bytes, &self.attrs);
        self.retained_bytes.record(retained_bytes, &self.attrs);
    }
}
