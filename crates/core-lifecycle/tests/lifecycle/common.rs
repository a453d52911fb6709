//! Test support: an in-memory metrics pipeline and an instance counter.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use surefoot_core_lifecycle::{EventBus, LifecycleMetrics, SupervisorConfig};

/// Metrics recorded into an in-memory exporter, read back by name.
pub(crate) struct Metrics {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
    pub(crate) metrics: LifecycleMetrics,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let metrics = LifecycleMetrics::new(&provider.meter("test"));
        Self {
            provider,
            exporter,
            metrics,
        }
    }

    /// A supervisor config recording into these metrics, with its own event bus.
    pub(crate) fn config(&self) -> SupervisorConfig {
        SupervisorConfig::default()
            .with_metrics(self.metrics.clone())
            .with_events(EventBus::new(4096, self.metrics.clone()))
    }

    /// The total of a sum instrument over the data points whose attributes contain every
    /// `(key, value)` in `filter`.
    pub(crate) fn sum(&self, name: &str, filter: &[(&str, &str)]) -> i64 {
        self.provider.force_flush().unwrap();
        let exports = self.exporter.get_finished_metrics().unwrap();
        let Some(latest) = exports.last() else {
            return 0;
        };
        let mut total = 0i64;
        for scope in latest.scope_metrics() {
            for metric in scope.metrics().filter(|m| m.name() == name) {
                total += match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum)) => sum
                        .data_points()
                        .filter(|p| matches(p.attributes(), filter))
                        .map(|p| i64::try_from(p.value()).unwrap())
                        .sum::<i64>(),
                    AggregatedMetrics::I64(MetricData::Sum(sum)) => sum
                        .data_points()
                        .filter(|p| matches(p.attributes(), filter))
                        .map(|p| p.value())
                        .sum::<i64>(),
                    other => panic!("{name} is not a sum: {other:?}"),
                };
            }
        }
        total
    }
}

fn matches<'a>(
    attributes: impl Iterator<Item = &'a opentelemetry::KeyValue>,
    filter: &[(&str, &str)],
) -> bool {
    let attributes: Vec<_> = attributes.collect();
    filter.iter().all(|(key, value)| {
        attributes
            .iter()
            .any(|kv| kv.key.as_str() == *key && kv.value.as_str() == *value)
    })
}

/// Counts live instances of something and remembers the most ever alive at once.
#[derive(Clone, Default)]
pub(crate) struct Instances {
    inner: Arc<(AtomicUsize, AtomicUsize, AtomicUsize)>,
}

impl Instances {
    /// Marks an instance alive until the guard is dropped.
    pub(crate) fn enter(&self) -> InstanceGuard {
        let (alive, max, total) = &*self.inner;
        let now = alive.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(now, Ordering::SeqCst);
        total.fetch_add(1, Ordering::SeqCst);
        InstanceGuard {
            instances: self.clone(),
        }
    }

    pub(crate) fn alive(&self) -> usize {
        self.inner.0.load(Ordering::SeqCst)
    }

    pub(crate) fn max_alive(&self) -> usize {
        self.inner.1.load(Ordering::SeqCst)
    }

    pub(crate) fn total(&self) -> usize {
        self.inner.2.load(Ordering::SeqCst)
    }
}

pub(crate) struct InstanceGuard {
    instances: Instances,
}

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        self.instances.inner.0.fetch_sub(1, Ordering::SeqCst);
    }
}
