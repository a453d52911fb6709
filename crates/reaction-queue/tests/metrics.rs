#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use surefoot_core_lifecycle::{Backoff, RetryPolicy};
use surefoot_core_model::Reaction;
use surefoot_reaction_queue::{
    Fanout, FileDeadLetters, QueueMetrics, ReactionRuntime, RuntimeConfig,
};

use common::{Outcomes, Recorder, batch};

/// What the exporter holds for one instrument: a sum, a gauge's last value, or a histogram's
/// count.
fn read(provider: &SdkMeterProvider, exporter: &InMemoryMetricExporter, name: &str) -> Option<u64> {
    provider.force_flush().unwrap();
    let exports = exporter.get_finished_metrics().unwrap();
    let latest = exports.last()?;
    let mut found = None;
    for scope in latest.scope_metrics() {
        for metric in scope.metrics().filter(|m| m.name() == name) {
            let value: u64 = match metric.data() {
                AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                    sum.data_points().map(|p| p.value()).sum::<u64>()
                }
                AggregatedMetrics::U64(MetricData::Gauge(gauge)) => {
                    gauge.data_points().map(|p| p.value()).sum::<u64>()
                }
                AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
                    histogram.data_points().map(|p| p.count()).sum::<u64>()
                }
                other => panic!("{name}: unexpected data {other:?}"),
            };
            found = Some(found.unwrap_or(0) + value);
        }
    }
    found
}

/// D-MON: message-flow metrics reach an OpenTelemetry exporter.
#[tokio::test]
async fn d_mon_message_flow_metrics_are_exported() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let metrics = QueueMetrics::new(&provider.meter("test"), "d_mon");
    let dir = tempfile::tempdir().unwrap();
    let mut recorder = Recorder::new(Duration::from_millis(1));
    recorder.poison.insert(5);
    let recorder = Arc::new(recorder);
    let config = RuntimeConfig::new("d_mon", 2).with_retry(
        RetryPolicy::new(Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(2),
        ))
        .with_max_attempts(2),
    );
    let runtime = ReactionRuntime::new(
        config,
        Arc::clone(&recorder) as Arc<dyn Reaction>,
        Arc::new(FileDeadLetters::new(dir.path().join("dead.jsonl"))),
        metrics.clone(),
    );
    let upstream = Fanout::new("query");
    runtime.start(&upstream).unwrap();
    let outcomes = Outcomes::default();
    for seq in 0..100 {
        upstream
            .publish(batch("s", seq, 0, 0, outcomes.token("s", seq)))
            .await
            .unwrap();
    }
    let summary = runtime.stop(Duration::from_secs(30)).await;
    assert!(summary.drained, "{summary:?}");

    let value = |name| read(&provider, &exporter, name);
    assert_eq!(value("surefoot.queue.enqueued"), Some(100));
    assert_eq!(value("surefoot.queue.dequeued"), Some(100));
    assert_eq!(value("surefoot.queue.delivered"), Some(99));
    assert_eq!(value("surefoot.queue.dead_lettered"), Some(1));
    assert_eq!(
        value("surefoot.queue.retried"),
        Some(0),
        "a permanent error is not retried"
    );
    assert_eq!(
        value("surefoot.queue.dropped"),
        Some(0),
        "dropped is exported, and 0"
    );
    assert_eq!(value("surefoot.queue.depth"), Some(0));
    assert_eq!(value("surefoot.queue.latency.seconds"), Some(100));
    let waits = value("surefoot.queue.producer_wait.seconds").unwrap_or(0);
    assert!(
        waits > 0,
        "a queue of 2 fed 100 batches never made the producer wait"
    );
    assert_eq!(waits, metrics.snapshot().producer_waits);
}
