//! Issue 15 composed: a continuous join + aggregate query over a real `source-postgres` stream,
//! first evaluated over a 100,000-row `bootstrap` snapshot taken while a writer keeps changing
//! the tables, its result diffs applied by `sink-postgres-writer` into a mirror table. The
//! mirror ends equal to PostgreSQL's own answer to the same SQL (`EXCEPT` both ways), every
//! diff applied once (the writer's applied records cover every sequence the query emitted, with
//! no overlap).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::{Duration, Instant};

use surefoot_bootstrap::{BootstrapConfig, PostgresProvider};
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{
    BatchReceiver, BatchSender, SnapshotRequest, Source, SourceId, TableRef, batch_channel,
};
use surefoot_pipeline_tests::{applied::applied, compare::except_both_ways};
use surefoot_query::{Catalog, ContinuousQuery, QueryStats, TableSchema};
use surefoot_sink_postgres_writer::{
    ApplyMode, PostgresWriter, RecordRetention, TableConfig, WriterConfig,
};
use surefoot_source_postgres::{Identifier, PostgresSourceConfig, SlotName};
use surefoot_test_support::{PgClient, PgServer};
use tokio::sync::watch;

const ORDERS: i32 = 100_000;
const CUSTOMERS: i32 = 1_000;
const SOURCE: &str = "shop";
const QUERY: &str = "totals";
const SINK: &str = "query-mirror";
/// The writer's order ids start here, above the snapshot's.
const WRITER_BASE: i32 = 1_000_000;
/// The last writer transaction adds a customer in this region and an order for it: once its
/// group is in the mirror, everything before it is.
const SENTINEL_REGION: &str = "zz-sentinel";
const BOUND: Duration = Duration::from_secs(180);

/// The query, as PostgreSQL's view and as the continuous query.
const SQL: &str = "SELECT c.region, count(*) AS orders, sum(o.amount) AS total, \
     max(o.amount) AS largest, min(o.amount) AS smallest \
     FROM orders o JOIN customers c ON o.customer = c.id GROUP BY c.region";
const COLUMNS: &str = "region, orders, total, largest, smallest";
const TYPES: &str = "region text, orders bigint, total bigint, largest bigint, smallest bigint";

fn source_config(server: &PgServer) -> PostgresSourceConfig {
    let mut config = PostgresSourceConfig::new(
        SOURCE,
        server.host(),
        server.port(),
        server.user(),
        "postgres",
        SlotName::parse("shop_slot").unwrap(),
        Identifier::parse("publication", "shop_pub").unwrap(),
    );
    config.status_interval = Duration::from_millis(100);
    config
}

fn query() -> ContinuousQuery {
    let source = SourceId::new(SOURCE);
    let catalog = Catalog::new()
        .with(
            TableSchema::new(
                TableRef::new("public", "orders"),
                &["id", "customer", "amount"],
                &["id"],
            )
            .from_source(source.clone()),
        )
        .with(
            TableSchema::new(
                TableRef::new("public", "customers"),
                &["id", "region"],
                &["id"],
            )
            .from_source(source),
        );
    ContinuousQuery::new(QUERY, SQL, &catalog).unwrap()
}

async fn writer(server: &PgServer) -> PostgresWriter {
    let mut config = WriterConfig::new(SINK, server.url("target")).table(TableConfig::new(
        TableRef::new("query", QUERY),
        ApplyMode::Mirror {
            key: vec!["_key.1".into()],
        },
    ));
    // Every record kept, so the test can count what was applied.
    config.applied_records = RecordRetention {
        keep: u32::MAX,
        max_age: None,
    };
    PostgresWriter::builder(config).connect().await.unwrap()
}

async fn prepare(server: &PgServer) -> (PgClient, PgClient) {
    let admin = server.connect("postgres").await.unwrap();
    admin
        .batch_execute(&format!(
            "CREATE TABLE customers (id int PRIMARY KEY, region text NOT NULL);
             CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL, amount int NOT NULL);
             INSERT INTO customers SELECT g, 'r' || (g % 20) FROM generate_series(1, {CUSTOMERS}) g;
             INSERT INTO orders SELECT g, g % {CUSTOMERS} + 1, g % 997
               FROM generate_series(1, {ORDERS}) g;
             CREATE SCHEMA query;
             CREATE VIEW query.{QUERY} AS {SQL};"
        ))
        .await
        .unwrap();
    server.create_database("target").await.unwrap();
    let target = server.connect("target").await.unwrap();
    target
        .batch_execute(&format!(
            "CREATE SCHEMA query;
             CREATE TABLE query.{QUERY} ({TYPES}, \"_key.1\" text PRIMARY KEY)"
        ))
        .await
        .unwrap();
    (admin, target)
}

/// What the concurrent writer did.
struct Load {
    transactions: i32,
    elapsed: Duration,
}

/// Transactions that insert an order, move another to a new customer with a new amount and
/// delete a third; every tenth also moves a customer to another region. As fast as the server
/// takes them, until `done`; then the sentinel.
async fn load(
    client: &PgClient,
    mut done: watch::Receiver<bool>,
    count: &watch::Sender<i32>,
) -> Load {
    let started = Instant::now();
    let mut k = 0;
    while !*done.borrow_and_update() {
        k += 1;
        let pick =
            |factor: i64| i32::try_from(i64::from(k) * factor % i64::from(ORDERS)).unwrap() + 1;
        let customer = k % CUSTOMERS + 1;
        let regions = if k % 10 == 0 {
            format!("UPDATE customers SET region = 'r' || ((id + {k}) % 25) WHERE id = {customer};")
        } else {
            String::new()
        };
        client
            .batch_execute(&format!(
                "BEGIN;
                 INSERT INTO orders VALUES ({}, {customer}, {});
                 UPDATE orders SET customer = {}, amount = amount + {k} % 13 WHERE id = {};
                 DELETE FROM orders WHERE id = {};
                 {regions}
                 COMMIT;",
                WRITER_BASE + k,
                k % 1_009,
                (k * 7) % CUSTOMERS + 1,
                pick(7_919),
                pick(104_729)
            ))
            .await
            .unwrap();
        count.send_replace(k);
    }
    let elapsed = started.elapsed();
    let sentinel = CUSTOMERS + 1;
    client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO customers VALUES ({sentinel}, '{SENTINEL_REGION}');
             INSERT INTO orders VALUES (-1, {sentinel}, 1);
             COMMIT;"
        ))
        .await
        .unwrap();
    Load {
        transactions: k,
        elapsed,
    }
}

/// Runs every input batch through the query and hands its result batches to the writer.
async fn evaluate(
    mut query: ContinuousQuery,
    mut input: BatchReceiver,
    output: BatchSender,
) -> QueryStats {
    while let Some(batch) = input.recv().await {
        match query.process(batch) {
            Ok(Some(result)) => {
                if output.send(result).await.is_err() {
                    panic!("the writer stopped taking result batches");
                }
            }
            Ok(None) => {}
            Err(error) => panic!("the query failed: {error}"),
        }
    }
    query.stats()
}

async fn wait_for_sentinel(target: &PgClient) {
    let deadline = Instant::now() + BOUND;
    let sql = format!("SELECT count(*) FROM query.{QUERY} WHERE region = $1");
    loop {
        let row = target.query_one(&sql, &[&SENTINEL_REGION]).await.unwrap();
        if row.get::<_, i64>(0) == 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the sentinel's group never reached the mirror"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_aggregate_query_over_a_100k_row_bootstrap_and_its_stream_equals_the_sql_answer() {
    let server = PgServer::new().await.unwrap();
    let (admin, target) = prepare(&server).await;
    let writer = writer(&server).await;
    let load_client = server.connect("postgres").await.unwrap();
    let provider =
        PostgresProvider::first_start(source_config(&server), BootstrapConfig::default()).unwrap();

    let (source_out, source_in) = batch_channel(16);
    let (writer_out, writer_in) = batch_channel(16);
    let (done, done_seen) = watch::channel(false);
    let (count, count_seen) = watch::channel(0);
    let cancel = CancellationToken::new();
    let request = SnapshotRequest {
        consumer: QUERY.to_owned(),
        tables: Vec::new(),
    };

    let drive = async {
        let before = *count_seen.borrow();
        let exported = provider
            .export(&request, &source_out, &cancel)
            .await
            .unwrap();
        let during = *count_seen.borrow() - before;
        let snapshot_rows = exported.complete.rows;
        let source = provider.stream_after(exported, source_out);
        source.start().await.unwrap();
        // Keep writing while the stream runs, as long again as the snapshot took.
        let streaming = *count_seen.borrow();
        let mut seen = count_seen.clone();
        seen.wait_for(|k| *k >= streaming + during.max(200))
            .await
            .unwrap();
        done.send_replace(true);
        wait_for_sentinel(&target).await;
        source.stop(Duration::from_secs(30)).await.unwrap();
        drop(source);
        (snapshot_rows, during)
    };
    let (load, stats, run, (snapshot_rows, during)) = tokio::join!(
        load(&load_client, done_seen, &count),
        evaluate(query(), source_in, writer_out),
        writer.run(writer_in, cancel.clone()),
        drive
    );
    run.unwrap();

    let rate = f64::from(load.transactions) / load.elapsed.as_secs_f64();
    let difference = except_both_ways(
        admin.client(),
        &server.connection_string("target"),
        &format!("query.{QUERY}"),
        COLUMNS,
        TYPES,
    )
    .await
    .unwrap();
    let applied = applied(target.client(), SINK, QUERY).await.unwrap();
    eprintln!(
        "query: snapshot {snapshot_rows} rows; writer {} transactions in {:.1} s ({rate:.0}/s), \
         {during} during the snapshot; query {} input batches, {} diffs, {} state rows; \
         applied {} diffs in {} records; missing {} extra {} duplicated {}",
        load.transactions,
        load.elapsed.as_secs_f64(),
        stats.batches,
        stats.diffs,
        stats.state_rows,
        applied.changes,
        applied.records,
        difference.missing,
        difference.extra,
        applied.overlapping,
    );
    assert!(
        during > 0,
        "no transaction committed while the snapshot was copied"
    );
    assert!(snapshot_rows >= (ORDERS + CUSTOMERS - during) as u64);
    assert!(
        difference.is_equal(),
        "the mirror differs from PostgreSQL's answer: {difference:?}"
    );
    assert_eq!(applied.overlapping, 0, "diffs applied twice");
    assert_eq!(
        applied.changes, stats.diffs,
        "diffs emitted but not applied (or applied twice)"
    );
    assert_eq!(stats.unsettled, 0, "result batches left unsettled");
}
