//! FINDINGS W-11: the writer's instruments, read back from an OpenTelemetry in-memory exporter
//! after real sink transactions against `test-support` PostgreSQL (and Redis for the outbox).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use sqlx::PgConnection;
use surefoot_core_lifecycle::{CancellationToken, Classify, ErrorClass};
use surefoot_core_model::{Batch, Change, Row, Value, batch_channel};
use surefoot_sink_postgres_writer::{
    ApplyMode, ColumnRule, Handler, HandlerError, HandlerInput, OutboxConfig, OutboxMessages,
    PostgresWriter, Rule, TableConfig, WriterConfig, WriterMetrics,
};
use surefoot_test_support::{PgServer, RedisServer};

const STREAM: &str = "metrics-stream";
/// How far in the past the source committed the batches: the lag recorded is at least this.
const SOURCE_LAG: Duration = Duration::from_secs(5);
/// A generous bound on any one sink transaction in these tests.
const BOUND: f64 = 60.0;

/// A histogram's figures, as `f64` whatever the instrument's number type.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Hist {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

/// One data point: its attributes and its value.
#[derive(Debug, Clone)]
enum Data {
    Sum(u64),
    Gauge(u64),
    Hist(Hist),
}

#[derive(Debug, Clone)]
struct Point {
    attrs: Vec<(String, String)>,
    value: Data,
}

/// A meter provider whose exports stay in memory, and the writer's instruments on it.
struct Exported {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
    sink: String,
}

impl Exported {
    fn new(sink: &str) -> (Self, WriterMetrics) {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let metrics = WriterMetrics::new(&provider.meter("w-11"), sink);
        let exported = Self {
            provider,
            exporter,
            sink: sink.to_owned(),
        };
        (exported, metrics)
    }

    /// Every data point of `name` in a fresh export; each must carry this writer's `sink`.
    fn points(&self, name: &str) -> Vec<Point> {
        self.provider.force_flush().unwrap();
        let exports = self.exporter.get_finished_metrics().unwrap();
        let Some(latest) = exports.last() else {
            return Vec::new();
        };
        let mut points = Vec::new();
        for scope in latest.scope_metrics() {
            for metric in scope.metrics().filter(|m| m.name() == name) {
                collect(metric.data(), &mut points);
            }
        }
        for point in &points {
            let sink = point.attrs.iter().find(|(k, _)| k == "sink");
            assert_eq!(
                sink.map(|(_, v)| v.as_str()),
                Some(self.sink.as_str()),
                "{name}: a point without this writer's sink attribute: {point:?}"
            );
        }
        points
    }

    /// A counter's total over its points; `None` when it was never recorded.
    fn counter(&self, name: &str) -> Option<u64> {
        self.counter_where(name, |_| true)
    }

    /// A counter's total over the points whose attributes satisfy `filter`.
    fn counter_where(
        &self,
        name: &str,
        filter: impl Fn(&[(String, String)]) -> bool,
    ) -> Option<u64> {
        let mut total = None;
        for point in self.points(name) {
            let Data::Sum(value) = point.value else {
                panic!("{name} is not a counter: {point:?}")
            };
            if filter(&point.attrs) {
                total = Some(total.unwrap_or(0) + value);
            }
        }
        total
    }

    /// The points of the failure counter, as `class -> count`.
    fn failures(&self) -> Vec<(String, u64)> {
        let mut classes: Vec<(String, u64)> = self
            .points("surefoot.writer.transactions.failed")
            .into_iter()
            .map(|point| {
                let class = point
                    .attrs
                    .iter()
                    .find(|(k, _)| k == "class")
                    .map(|(_, v)| v.clone())
                    .expect("a failure without its class");
                let Data::Sum(count) = point.value else {
                    panic!("not a counter: {point:?}")
                };
                (class, count)
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        classes.sort();
        classes
    }

    /// A gauge's last value; `None` when it was never recorded.
    fn gauge(&self, name: &str) -> Option<u64> {
        let points = self.points(name);
        assert!(points.len() <= 1, "{name}: {points:?}");
        points.first().map(|point| match point.value {
            Data::Gauge(value) => value,
            _ => panic!("{name} is not a gauge: {point:?}"),
        })
    }

    /// A histogram's figures; `None` when it was never recorded.
    fn histogram(&self, name: &str) -> Option<Hist> {
        let points = self.points(name);
        assert!(points.len() <= 1, "{name}: {points:?}");
        points.first().map(|point| match point.value {
            Data::Hist(hist) => hist,
            _ => panic!("{name} is not a histogram: {point:?}"),
        })
    }
}

fn attrs<'a>(kvs: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> Vec<(String, String)> {
    kvs.map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

fn collect(data: &AggregatedMetrics, points: &mut Vec<Point>) {
    match data {
        AggregatedMetrics::U64(MetricData::Sum(sum)) => {
            points.extend(sum.data_points().map(|p| Point {
                attrs: attrs(p.attributes()),
                value: Data::Sum(p.value()),
            }));
        }
        AggregatedMetrics::U64(MetricData::Gauge(gauge)) => {
            points.extend(gauge.data_points().map(|p| Point {
                attrs: attrs(p.attributes()),
                value: Data::Gauge(p.value()),
            }));
        }
        AggregatedMetrics::U64(MetricData::Histogram(histogram)) => {
            points.extend(histogram.data_points().map(|p| Point {
                attrs: attrs(p.attributes()),
                value: Data::Hist(Hist {
                    count: p.count(),
                    sum: p.sum() as f64,
                    min: p.min().map_or(f64::NAN, |v| v as f64),
                    max: p.max().map_or(f64::NAN, |v| v as f64),
                }),
            }));
        }
        AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
            points.extend(histogram.data_points().map(|p| Point {
                attrs: attrs(p.attributes()),
                value: Data::Hist(Hist {
                    count: p.count(),
                    sum: p.sum(),
                    min: p.min().unwrap_or(f64::NAN),
                    max: p.max().unwrap_or(f64::NAN),
                }),
            }));
        }
        other => panic!("unexpected data {other:?}"),
    }
}

fn items() -> TableConfig {
    TableConfig::new(
        table("items"),
        ApplyMode::Mirror {
            key: vec!["id".into()],
        },
    )
}

fn item(n: u64) -> Change {
    Change::insert(
        seq(n),
        table("items"),
        row(n as i64, Value::Text("b".into())),
    )
}

fn order(n: u64) -> Change {
    let row = Row::new().with("id", Value::Int64(n as i64));
    Change::insert(seq(n), table("orders"), row)
}

/// [`SOURCE_LAG`] ago.
fn source_commit() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::from_std(SOURCE_LAG).unwrap()
}

/// A batch of `changes` the source committed [`SOURCE_LAG`] ago, or with no commit time.
fn committed_at(changes: Vec<Change>, with_commit_time: bool) -> Batch {
    let mut batch = batch("src", changes);
    batch.commit_time = with_commit_time.then(source_commit);
    batch
}

fn outbox(redis: &RedisServer) -> OutboxConfig {
    let mut outbox = OutboxConfig::new(redis.url());
    outbox.redis_timeout = Duration::from_secs(1);
    outbox.batch_size = 100;
    outbox
}

/// `orders` appended as events and published to [`STREAM`] through the outbox.
fn published_orders(server: &PgServer, redis: &RedisServer, sink: &str) -> WriterConfig {
    let mut orders = TableConfig::new(table("orders"), ApplyMode::Append);
    orders.publish = Some(STREAM.into());
    let mut config = config(server, sink).table(orders);
    config.outbox = Some(outbox(redis));
    config
}

async fn stream_len(redis: &RedisServer) -> u64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("XLEN")
        .arg(STREAM)
        .query_async(&mut connection)
        .await
        .unwrap()
}

/// One relay round of the running relay's kind: its last round before a stop.
async fn relay_round(writer: &PostgresWriter) {
    let stopped = CancellationToken::new();
    stopped.cancel();
    writer.run_relay(stopped).await.unwrap();
}

fn assert_lag(lag: Hist, batches: u64) {
    assert_eq!(lag.count, batches, "one lag per batch with a commit time");
    let floor = SOURCE_LAG.as_secs_f64();
    assert!(
        lag.min >= floor,
        "a lag below the source's commit age: {lag:?}"
    );
    assert!(lag.max < floor + BOUND, "{lag:?}");
}

fn assert_commit_seconds(commit: Hist, transactions: u64) {
    assert_eq!(
        commit.count, transactions,
        "one commit time per transaction"
    );
    assert!(commit.min > 0.0 && commit.max < BOUND, "{commit:?}");
}

#[tokio::test]
async fn w_11_apply_records_batch_size_commit_time_rows_skipped_lag_and_acquire_time() {
    let server = PgServer::new().await.unwrap();
    let (exported, metrics) = Exported::new("m-apply");
    let writer = PostgresWriter::builder(config(&server, "m-apply").table(items()))
        .metrics(metrics)
        .connect()
        .await
        .unwrap();
    exec(
        &writer,
        "CREATE TABLE items (id bigint PRIMARY KEY, body text)",
    )
    .await;
    let b1 = committed_at((1..=2).map(item).collect(), true);
    let b2 = committed_at((3..=5).map(item).collect(), true);
    let b3 = committed_at((6..=9).map(item).collect(), false);
    let b4 = committed_at(vec![item(10)], true);
    // Three sink transactions: 5, 4 and 1 changes, 10 applied.
    assert_eq!(writer.apply(&[&b1, &b2]).await.unwrap().applied, 5);
    assert_eq!(writer.apply(&[&b3]).await.unwrap().applied, 4);
    assert_eq!(writer.apply(&[&b4]).await.unwrap().applied, 1);
    // A fourth: b3 and b4 delivered again, all 5 changes at or below the checkpoint.
    let again = writer.apply(&[&b3, &b4]).await.unwrap();
    assert_eq!((again.applied, again.already_applied), (0, 5));
    assert_eq!(scalar(&writer, "SELECT count(*) FROM items").await, 10);

    let sizes = exported
        .histogram("surefoot.writer.batch.changes")
        .expect("batch size never recorded");
    assert_eq!(sizes.count, 4, "one batch size per sink transaction");
    assert_eq!((sizes.sum, sizes.min, sizes.max), (15.0, 1.0, 5.0));
    let commit = exported
        .histogram("surefoot.writer.commit.seconds")
        .expect("commit time never recorded");
    assert_commit_seconds(commit, 4);
    assert_eq!(
        exported.counter("surefoot.writer.changes.applied"),
        Some(10),
        "rows applied (rows/s is its rate)"
    );
    assert_eq!(exported.counter("surefoot.writer.changes.skipped"), Some(5));
    assert_eq!(
        exported.counter("surefoot.writer.changes.dead_lettered"),
        Some(0)
    );
    // b1, b2 and b4 carry a commit time, b4 twice (it committed again, redelivered).
    let lag = exported
        .histogram("surefoot.writer.lag.seconds")
        .expect("lag never recorded");
    assert_lag(lag, 4);
    let acquire = exported
        .histogram("surefoot.writer.pool.acquire.seconds")
        .expect("acquire time never recorded");
    assert_eq!(acquire.count, 4, "one connection taken per transaction");
    assert!(acquire.min >= 0.0 && acquire.max < BOUND, "{acquire:?}");
    let failures = exported.failures();
    assert!(failures.is_empty(), "nothing failed: {failures:?}");
    // No outbox configured: the relay never ran, so its instruments have nothing.
    assert_eq!(exported.gauge("surefoot.writer.outbox.backlog"), None);
    assert_eq!(exported.counter("surefoot.writer.outbox.published"), None);
}

#[tokio::test]
async fn w_11_sink_loop_records_a_batch_size_per_transaction_a_lag_per_batch_and_the_backlog() {
    let server = PgServer::new().await.unwrap();
    let redis = RedisServer::new().await.unwrap();
    let (exported, metrics) = Exported::new("m-loop");
    let mut config = published_orders(&server, &redis, "m-loop");
    config.batch.max_rows = 4;
    let writer = PostgresWriter::builder(config)
        .metrics(metrics)
        .connect()
        .await
        .unwrap();
    // 10 batches of 2 changes, all queued before the loop starts and the channel closed: the
    // loop fills each sink transaction to 4 changes, so it makes exactly 5.
    let (sender, receiver) = batch_channel(16);
    let mut outcomes = Vec::new();
    for b in 0..10u64 {
        let (token, outcome) = surefoot_core_model::AckToken::observed();
        let mut batch = batch_with("src", vec![order(2 * b + 1), order(2 * b + 2)], token);
        batch.commit_time = Some(source_commit());
        sender.send(batch).await.unwrap();
        outcomes.push(outcome);
    }
    drop(sender);
    writer
        .run(receiver, CancellationToken::new())
        .await
        .unwrap();
    for outcome in outcomes {
        assert!(outcome.await.unwrap().is_delivered());
    }
    assert_eq!(
        scalar(&writer, "SELECT count(*) FROM surefoot_writer.event").await,
        20
    );

    let sizes = exported
        .histogram("surefoot.writer.batch.changes")
        .expect("batch size never recorded");
    assert_eq!(sizes.count, 5, "one batch size per sink transaction");
    assert_eq!((sizes.sum, sizes.min, sizes.max), (20.0, 4.0, 4.0));
    assert_commit_seconds(
        exported
            .histogram("surefoot.writer.commit.seconds")
            .expect("commit time never recorded"),
        5,
    );
    assert_eq!(
        exported.counter("surefoot.writer.changes.applied"),
        Some(20)
    );
    assert_lag(
        exported
            .histogram("surefoot.writer.lag.seconds")
            .expect("lag never recorded"),
        10,
    );
    // A transaction begun ahead takes its own connection, and one refused (its predecessor not
    // yet committed) takes another when applied again: at least one per transaction.
    let acquire = exported
        .histogram("surefoot.writer.pool.acquire.seconds")
        .expect("acquire time never recorded");
    assert!(acquire.count >= 5, "{acquire:?}");
    let failures = exported.failures();
    assert!(
        failures.is_empty(),
        "a refused begun-ahead is no failure: {failures:?}"
    );

    // The relay: the backlog it sees (20, all committed, none sent), then publishes them.
    assert_eq!(exported.gauge("surefoot.writer.outbox.backlog"), None);
    relay_round(&writer).await;
    assert_eq!(exported.gauge("surefoot.writer.outbox.backlog"), Some(20));
    assert_eq!(
        exported.counter("surefoot.writer.outbox.published"),
        Some(20)
    );
    relay_round(&writer).await;
    assert_eq!(exported.gauge("surefoot.writer.outbox.backlog"), Some(0));
    assert_eq!(stream_len(&redis).await, 20);
}

#[tokio::test]
async fn w_11_outbox_backlog_grows_while_redis_is_down_and_is_zero_once_drained() {
    let server = PgServer::new().await.unwrap();
    let mut redis = RedisServer::new().await.unwrap();
    let (exported, metrics) = Exported::new("m-outbox");
    let writer = PostgresWriter::builder(published_orders(&server, &redis, "m-outbox"))
        .metrics(metrics)
        .connect()
        .await
        .unwrap();
    redis.stop().await.unwrap();
    let first = batch("src", (1..=4).map(order).collect());
    assert_eq!(writer.apply(&[&first]).await.unwrap().published, 4);
    relay_round(&writer).await;
    assert_eq!(exported.gauge("surefoot.writer.outbox.backlog"), Some(4));
    let second = batch("src", (5..=6).map(order).collect());
    writer.apply(&[&second]).await.unwrap();
    relay_round(&writer).await;
    assert_eq!(
        exported.gauge("surefoot.writer.outbox.backlog"),
        Some(6),
        "the backlog grows while Redis is down"
    );
    assert_eq!(
        exported
            .counter("surefoot.writer.outbox.published")
            .unwrap_or(0),
        0
    );
    let health = writer.health().await;
    assert_eq!(health.status, "degraded");
    assert_eq!(health.outbox.unwrap().backlog, 6, "gauge and health agree");

    redis.start().await.unwrap();
    relay_round(&writer).await;
    assert_eq!(
        exported.counter("surefoot.writer.outbox.published"),
        Some(6)
    );
    relay_round(&writer).await;
    assert_eq!(exported.gauge("surefoot.writer.outbox.backlog"), Some(0));
    assert_eq!(stream_len(&redis).await, 6);
}

/// Fails the first attempt at a `flaky` change (transient) and every `poison` one (permanent).
#[derive(Debug, Default)]
struct Gate {
    failed_once: AtomicBool,
}

#[async_trait]
impl Handler for Gate {
    async fn handle(
        &self,
        _conn: &mut PgConnection,
        input: HandlerInput<'_>,
        _outbox: &mut OutboxMessages,
    ) -> Result<(), HandlerError> {
        for change in input.changes {
            match change.after().and_then(|row| row.get("kind")) {
                Some(Value::Text(kind)) if kind == "poison" => {
                    return Err(HandlerError::permanent("the gate refuses poison"));
                }
                Some(Value::Text(kind))
                    if kind == "flaky" && !self.failed_once.swap(true, Ordering::AcqRel) =>
                {
                    return Err(HandlerError::transient("gate busy"));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn deposit(n: u64, kind: &str) -> Change {
    let row = Row::new().with("kind", Value::Text(kind.into()));
    Change::insert(seq(n), table("deposits"), row)
}

/// A writer with `deposits` through [`Gate`], `items` mirrored with a length rule on `body`,
/// and `missing` mirrored into a table that does not exist.
async fn gated_writer(server: &PgServer, sink: &str, metrics: WriterMetrics) -> PostgresWriter {
    let mut cfg = config(server, sink);
    cfg.retry = surefoot_core_lifecycle::RetryPolicy::new(surefoot_core_lifecycle::Backoff::new(
        Duration::from_millis(5),
        Duration::from_millis(20),
    ))
    .with_max_attempts(5);
    cfg.tables.push(TableConfig::new(
        table("deposits"),
        ApplyMode::Custom {
            handler: "gate".into(),
        },
    ));
    let mut checked = items();
    checked.rules = vec![ColumnRule::new(
        "body",
        Rule::Length {
            min: None,
            max: Some(3),
        },
    )];
    cfg.tables.push(checked);
    cfg.tables.push(TableConfig::new(
        table("missing"),
        ApplyMode::Mirror {
            key: vec!["id".into()],
        },
    ));
    let writer = PostgresWriter::builder(cfg)
        .handler("gate", Gate::default())
        .metrics(metrics)
        .connect()
        .await
        .unwrap();
    exec(
        &writer,
        "CREATE TABLE items (id bigint PRIMARY KEY, body text)",
    )
    .await;
    writer
}

#[tokio::test]
async fn w_11_failed_transactions_are_counted_by_class() {
    let server = PgServer::new().await.unwrap();
    let (exported, metrics) = Exported::new("m-fail");
    let writer = gated_writer(&server, "m-fail", metrics).await;
    // Transient: the first attempt fails, the retry commits.
    let flaky = batch("src", vec![deposit(1, "flaky")]);
    assert_eq!(writer.apply(&[&flaky]).await.unwrap().applied, 1);
    // Configuration: a statement against a table that does not exist; not retried.
    let missing = Change::insert(seq(2), table("missing"), row(2, Value::Null));
    let error = writer
        .apply(&[&batch("src", vec![missing])])
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Configuration, "{error}");
    // Permanent: the handler refuses; the batch is dead-lettered.
    let poison = batch("src", vec![deposit(3, "poison")]);
    assert_eq!(writer.apply(&[&poison]).await.unwrap().dead_lettered, 1);

    assert_eq!(
        exported.failures(),
        [
            ("configuration".to_owned(), 1),
            ("permanent".to_owned(), 1),
            ("transient".to_owned(), 1),
        ]
    );
    assert_eq!(
        exported.counter_where("surefoot.writer.transactions.failed", |attrs| {
            attrs.iter().any(|(k, v)| k == "class" && v == "transient")
        }),
        Some(1)
    );
    assert_eq!(exported.counter("surefoot.writer.changes.applied"), Some(1));
}

#[tokio::test]
async fn w_11_every_change_sent_to_the_dead_letter_table_is_counted() {
    let server = PgServer::new().await.unwrap();
    let (exported, metrics) = Exported::new("m-dead");
    let writer = gated_writer(&server, "m-dead", metrics).await;
    // One row refused by the length rule, in a transaction that commits: counted.
    let long = Change::insert(seq(1), table("items"), row(1, Value::Text("long".into())));
    let rejected = writer
        .apply(&[&batch("src", vec![long, item(2)])])
        .await
        .unwrap();
    assert_eq!((rejected.applied, rejected.dead_lettered), (1, 1));
    assert_eq!(
        exported.counter("surefoot.writer.changes.dead_lettered"),
        Some(1)
    );
    // Two changes of a batch the handler refuses for good: dead-lettered whole.
    let poison = batch("src", vec![deposit(3, "poison"), deposit(4, "ok")]);
    assert_eq!(writer.apply(&[&poison]).await.unwrap().dead_lettered, 2);
    assert_eq!(
        scalar(&writer, "SELECT count(*) FROM surefoot_writer.dead_letter").await,
        3
    );
    assert_eq!(
        exported.counter("surefoot.writer.changes.dead_lettered"),
        Some(3),
        "changes in the dead-letter table and the counter disagree"
    );
}
