//! A meter provider whose exports stay in memory, to read counters back in tests.

use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use surefoot_sink_postgres_writer::WriterMetrics;

/// In-memory exports of one writer's instruments.
pub(crate) struct Meter {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

impl Meter {
    /// The exporter and the writer's instruments on it, labelled `sink`.
    pub(crate) fn new(sink: &str) -> (Self, WriterMetrics) {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let metrics = WriterMetrics::new(&provider.meter("tests"), sink);
        (Self { provider, exporter }, metrics)
    }

    /// The total of counter `name` over its points, 0 when never recorded.
    pub(crate) fn counter(&self, name: &str) -> u64 {
        self.provider.force_flush().unwrap();
        let exports = self.exporter.get_finished_metrics().unwrap();
        let Some(latest) = exports.last() else {
            return 0;
        };
        let mut total = 0;
        for scope in latest.scope_metrics() {
            for metric in scope.metrics().filter(|m| m.name() == name) {
                if let AggregatedMetrics::U64(MetricData::Sum(sum)) = metric.data() {
                    total += sum.data_points().map(|p| p.value()).sum::<u64>();
                }
            }
        }
        total
    }
}
