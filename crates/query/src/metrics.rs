//! Query metrics, recorded through the `opentelemetry` API (no-ops until the application
//! installs a meter provider); the same figures are readable as [`crate::QueryStats`].
//!
//! | instrument | kind | meaning |
//! | --- | --- | --- |
//! | `surefoot.query.batches` | counter | input batches evaluated |
//! | `surefoot.query.duplicate_batches` | counter | input batches skipped as already applied |
//! | `surefoot.query.diffs` | counter | result diffs emitted |
//! | `surefoot.query.failures` | counter | batches the query failed on (it then stops) |
//! | `surefoot.query.state_rows` | gauge | rows of state: input rows kept, join indexes, result rows (counted, not held, for a projection) |
//! | `surefoot.query.evaluation.seconds` | histogram | evaluation time per input batch |
//! | `surefoot.query.lag.seconds` | histogram | from the source's commit time to the end of evaluation |
//!
//! Every instrument carries the attribute `query` (the query's id).

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};

/// The scope name of the global meter.
pub const METER_NAME: &str = "surefoot-query";

/// A query's instruments.
#[derive(Debug, Clone)]
pub(crate) struct QueryMetrics {
    attributes: [KeyValue; 1],
    batches: Counter<u64>,
    duplicates: Counter<u64>,
    diffs: Counter<u64>,
    failures: Counter<u64>,
    state_rows: Gauge<u64>,
    evaluation: Histogram<f64>,
    lag: Histogram<f64>,
}

impl QueryMetrics {
    /// Instruments from the global meter provider.
    pub(crate) fn global(query: &str) -> Self {
        Self::new(&opentelemetry::global::meter(METER_NAME), query)
    }

    /// Instruments from `meter`.
    pub(crate) fn new(meter: &Meter, query: &str) -> Self {
        Self {
            attributes: [KeyValue::new("query", query.to_owned())],
            batches: meter.u64_counter("surefoot.query.batches").build(),
            duplicates: meter
                .u64_counter("surefoot.query.duplicate_batches")
                .build(),
            diffs: meter.u64_counter("surefoot.query.diffs").build(),
            failures: meter.u64_counter("surefoot.query.failures").build(),
            state_rows: meter.u64_gauge("surefoot.query.state_rows").build(),
            evaluation: meter
                .f64_histogram("surefoot.query.evaluation.seconds")
                .with_unit("s")
                .build(),
            lag: meter
                .f64_histogram("surefoot.query.lag.seconds")
                .with_unit("s")
                .build(),
        }
    }

    pub(crate) fn batch(
        &self,
        diffs: u64,
        state_rows: usize,
        took: Duration,
        lag: Option<Duration>,
    ) {
        self.batches.add(1, &self.attributes);
        self.diffs.add(diffs, &self.attributes);
        self.state_rows.record(state_rows as u64, &self.attributes);
        self.evaluation.record(took.as_secs_f64(), &self.attributes);
        if let Some(lag) = lag {
            self.lag.record(lag.as_secs_f64(), &self.attributes);
        }
    }

    pub(crate) fn duplicate(&self) {
        self.duplicates.add(1, &self.attributes);
    }

    pub(crate) fn failure(&self) {
        self.failures.add(1, &self.attributes);
    }
}
